"""Bearer-token authentication for /api/v1/ and role checks for each endpoint."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from aiohttp import web

from carebot.agents.accounts import authenticate
from carebot.db.models import Agent
from carebot.web.errors import ApiError
from carebot.web.handler import Handler
from carebot.web.keys import SESSIONS

AGENT = web.RequestKey("agent", Agent)
PUBLIC_PREFIXES = ("/api/v1/channels/",)
ALL_ROLES = ("agent", "manager", "admin")
SUPERVISORS = ("manager", "admin")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate every /api/v1/ request except the inbound channels (401 without a token)."""
    path = request.path
    if not path.startswith("/api/v1/") or path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
    async with request.app[SESSIONS]() as session:
        agent = await authenticate(session, token.strip())
    if agent is None:
        raise ApiError(401, "invalid or disabled token")
    request[AGENT] = agent
    return await handler(request)


def roles(*allowed: str) -> Callable[[Handler], Handler]:
    """Let only these roles call the handler (403 for the others)."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            agent = request[AGENT]
            if agent.role not in allowed:
                raise ApiError(
                    403, f"role {agent.role!r} may not do this (needs {' or '.join(allowed)})"
                )
            return await handler(request)

        wrapper.allowed_roles = allowed  # type: ignore[attr-defined]
        return wrapper

    return decorate


def current_agent(request: web.Request) -> Agent:
    """The authenticated agent of this request."""
    return request[AGENT]

