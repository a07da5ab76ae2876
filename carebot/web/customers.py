"""Customers as people: look one up, see their history across channels, link and unlink
contacts of one person, export everything about them, erase them."""

from __future__ import annotations

import json

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents import audit
from carebot.db.checkpoint import truncate_wal
from carebot.domain.events import Effects
from carebot.domain.text import text_problem
from carebot.routing import erasure, people
from carebot.routing.actions import ConsoleError
from carebot.web.auth import SUPERVISORS, current_agent, roles
from carebot.web.console import MAX_ID, run_action
from carebot.web.errors import ApiError, read_json_object
from carebot.web.keys import CLOCK, ENGINE, POLICY, SESSIONS, WRITES
from carebot.web.params import text_query

LOOKUP = frozenset({"channel", "user_id"})


def _customer_id(request: web.Request) -> int:
    raw = request.match_info["customer_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) > MAX_ID:
        raise ApiError(404, f"customer {raw!r} not found")
    return int(raw)


async def _read(request: web.Request, work: people.Reader) -> web.Response:
    try:
        async with request.app[SESSIONS]() as session:
            return web.json_response(await work(session))
    except ConsoleError as exc:
        raise ApiError(exc.status, exc.message) from None


@roles(*SUPERVISORS)
async def find(request: web.Request) -> web.Response:
    """GET /api/v1/customers?channel=&user_id=: the person with this id on a channel."""
    unknown = sorted(set(request.query) - LOOKUP)
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)}; allowed: "
                            "channel, user_id")
    channel = text_query(request, "channel", 32)
    user_id = request.query.get("user_id", "")
    if channel is None or not user_id or len(user_id) > 128 or text_problem(user_id):
        raise ApiError(400, "give 'channel' and 'user_id' (at most 128 characters of text)")

    async def work(session: AsyncSession) -> dict[str, object]:
        customer_id = await people.find_customer(session, f"{channel}:{user_id}")
        return await people.person_view(session, customer_id)

    return await _read(request, work)


@roles("admin")
async def export(request: web.Request) -> web.Response:
    """GET /api/v1/customers/{id}/export: everything stored about the person (JSON)."""
    customer_id = _customer_id(request)
    now = request.app[CLOCK]()
    try:
        async with request.app[SESSIONS]() as session:
            document = await people.export(session, customer_id, now)
    except ConsoleError as exc:
        raise ApiError(exc.status, exc.message) from None
    admin = current_agent(request)
    async with request.app[WRITES].begin() as session:
        audit.record(session, admin, "customer.exported", "customer", customer_id,
                     {"customer_ids": document["customer_ids"],
                      "conversations": len(document["conversations"])}, at=now)
    return web.Response(
        text=json.dumps(document, ensure_ascii=False, indent=1),
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="customer-{customer_id}.json"'},
    )


@roles("admin")
async def erase(request: web.Request) -> web.Response:
    """POST /api/v1/customers/{id}/erase {"confirm": true}: erase the person's texts and
    identifiers; the anonymous counts stay. Idempotent."""
    body = await read_json_object(request)
    if body.get("confirm") is not True:
        raise ApiError(400, "erasing cannot be undone: send {\"confirm\": true}")
    customer_id = _customer_id(request)
    admin, now, policy = current_agent(request), request.app[CLOCK](), request.app[POLICY]

    async def work(session: AsyncSession, effects: Effects) -> erasure.ErasureReport:
        await people.find_customer(session, str(customer_id))
        return await erasure.erase(session, customer_id, now, admin, effects, policy)

    report = await run_action(request, work)
    await truncate_wal(request.app[ENGINE])
    return web.json_response(report.to_dict())


@roles(*SUPERVISORS)
async def link(request: web.Request) -> web.Response:
    """POST /api/v1/customers/{id}/link {"customer_id": other}: the same person."""
    body = await read_json_object(request)
    other = body.get("customer_id")
    if not isinstance(other, int) or isinstance(other, bool) or not 1 <= other <= MAX_ID:
        raise ApiError(400, f"'customer_id' must be an integer from 1 to {MAX_ID}")
    customer_id, agent, now = _customer_id(request), current_agent(request), request.app[CLOCK]()

    async def work(session: AsyncSession, _effects: Effects) -> dict[str, object]:
        await people.link(session, customer_id, other, agent, now)
        return await people.person_view(session, customer_id)

    return web.json_response(await run_action(request, work))


@roles(*SUPERVISORS)
async def unlink(request: web.Request) -> web.Response:
    """POST /api/v1/customers/{id}/unlink: this customer is a person of their own again."""
    customer_id, agent, now = _customer_id(request), current_agent(request), request.app[CLOCK]()

    async def work(session: AsyncSession, _effects: Effects) -> dict[str, object]:
        await people.unlink(session, customer_id, agent, now)
        return await people.person_view(session, customer_id)

    return web.json_response(await run_action(request, work))


def add_routes(app: web.Application) -> None:
    """Register the customer endpoints."""
    r = app.router
    r.add_get("/api/v1/customers", find)
    # GET /api/v1/customers/{customer_id} is the console's customer panel (web.console).
    r.add_get("/api/v1/customers/{customer_id}/export", export)
    r.add_post("/api/v1/customers/{customer_id}/erase", erase)
    r.add_post("/api/v1/customers/{customer_id}/link", link)
    r.add_post("/api/v1/customers/{customer_id}/unlink", unlink)
