"""Authentication for /api/v1/ (bearer token or browser session) and role checks per endpoint."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from aiohttp import web

from carebot.agents.accounts import authenticate
from carebot.agents.logins import csrf_matches, find_session, needs_touch, touch
from carebot.db.models import Agent
from carebot.web.errors import ApiError
from carebot.web.handler import Handler
from carebot.web.keys import CLOCK, SESSIONS, SETTINGS, WRITES
from carebot.web.sessions import (
    COOKIE,
    CSRF_HEADER,
    UNSAFE_METHODS,
    WEB_SESSION,
    lifetime,
    origin_allowed,
)

AGENT = web.RequestKey("agent", Agent)
PUBLIC_PREFIXES = ("/api/v1/channels/",)
# Logging in needs no login; logging out and "who am I" do.
PUBLIC_ROUTES = frozenset({("POST", "/api/v1/session"), ("POST", "/api/v1/session/invite")})
ALL_ROLES = ("agent", "manager", "admin")
SUPERVISORS = ("manager", "admin")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate every /api/v1/ request except the inbound channels (401 without a token)."""
    path = request.path
    if (not path.startswith("/api/v1/") or path.startswith(PUBLIC_PREFIXES)
            or (request.method, path) in PUBLIC_ROUTES):
        return await handler(request)
    header = request.headers.get("Authorization")
    if header is not None:
        request[AGENT] = await _bearer(request, header)
    elif COOKIE in request.cookies:
        await _cookie(request, request.cookies[COOKIE])
    else:
        raise ApiError(401, "not logged in: send 'Authorization: Bearer <token>' or log in")
    return await handler(request)


async def _bearer(request: web.Request, header: str) -> Agent:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
    async with request.app[SESSIONS]() as session:
        agent = await authenticate(session, token.strip())
    if agent is None:
        raise ApiError(401, "invalid or disabled token")
    return agent


async def _cookie(request: web.Request, token: str) -> None:
    """A browser session: the cookie alone proves nothing to another site's page, so a state
    change also needs the CSRF token, and a foreign Origin (WebSocket included) is refused."""
    if not origin_allowed(request):
        raise ApiError(403, "cross-site request refused")
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    if websocket and "Origin" not in request.headers:
        raise ApiError(403, "a browser WebSocket must send its Origin")
    now = request.app[CLOCK]()
    async with request.app[SESSIONS]() as session:
        found = await find_session(session, token, now, lifetime(request.app[SETTINGS]))
    if found is None:
        raise ApiError(401, "your session has ended; log in again")
    web_session, agent = found
    if needs_touch(web_session, now):
        async with request.app[WRITES].begin() as session:
            await touch(session, web_session, now)
    if request.method in UNSAFE_METHODS and not csrf_matches(
        web_session, request.headers.get(CSRF_HEADER, "")
    ):
        raise ApiError(403, f"missing or wrong {CSRF_HEADER} header")
    request[AGENT] = agent
    request[WEB_SESSION] = web_session


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

