"""Canned replies API: every agent reads the list (the composer expands `/shortcut`),
managers and admins change it. Thin handlers over carebot.agents.canned."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents import audit
from carebot.agents.canned import (
    CannedError,
    add_canned,
    canned_dict,
    change_canned,
    find_canned,
    list_canned,
    remove_canned,
)
from carebot.web.auth import ALL_ROLES, SUPERVISORS, current_agent, roles
from carebot.web.errors import ApiError, read_json_object
from carebot.web.keys import CLOCK, SESSIONS, SETTINGS, WRITES

T = TypeVar("T")
PATH = "/api/v1/canned-replies"


async def _write(request: web.Request, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    try:
        async with request.app[WRITES].begin() as session:
            return await work(session)
    except CannedError as exc:
        raise ApiError(exc.status, exc.message) from None


@roles(*ALL_ROLES)
async def get_canned(request: web.Request) -> web.Response:
    """GET /api/v1/canned-replies: the list, by shortcut."""
    async with request.app[SESSIONS]() as session:
        rows = await list_canned(session)
        items = [canned_dict(r) for r in rows]
    return web.json_response({"items": items})


@roles(*SUPERVISORS)
async def post_canned(request: web.Request) -> web.Response:
    """POST /api/v1/canned-replies {"shortcut", "title"?, "text"} (managers, admins)."""
    body = await read_json_object(request)
    unknown = sorted(set(body) - {"shortcut", "title", "text"})
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}; allowed: shortcut, "
                            "title, text")
    agent, now = current_agent(request), request.app[CLOCK]()
    max_text = request.app[SETTINGS].max_text_chars

    async def work(session: AsyncSession) -> dict[str, object]:
        row = await add_canned(session, body.get("shortcut"), body.get("title"),
                               body.get("text"), max_text=max_text, created_by=agent.id,
                               now=now)
        audit.record(session, agent, "canned_reply.created", "canned_reply", row.id,
                     {"shortcut": row.shortcut}, at=now)
        return canned_dict(row)

    return web.json_response(await _write(request, work), status=201)


@roles(*SUPERVISORS)
async def patch_canned(request: web.Request) -> web.Response:
    """PATCH /api/v1/canned-replies/{canned_id} {"shortcut"?, "title"?, "text"?}."""
    body = await read_json_object(request)
    key, now = request.match_info["canned_id"], request.app[CLOCK]()
    max_text = request.app[SETTINGS].max_text_chars

    async def work(session: AsyncSession) -> dict[str, object]:
        row = await change_canned(session, await find_canned(session, key), body,
                                  max_text=max_text, now=now)
        audit.record(session, current_agent(request), "canned_reply.changed", "canned_reply",
                     row.id, {"shortcut": row.shortcut, "fields": ",".join(sorted(body))},
                     at=now)
        return canned_dict(row)

    return web.json_response(await _write(request, work))


@roles(*SUPERVISORS)
async def delete_canned(request: web.Request) -> web.Response:
    """DELETE /api/v1/canned-replies/{canned_id}: 204."""
    key, now = request.match_info["canned_id"], request.app[CLOCK]()

    async def work(session: AsyncSession) -> None:
        row = await find_canned(session, key)
        audit.record(session, current_agent(request), "canned_reply.deleted", "canned_reply",
                     row.id, {"shortcut": row.shortcut}, at=now)
        await remove_canned(session, row)

    await _write(request, work)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    """Register the canned-reply endpoints."""
    app.router.add_get(PATH, get_canned)
    app.router.add_post(PATH, post_canned)
    app.router.add_patch(PATH + "/{canned_id}", patch_canned)
    app.router.add_delete(PATH + "/{canned_id}", delete_canned)
