"""The web chat for staff: admins manage sites; agents type and read in a visitor's chat.

- `GET/POST /api/v1/sites`, `PATCH /api/v1/sites/{id}`, `POST /api/v1/sites/{id}/secret`
  (admins): the sites, their allowed origins, look and identity secret.
- `POST /api/v1/conversations/{id}/typing`: the agent is typing (the visitor's widget shows
  "Alex is typing…"); `POST /api/v1/conversations/{id}/seen {"up_to"}`: the agent has seen
  the visitor's messages up to that id (the widget marks them read).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents import audit
from carebot.channels import web_store as store
from carebot.domain.events import Event
from carebot.routing import actions
from carebot.web.auth import ALL_ROLES, current_agent, roles
from carebot.web.errors import ApiError, read_json_object
from carebot.web.keys import CLOCK, EVENT_HUB, SESSIONS, SETTINGS, WRITES
from carebot.web.web_chat import WEB_SITES

_ID = re.compile(r"[0-9]{1,18}")


def base_url(request: web.Request) -> str:
    """Where sites load widget.js from: CAREBOT_PUBLIC_URL, else this request's host."""
    public = request.app[SETTINGS].public_url
    return public.rstrip("/") if public else f"{request.scheme}://{request.host}"


def _site_id(request: web.Request) -> int:
    raw = request.match_info["site_id"]
    if not _ID.fullmatch(raw) or int(raw) >= 2**62:
        raise ApiError(404, f"site {raw!r} not found")
    return int(raw)


async def _write(request: web.Request, work: Any) -> Any:
    try:
        async with request.app[WRITES].begin() as session:
            result = await work(session)
    except store.SiteError as exc:
        raise ApiError(exc.status, exc.message) from None
    request.app[WEB_SITES].forget()
    return result


@roles("admin")
async def list_sites(request: web.Request) -> web.Response:
    """GET /api/v1/sites: every site with its snippet and secret (admins)."""
    async with request.app[SESSIONS]() as session:
        sites = await store.list_sites(session)
    base = base_url(request)
    return web.json_response({"items": [store.site_dict(s, base, secret=True) for s in sites]})


@roles("admin")
async def create_site(request: web.Request) -> web.Response:
    """POST /api/v1/sites {"name", "origins", "title"?, "greeting"?, "colour"?,
    "offline_text"?}: a new site; the response has its snippet and secret."""
    body = await read_json_object(request)
    unknown = sorted(set(body) - set(store.EDITABLE) - {"enabled"})
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")
    name, origins = body.get("name"), body.get("origins")
    if name is None or origins is None:
        raise ApiError(400, "'name' and 'origins' are required")
    now = request.app[CLOCK]()
    settings = {k: body[k] for k in ("title", "greeting", "colour", "offline_text") if k in body}

    async def work(session: AsyncSession) -> dict[str, Any]:
        site = await store.create_site(session, name, origins, now, **settings)
        audit.record(session, current_agent(request), "site.created", "site", site.id,
                     {"name": site.name, "origins": len(site.origins)}, at=now)
        return store.site_dict(site, base_url(request), secret=True)

    return web.json_response(await _write(request, work), status=201)


@roles("admin")
async def change_site(request: web.Request) -> web.Response:
    """PATCH /api/v1/sites/{id}: change its origins, look, offline text, or disable it."""
    body = await read_json_object(request)
    site_id, now = _site_id(request), request.app[CLOCK]()

    async def work(session: AsyncSession) -> dict[str, Any]:
        site = await store.update_site(session, site_id, body, now)
        audit.record(session, current_agent(request), "site.changed", "site", site.id,
                     {"name": site.name, "fields": ",".join(sorted(body))}, at=now)
        return store.site_dict(site, base_url(request), secret=True)

    return web.json_response(await _write(request, work))


@roles("admin")
async def new_secret(request: web.Request) -> web.Response:
    """POST /api/v1/sites/{id}/secret: a new identity secret (the old one stops working)."""
    site_id, now = _site_id(request), request.app[CLOCK]()

    async def work(session: AsyncSession) -> dict[str, Any]:
        site = await store.rotate_secret(session, site_id, now)
        audit.record(session, current_agent(request), "site.secret_rotated", "site", site.id,
                     {"name": site.name}, at=now)
        return store.site_dict(site, base_url(request), secret=True)

    return web.json_response(await _write(request, work))


async def _web_visitor(request: web.Request) -> tuple[int, int, str] | None:
    """(conversation id, contact id, key) when the agent may see this web conversation; None
    for another channel (404/403 as for every conversation endpoint)."""
    raw = request.match_info["conversation_id"]
    if not _ID.fullmatch(raw) or int(raw) >= 2**62:
        raise ApiError(404, f"conversation {raw!r} not found")
    async with request.app[SESSIONS]() as session:
        try:
            conv = await actions.load_for(session, current_agent(request), int(raw))
        except actions.ConsoleError as exc:
            raise ApiError(exc.status, exc.message) from None
        found = await store.web_contact(session, conv.id)
    return None if found is None else (conv.id, found[0], found[1])


@roles(*ALL_ROLES)
async def agent_typing(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/typing: show the visitor that the agent is typing."""
    found = await _web_visitor(request)
    if found is None:
        return web.json_response({"sent": False})
    agent = current_agent(request)
    await request.app[EVENT_HUB].publish([Event(
        "visitor.typing", None, data={"key": found[2], "name": agent.name})])
    return web.json_response({"sent": True})


@roles(*ALL_ROLES)
async def agent_seen(request: web.Request) -> web.Response:
    """POST /api/v1/conversations/{id}/seen {"up_to": message id}: the agent has seen the
    visitor's messages so far (their widget marks them read)."""
    body = await read_json_object(request)
    up_to = body.get("up_to")
    if not isinstance(up_to, int) or isinstance(up_to, bool) or not 0 < up_to < 2**62:
        raise ApiError(400, "'up_to' must be a message id")
    found = await _web_visitor(request)
    if found is None:
        return web.json_response({"moved": False})
    _, contact_id, key = found
    async with request.app[WRITES].begin() as session:
        moved = await store.mark_read(session, contact_id, up_to, by_agent=True)
    if moved:
        await request.app[EVENT_HUB].publish([Event(
            "visitor.read", None, data={"key": key, "up_to": up_to})])
    return web.json_response({"moved": moved})


def add_routes(app: web.Application) -> None:
    """Register the sites admin API and the agents' typing and read marks."""
    r = app.router
    r.add_get("/api/v1/sites", list_sites)
    r.add_post("/api/v1/sites", create_site)
    r.add_patch("/api/v1/sites/{site_id}", change_site)
    r.add_post("/api/v1/sites/{site_id}/secret", new_secret)
    r.add_post("/api/v1/conversations/{conversation_id}/typing", agent_typing)
    r.add_post("/api/v1/conversations/{conversation_id}/seen", agent_seen)
