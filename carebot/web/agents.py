"""Agents API: managers and admins list the agents; admins add them, change their role and
capacity, disable and enable them, and hand out new tokens and password invites.

`{agent}` in a path is an agent's id or name. Thin handlers over carebot.agents.accounts,
carebot.agents.passwords and carebot.routing.actions (disabling requeues conversations).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents import audit
from carebot.agents.accounts import (
    AgentError,
    create_agent,
    find_agent_or_fail,
    list_agents,
    lock_agent,
    rotate_token,
)
from carebot.agents.passwords import create_invite, invite_link, reset_with_invite
from carebot.db.models import Agent
from carebot.domain.events import Effects
from carebot.domain.text import text_problem
from carebot.routing import actions
from carebot.routing.agent_facts import agent_load
from carebot.web.auth import ALL_ROLES, SUPERVISORS, current_agent, roles
from carebot.web.console import run_action
from carebot.web.errors import ApiError, read_json_object, text_field
from carebot.web.keys import CLOCK, POLICY, SESSIONS, SETTINGS

MAX_NAME = 100
CREATE_FIELDS = frozenset({"name", "role", "capacity"})
CHANGE_FIELDS = frozenset({"role", "capacity", "disabled"})


def _only(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(allowed))}")


async def _find(session: AsyncSession, request: web.Request) -> Agent:
    key = request.match_info["agent"]
    if len(key) > MAX_NAME or text_problem(key) is not None:
        raise actions.ConsoleError(404, "no such agent")  # no agent has a name like that
    try:
        found = await find_agent_or_fail(session, key)
        return await lock_agent(session, found.id)
    except AgentError as exc:
        raise actions.ConsoleError(exc.status, exc.message) from None


def _invite(request: web.Request, token: str, expires_at: datetime | None) -> dict[str, Any]:
    return {"token": token, "url": invite_link(token, request.app[SETTINGS].public_url),
            "expires_at": expires_at.isoformat() if expires_at else None}


async def _agent_json(session: AsyncSession, agent: Agent) -> dict[str, Any]:
    return actions.agent_dict(agent, await agent_load(session, agent.id))


# What an agent may know of colleagues: enough to pick one for a transfer.
DIRECTORY_FIELDS = ("id", "name", "role", "status", "disabled")


@roles(*ALL_ROLES)
async def get_agents(request: web.Request) -> web.Response:
    """GET /api/v1/agents: every agent with their load (managers, admins); agents get the
    directory only (name, role, status), to pick a colleague for a transfer."""
    async with request.app[SESSIONS]() as session:
        items = [await _agent_json(session, a) for a in await list_agents(session)]
    if current_agent(request).role not in SUPERVISORS:
        items = [{k: item[k] for k in DIRECTORY_FIELDS} for item in items]
    return web.json_response({"items": items})


@roles("admin")
async def post_agent(request: web.Request) -> web.Response:
    """POST /api/v1/agents {"name", "role"?, "capacity"?}: create an agent; the token and a
    password invite are in the response, once."""
    body = await read_json_object(request)
    _only(body, CREATE_FIELDS)
    name = text_field(body, "name", MAX_NAME, too_long_status=400)
    role, capacity = body.get("role", "agent"), body.get("capacity", 3)
    now = request.app[CLOCK]()

    async def create(session: AsyncSession, _effects: Effects) -> dict[str, Any]:
        try:
            agent, token = await create_agent(session, name, role, capacity, now)
        except AgentError as exc:
            raise actions.ConsoleError(exc.status, exc.message) from None
        invite = create_invite(agent, now)
        await session.flush()
        audit.record(session, current_agent(request), "agent.created", "agent", agent.id,
                     {"name": agent.name, "role": agent.role, "capacity": agent.capacity},
                     at=now)
        return {**await _agent_json(session, agent), "token": token,
                "invite": _invite(request, invite, agent.invite_expires_at)}

    return web.json_response(await run_action(request, create), status=201)


@roles("admin")
async def patch_agent(request: web.Request) -> web.Response:
    """PATCH /api/v1/agents/{agent} {"role"?, "capacity"?, "disabled"?} (admins)."""
    body = await read_json_object(request)
    _only(body, CHANGE_FIELDS)
    if not body:
        raise ApiError(400, f"nothing to change: send any of {', '.join(sorted(CHANGE_FIELDS))}")
    disabled = body.get("disabled")
    if disabled is not None and not isinstance(disabled, bool):
        raise ApiError(400, "'disabled' must be true or false")
    now, policy = request.app[CLOCK](), request.app[POLICY]

    async def change(session: AsyncSession, effects: Effects) -> dict[str, Any]:
        agent = await _find(session, request)
        before = audit.agent_state(agent)
        changed = await actions.update_agent(
            session, agent.id, now, effects, policy, role=body.get("role"),
            capacity=body.get("capacity"), disabled=disabled)
        audit.record_agent_changes(session, current_agent(request), changed, before, now)
        return await _agent_json(session, changed)

    return web.json_response(await run_action(request, change))


@roles("admin")
async def post_token(request: web.Request) -> web.Response:
    """POST /api/v1/agents/{agent}/token: a new bearer token, shown once; the old one stops
    working at once."""

    async def rotate(session: AsyncSession, _effects: Effects) -> dict[str, Any]:
        agent = await _find(session, request)
        token = rotate_token(agent)
        await session.flush()
        audit.record(session, current_agent(request), "agent.token_rotated", "agent", agent.id,
                     at=request.app[CLOCK]())
        return {**await _agent_json(session, agent), "token": token}

    return web.json_response(await run_action(request, rotate))


@roles("admin")
async def post_invite(request: web.Request) -> web.Response:
    """POST /api/v1/agents/{agent}/invite: a one-time link with which the agent chooses a new
    password; the old password and the agent's console sessions end now."""
    now = request.app[CLOCK]()

    async def invite(session: AsyncSession, _effects: Effects) -> dict[str, Any]:
        agent = await _find(session, request)
        if agent.disabled:
            raise actions.ConsoleError(409, f"{agent.name} is disabled; enable them first")
        token = await reset_with_invite(session, agent, now)
        await session.flush()
        audit.record(session, current_agent(request), "agent.password_reset", "agent", agent.id,
                     at=now)
        return {**await _agent_json(session, agent),
                "invite": _invite(request, token, agent.invite_expires_at)}

    return web.json_response(await run_action(request, invite))


def add_routes(app: web.Application) -> None:
    """Register the agents endpoints."""
    r = app.router
    r.add_get("/api/v1/agents", get_agents)
    r.add_post("/api/v1/agents", post_agent)
    r.add_patch("/api/v1/agents/{agent}", patch_agent)
    r.add_post("/api/v1/agents/{agent}/token", post_token)
    r.add_post("/api/v1/agents/{agent}/invite", post_invite)
