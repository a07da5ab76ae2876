"""Agent console API: thin JSON handlers over carebot.routing.actions (what agents do)
and carebot.routing.views (what they read)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents import audit
from carebot.agents.accounts import STATUSES
from carebot.db.availability import lost_a_race
from carebot.domain.events import Effects
from carebot.routing import actions as console
from carebot.routing import views
from carebot.routing.agent_facts import agent_load
from carebot.web.auth import ALL_ROLES, current_agent, roles
from carebot.web.errors import ApiError, read_json_object, text_field
from carebot.web.keys import CLOCK, FAQ_INDEX, POLICY, SESSIONS, SETTINGS, WRITES
from carebot.web.params import int_query, text_query
from carebot.web.publish import publish_effects

T = TypeVar("T")
MAX_PAGE = 200
_ID = re.compile(r"[0-9]{1,18}")
# Ids are 63-bit on PostgreSQL; anything larger is no id.
MAX_ID = 2**62
LIST_PARAMETERS = frozenset({"status", "assignee", "channel", "sort", "limit", "offset"})
# Agent assist offers this many FAQ answers.
ASSIST_ANSWERS = 3
# An action chosen as a deadlock victim is run again this many times.
DEADLOCK_RETRIES = 3


async def run_action(
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
    """GET /api/v1/conversations: filtered, sorted, paginated; unknown parameters are refused
    (400), as the statistics endpoints do, rather than silently ignored."""
    unknown = sorted(set(request.query) - LIST_PARAMETERS)
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(LIST_PARAMETERS))}")
    status = request.query.get("status") or None
    if status is not None and status not in views.STATUSES:
        raise ApiError(400, f"'status' must be one of {', '.join(views.STATUSES)}")
    sort = request.query.get("sort") or None
    if sort is not None and sort not in views.SORTS:
        raise ApiError(400, f"'sort' must be one of {', '.join(views.SORTS)}")
    channel = text_query(request, "channel", 32)
    assignee = int_query(request, "assignee", None, 1, 2**62)
    limit = int_query(request, "limit", 50, 1, MAX_PAGE)
    offset = int_query(request, "offset", 0, 0, 2**31)
    assert limit is not None and offset is not None
    async with request.app[SESSIONS]() as session:
        page = await views.list_conversations(
            session, current_agent(request), request.app[CLOCK](), request.app[POLICY],
            status=status, assignee=assignee, channel=channel, sort=sort, limit=limit,
            offset=offset,
        )
    return web.json_response({
        "items": page.items,
        "total": page.total,
        "limit": limit,
        "offset": offset,
    })


async def _read(request: web.Request, read: Callable[[AsyncSession], Awaitable[T]]) -> T:
    try:
        async with request.app[SESSIONS]() as session:
            return await read(session)
    except console.ConsoleError as exc:
        raise ApiError(exc.status, exc.message) from None


@roles(*ALL_ROLES)
async def get_conversation(request: web.Request) -> web.Response:
    """GET /api/v1/conversations/{id}: messages, touchpoints, the customer panel, the
    customer's other conversations."""
    cid, agent = _conversation_id(request), current_agent(request)
    now, policy = request.app[CLOCK](), request.app[POLICY]
    detail = await _read(
        request, lambda s: views.conversation_detail(s, agent, cid, now, policy))
    # A read of a conversation someone else holds is on record (not the queue's).
    if audit.read_is_audited(agent.id, detail["status"], detail["assigned_agent_id"]):
        async with request.app[WRITES].begin() as session:
            await audit.record_read(session, agent, detail["id"], now,
                                    {"status": detail["status"],
                                     "assigned_agent_id": detail["assigned_agent_id"]})
    return web.json_response(detail)


@roles(*ALL_ROLES)
async def get_customer(request: web.Request) -> web.Response:
    """GET /api/v1/customers/{id}: the customer panel."""
    raw = request.match_info["customer_id"]
    if not _ID.fullmatch(raw):
        raise ApiError(404, f"customer {raw!r} not found")
    agent = current_agent(request)
    panel = await _read(request, lambda s: views.customer_detail(s, agent, int(raw)))
    return web.json_response(panel)


@roles(*ALL_ROLES)
async def assist(request: web.Request) -> web.Response:
    """GET /api/v1/conversations/{id}/assist: the FAQ answers that best match the customer's
    last typed message, for the agent to insert and edit."""
    cid, agent = _conversation_id(request), current_agent(request)
    question = await _read(request, lambda s: views.last_customer_question(s, agent, cid))
    index = request.app[FAQ_INDEX]
    items = []
    if question is not None:
        docs = index.docs_by_id
        for c in await index.match(question.text, ASSIST_ANSWERS):
            doc = docs.get(c.faq_id)
            if doc is not None:
                items.append({"faq_id": doc.id, "question": doc.question,
                              "answer": doc.answer, "score": round(c.score, 4)})
    return web.json_response({
        "conversation_id": cid,
        "message": None if question is None else {
            "id": question.id, "text": question.text,
            "created_at": question.created_at.isoformat()},
        "items": items,
    })


@roles(*ALL_ROLES)
async def reply(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/reply {"text"}: message the customer."""
    body = await read_json_object(request)
    text = text_field(body, "text", request.app[SETTINGS].max_text_chars)
    cid, agent, now = _conversation_id(request), current_agent(request), request.app[CLOCK]()
    policy = request.app[POLICY]
    message = await run_action(
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
    message = await run_action(
        request, lambda s, e: console.note(s, agent, cid, text, now, e, policy))
    return web.json_response(console.message_dict(message), status=201)


@roles(*ALL_ROLES)
async def claim(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/claim: take a queued conversation."""
    cid, agent, now = _conversation_id(request), current_agent(request), request.app[CLOCK]()
    policy = request.app[POLICY]
    conv = await run_action(request, lambda s, e: console.claim(s, agent, cid, now, e, policy))
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
    conv = await run_action(
        request, lambda s, e: console.transfer(s, agent, cid, to, now, e, policy, note)
    )
    return web.json_response(console.conversation_summary(conv))


@roles(*ALL_ROLES)
async def set_language(request: web.Request) -> web.Response:
    """PUT /api/v1/conversations/{id}/language: {"language": "de"} overrides the language the
    bot speaks to this customer; null lets detection decide again."""
    cid, agent, policy = _conversation_id(request), current_agent(request), request.app[POLICY]
    body = await read_json_object(request)
    if "language" not in body:
        raise ApiError(400, "'language' is required (a language code, or null)")
    language = body["language"]
    if language is not None and not isinstance(language, str):
        raise ApiError(400, "'language' must be a language code or null")
    conv = await run_action(
        request, lambda s, e: console.set_language(s, agent, cid, language, e, policy))
    return web.json_response(console.conversation_summary(conv))


@roles(*ALL_ROLES)
async def hand_back(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/handback: back to the bot."""
    cid, agent, now = _conversation_id(request), current_agent(request), request.app[CLOCK]()
    policy = request.app[POLICY]
    conv = await run_action(request, lambda s, e: console.hand_back(s, agent, cid, now, e, policy))
    return web.json_response(console.conversation_summary(conv))


@roles(*ALL_ROLES)
async def resolve(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/resolve {"code": str}."""
    body = await read_json_object(request)
    code = text_field(body, "code", console.MAX_RESOLUTION_CODE).strip()
    cid, agent, now = _conversation_id(request), current_agent(request), request.app[CLOCK]()
    policy = request.app[POLICY]
    conv = await run_action(
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
    updated = await run_action(
        request, lambda s, e: console.set_availability(s, agent, str(status), now, e, policy)
    )
    return web.json_response(console.agent_dict(updated))


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
    r.add_put("/api/v1/conversations/{conversation_id}/language", set_language)
    r.add_post("/api/v1/conversations/{conversation_id}/resolve", resolve)
    r.add_get("/api/v1/conversations/{conversation_id}/assist", assist)
    r.add_get("/api/v1/customers/{customer_id}", get_customer)
