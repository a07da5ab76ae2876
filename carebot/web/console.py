"""Agent console API: thin JSON handlers over carebot.routing.actions."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents import audit
from carebot.agents.accounts import ROLES, STATUSES, AgentError, create_agent, list_agents
from carebot.db.availability import lost_a_race
from carebot.db.models import Agent
from carebot.domain.events import Effects
from carebot.routing import actions as console
from carebot.routing.agent_facts import agent_load
from carebot.web.auth import ALL_ROLES, SUPERVISORS, current_agent, roles
from carebot.web.errors import ApiError, read_json_object, text_field
from carebot.web.keys import CLOCK, POLICY, SESSIONS, SETTINGS, WRITES
from carebot.web.params import int_query, text_query
from carebot.web.publish import publish_effects

T = TypeVar("T")
MAX_PAGE = 200
_ID = re.compile(r"[0-9]{1,18}")
# Ids are 63-bit on PostgreSQL; anything larger is no id.
MAX_ID = 2**62
LIST_PARAMETERS = frozenset({"status", "assignee", "channel", "limit", "offset"})
# An action chosen as a deadlock victim is run again this many times.
DEADLOCK_RETRIES = 3


async def _run(
    request: web.Request, action: Callable[[AsyncSession, Effects], Awaitable[T]]
) -> T:
    """Run a console action in one transaction (again if it lost a deadlock), then publish
    what it produced."""
    for attempt in range(DEADLOCK_RETRIES + 1):
        effects = Effects()
        try:
            async with request.app[WRITES].begin() as session:
                result = await action(session, effects)
        except console.ConsoleError as exc:
            raise ApiError(exc.status, exc.message) from None
        except DBAPIError as exc:
            if lost_a_race(exc) and attempt < DEADLOCK_RETRIES:
                continue
            raise
        await publish_effects(request.app, effects)
        return result
    raise AssertionError("unreachable")


def _conversation_id(request: web.Request) -> int:
    raw = request.match_info["conversation_id"]
    if not _ID.fullmatch(raw):  # ASCII digits only: str.isdigit() takes superscripts too
        raise ApiError(404, f"conversation {raw!r} not found")
    return int(raw)


@roles(*ALL_ROLES)
async def me(request: web.Request) -> web.Response:
    """GET /api/v1/me: who the token belongs to."""
    agent = current_agent(request)
    async with request.app[SESSIONS]() as session:
        load = await agent_load(session, agent.id)
    return web.json_response(console.agent_dict(agent, load))


@roles(*ALL_ROLES)
async def list_conversations(request: web.Request) -> web.Response:
    """GET /api/v1/conversations: filtered, paginated; unknown parameters are refused (400),
    as the statistics endpoints do, rather than silently ignored."""
    unknown = sorted(set(request.query) - LIST_PARAMETERS)
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(LIST_PARAMETERS))}")
    status = request.query.get("status") or None
    if status is not None and status not in console.STATUSES:
        raise ApiError(400, f"'status' must be one of {', '.join(console.STATUSES)}")
    channel = text_query(request, "channel", 32)
    assignee = int_query(request, "assignee", None, 1, 2**62)
    limit = int_query(request, "limit", 50, 1, MAX_PAGE)
    offset = int_query(request, "offset", 0, 0, 2**31)
    assert limit is not None and offset is not None
    async with request.app[SESSIONS]() as session:
        page = await console.list_conversations(
            session, current_agent(request), status=status, assignee=assignee,
            channel=channel, limit=limit, offset=offset,
        )
    return web.json_response({
        "items": [console.conversation_summary(c) for c in page.items],
        "total": page.total,
        "limit": limit,
        "offset": offset,
    })


@roles(*ALL_ROLES)
async def get_conversation(request: web.Request) -> web.Response:
    """GET /api/v1/conversations/{id}: messages, touchpoints, the customer's other conversations."""
    reader = current_agent(request)
    try:
        async with request.app[SESSIONS]() as session:
            detail = await console.conversation_detail(
                session, reader, _conversation_id(request)
            )
    except console.ConsoleError as exc:
        raise ApiError(exc.status, exc.message) from None
    if audit.read_is_audited(reader.id, detail["status"], detail["assigned_agent_id"]):
        async with request.app[WRITES].begin() as session:
            await audit.record_read(session, reader, detail["id"], request.app[CLOCK](),
                                    {"status": detail["status"],
                                     "assigned_agent_id": detail["assigned_agent_id"]})
    return web.json_response(detail)


@roles(*ALL_ROLES)
async def reply(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/reply {"text"}: message the customer."""
    body = await read_json_object(request)
    text = text_field(body, "text", request.app[SETTINGS].max_text_chars)
    cid, agent, now = _conversation_id(request), current_agent(request), request.app[CLOCK]()
    policy = request.app[POLICY]
    message = await _run(
        request, lambda s, e: console.reply(s, agent, cid, text, now, e, policy)
    )
    return web.json_response(console.message_dict(message), status=201)


@roles(*ALL_ROLES)
async def add_note(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/notes {"text"}: a private note, never sent."""
    body = await read_json_object(request)
    text = text_field(body, "text", request.app[SETTINGS].max_text_chars)
    cid, agent, now = _conversation_id(request), current_agent(request), request.app[CLOCK]()
    policy = request.app[POLICY]
    message = await _run(request, lambda s, e: console.note(s, agent, cid, text, now, e, policy))
    return web.json_response(console.message_dict(message), status=201)


@roles(*ALL_ROLES)
async def claim(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/claim: take a queued conversation."""
    cid, agent, now = _conversation_id(request), current_agent(request), request.app[CLOCK]()
    policy = request.app[POLICY]
    conv = await _run(request, lambda s, e: console.claim(s, agent, cid, now, e, policy))
    return web.json_response(console.conversation_summary(conv))


@roles(*ALL_ROLES)
async def transfer(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/transfer {"agent_id": int | null}."""
    body = await read_json_object(request)
    if "agent_id" not in body:
        raise ApiError(400, "'agent_id' is required (an agent's id, or null for the queue)")
    to = body["agent_id"]
    if to is not None and (not isinstance(to, int) or isinstance(to, bool)
                           or not 1 <= to <= MAX_ID):
        raise ApiError(400, f"'agent_id' must be an integer from 1 to {MAX_ID}, or null")
    note = None
    if body.get("note") is not None:
        note = text_field(body, "note", request.app[SETTINGS].max_text_chars).strip() or None
    cid, agent, now = _conversation_id(request), current_agent(request), request.app[CLOCK]()
    policy = request.app[POLICY]
    conv = await _run(
        request, lambda s, e: console.transfer(s, agent, cid, to, now, e, policy, note)
    )
    return web.json_response(console.conversation_summary(conv))


@roles(*ALL_ROLES)
async def hand_back(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/handback: back to the bot."""
    cid, agent, now = _conversation_id(request), current_agent(request), request.app[CLOCK]()
    policy = request.app[POLICY]
    conv = await _run(request, lambda s, e: console.hand_back(s, agent, cid, now, e, policy))
    return web.json_response(console.conversation_summary(conv))


@roles(*ALL_ROLES)
async def resolve(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/resolve {"code": str}."""
    body = await read_json_object(request)
    code = text_field(body, "code", console.MAX_RESOLUTION_CODE).strip()
    cid, agent, now = _conversation_id(request), current_agent(request), request.app[CLOCK]()
    policy = request.app[POLICY]
    conv = await _run(
        request,
        lambda s, e: console.resolve_by_agent(
            s, agent, cid, code, now, e, policy
        ),
    )
    return web.json_response(console.conversation_summary(conv))


@roles(*ALL_ROLES)
async def set_availability(request: web.Request) -> web.Response:
    """PUT /api/v1/me/availability {"status": "online" | "away" | "offline"}."""
    body = await read_json_object(request)
    status = body.get("status")
    if status not in STATUSES:
        raise ApiError(400, f"'status' must be one of {', '.join(STATUSES)}")
    agent, now = current_agent(request), request.app[CLOCK]()
    policy = request.app[POLICY]
    updated = await _run(
        request, lambda s, e: console.set_availability(s, agent, str(status), now, e, policy)
    )
    return web.json_response(console.agent_dict(updated))


@roles(*SUPERVISORS)
async def get_agents(request: web.Request) -> web.Response:
    """GET /api/v1/agents: every agent with their current load (managers, admins)."""
    async with request.app[SESSIONS]() as session:
        agents = await list_agents(session)
        items = [console.agent_dict(a, await agent_load(session, a.id)) for a in agents]
    return web.json_response({"items": items})


@roles("admin")
async def post_agent(request: web.Request) -> web.Response:
    """POST /api/v1/agents {"name", "role", "capacity"}: create an agent (admins); token once."""
    body = await read_json_object(request)
    name = text_field(body, "name", 100)
    role = body.get("role", "agent")
    capacity = body.get("capacity", 3)
    if role not in ROLES:
        raise ApiError(400, f"'role' must be one of {', '.join(ROLES)}")
    if not isinstance(capacity, int) or isinstance(capacity, bool):
        raise ApiError(400, "'capacity' must be an integer")
    now = request.app[CLOCK]()

    admin = current_agent(request)

    async def create(session: AsyncSession, _effects: Effects) -> tuple[Agent, str]:
        try:
            agent, token = await create_agent(session, name, str(role), capacity, now)
        except AgentError as exc:
            raise console.ConsoleError(409 if "exists" in str(exc) else 400, str(exc)) from None
        audit.record(session, admin, "agent.created", "agent", agent.id,
                     {"name": agent.name, "role": agent.role, "capacity": agent.capacity},
                     at=now)
        return agent, token

    agent, token = await _run(request, create)
    return web.json_response({**console.agent_dict(agent), "token": token}, status=201)


def add_routes(app: web.Application) -> None:
    """Register the console endpoints."""
    r = app.router
    r.add_get("/api/v1/me", me)
    r.add_put("/api/v1/me/availability", set_availability)
    r.add_get("/api/v1/conversations", list_conversations)
    r.add_get("/api/v1/conversations/{conversation_id}", get_conversation)
    r.add_post("/api/v1/conversations/{conversation_id}/reply", reply)
    r.add_post("/api/v1/conversations/{conversation_id}/notes", add_note)
    r.add_post("/api/v1/conversations/{conversation_id}/claim", claim)
    r.add_post("/api/v1/conversations/{conversation_id}/transfer", transfer)
    r.add_post("/api/v1/conversations/{conversation_id}/handback", hand_back)
    r.add_post("/api/v1/conversations/{conversation_id}/resolve", resolve)
    r.add_get("/api/v1/agents", get_agents)
    r.add_post("/api/v1/agents", post_agent)
