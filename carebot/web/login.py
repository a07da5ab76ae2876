"""POST/GET/DELETE /api/v1/session: people log in with a name and password, and out."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from carebot.agents import audit
from carebot.agents.accounts import AgentError
from carebot.agents.logins import Login, log_in, log_out
from carebot.agents.passwords import accept_invite
from carebot.db.models import Agent
from carebot.routing.actions import agent_dict
from carebot.web.auth import current_agent
from carebot.web.errors import ApiError, read_json_object, text_field
from carebot.web.keys import CLOCK, LOGIN_LIMITER, SETTINGS, WRITES
from carebot.web.sessions import COOKIE, WEB_SESSION, lifetime, origin_allowed, set_cookie


def _session_json(login: Login) -> dict[str, object]:
    return {"agent": agent_dict(login.agent), "csrf_token": login.csrf_token}


async def post_session(request: web.Request) -> web.Response:
    """POST /api/v1/session {"name", "password"}: log in; sets the session cookie."""
    if not origin_allowed(request):
        raise ApiError(403, "cross-site login refused")
    body = await read_json_object(request)
    name = text_field(body, "name", 100).strip()
    password = text_field(body, "password", 256)
    now = request.app[CLOCK]()
    limiter = request.app[LOGIN_LIMITER]
    keys = (f"ip:{request.remote}", f"name:{name.casefold()}")
    wait = limiter.retry_after(keys, now)
    if wait:
        raise ApiError(429, f"too many failed logins; try again in {wait} s",
                       retry_after_seconds=wait)
    async with request.app[WRITES].begin() as session:
        login = await log_in(session, name, password, now, lifetime(request.app[SETTINGS]))
        if login is not None:
            audit.record(session, login.agent, "session.login", "agent", login.agent.id,
                         {"ip": request.remote}, at=now)
        else:
            # Failed logins are on record for agents that exist (a name typed by mistake
            # might be someone's password: unknown names are not kept).
            known = await session.scalar(select(Agent.id).where(Agent.name == name))
            if known is not None:
                audit.record(session, audit.ANONYMOUS, "session.login_failed", "agent", known,
                             {"ip": request.remote}, at=now)
    if login is None:
        limiter.failed(keys, now)
        raise ApiError(401, "wrong name or password")
    limiter.succeeded(keys[1])
    response = web.json_response(_session_json(login), status=201)
    set_cookie(request, response, login)
    return response


async def accept_invite_and_log_in(request: web.Request) -> web.Response:
    """POST /api/v1/session/invite {"token", "password"}: choose a password, then log in."""
    if not origin_allowed(request):
        raise ApiError(403, "cross-site request refused")
    body = await read_json_object(request)
    token = text_field(body, "token", 200).strip()
    password = text_field(body, "password", 256)
    now = request.app[CLOCK]()
    limiter = request.app[LOGIN_LIMITER]
    keys = (f"ip:{request.remote}",)
    wait = limiter.retry_after(keys, now)
    if wait:
        raise ApiError(429, f"too many failed attempts; try again in {wait} s",
                       retry_after_seconds=wait)
    try:
        async with request.app[WRITES].begin() as session:
            agent = await accept_invite(session, token, password, now)
            login = await log_in(session, agent.name, password, now,
                                 lifetime(request.app[SETTINGS]))
            audit.record(session, agent, "agent.invite_accepted", "agent", agent.id,
                         {"ip": request.remote}, at=now)
    except AgentError as exc:
        if "invite" in str(exc):
            limiter.failed(keys, now)
        raise ApiError(400, str(exc)) from None
    assert login is not None
    response = web.json_response(_session_json(login), status=201)
    set_cookie(request, response, login)
    return response


async def get_session(request: web.Request) -> web.Response:
    """GET /api/v1/session: who is logged in and the CSRF token to send back (401 if nobody)."""
    web_session = request.get(WEB_SESSION)
    if web_session is None:
        raise ApiError(401, "not logged in with a session cookie")
    return web.json_response({"agent": agent_dict(current_agent(request)),
                              "csrf_token": web_session.csrf_token})


async def delete_session(request: web.Request) -> web.Response:
    """DELETE /api/v1/session: log out (the cookie is cleared; the session is gone)."""
    token = request.cookies.get(COOKIE, "")
    agent = current_agent(request)
    async with request.app[WRITES].begin() as session:
        await log_out(session, token)
        if token:  # a browser session ended (a bearer client has none)
            audit.record(session, agent, "session.logout", "agent", agent.id,
                         at=request.app[CLOCK]())
    response = web.json_response({"status": "logged out"})
    response.del_cookie(COOKIE, path="/")
    return response


def add_routes(app: web.Application) -> None:
    """Register the session endpoints."""
    app.router.add_post("/api/v1/session", post_session)
    app.router.add_get("/api/v1/session", get_session)
    app.router.add_delete("/api/v1/session", delete_session)
    app.router.add_post("/api/v1/session/invite", accept_invite_and_log_in)
