"""Logins for people: password, session cookie, CSRF, Origin, expiry, rate limit, invites."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.agents.passwords import create_invite
from carebot.db.models import Agent, WebSession
from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from tests.helpers import bearer, create_app, make_agent, make_person

Client = TestClient[Any, Any]
PASSWORD = "correct horse battery"


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, clock: ManualClock) -> Client:
    app = create_app(replace(settings, run_timers=False, run_worker=False,
                             session_idle_minutes=30, login_max_failures=3), clock)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def person(sessions: async_sessionmaker[AsyncSession], name: str,
                 role: str = "agent") -> tuple[int, str]:
    return await make_person(sessions, name, role, PASSWORD)


async def log_in(client: Client, name: str, password: str = PASSWORD) -> tuple[int, Any]:
    resp = await client.post("/api/v1/session", json={"name": name, "password": password})
    return resp.status, await resp.json()


async def test_login_sets_a_hidden_strict_cookie_and_the_session_works_with_csrf(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await person(sessions, "Alex")
    resp = await client.post("/api/v1/session", json={"name": "Alex", "password": PASSWORD})
    assert resp.status == 201
    body = await resp.json()
    cookie = resp.cookies["carebot_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert body["agent"]["name"] == "Alex" and "token_hash" not in body["agent"]
    csrf = body["csrf_token"]
    # Reads need only the cookie; changes need the CSRF token too.
    assert (await client.get("/api/v1/me")).status == 200
    resp = await client.put("/api/v1/me/availability", json={"status": "online"})
    assert resp.status == 403
    resp = await client.put("/api/v1/me/availability", json={"status": "online"},
                            headers={"X-CSRF-Token": "wrong"})
    assert resp.status == 403
    resp = await client.put("/api/v1/me/availability", json={"status": "online"},
                            headers={"X-CSRF-Token": csrf})
    assert resp.status == 200 and (await resp.json())["status"] == "online"
    # Another site's page is refused even with the right token.
    resp = await client.put("/api/v1/me/availability", json={"status": "away"},
                            headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert resp.status == 403
    # The token is stored only as a hash.
    async with sessions() as session:
        stored = await session.scalar(select(WebSession.token_hash))
    assert stored is not None and cookie.value not in stored


async def test_wrong_password_unknown_name_and_disabled_agent_get_the_same_401(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await person(sessions, "Alex")
    agent_id, _ = await person(sessions, "Gone")
    async with sessions.begin() as session:
        gone = await session.get(Agent, agent_id)
        assert gone is not None
        gone.disabled = True
    for name, password in (("Alex", "wrong password!"), ("Nobody", PASSWORD), ("Gone", PASSWORD)):
        status, body = await log_in(client, name, password)
        assert (status, body["error"]["message"]) == (401, "wrong name or password")
    # An agent without a password (API only) cannot log in either.
    await make_agent(sessions, "TokenOnly")
    assert (await log_in(client, "TokenOnly", PASSWORD))[0] == 401


async def test_failed_logins_are_rate_limited_per_name_and_address(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    await person(sessions, "Alex")
    for _ in range(3):
        assert (await log_in(client, "Alex", "wrong password!"))[0] == 401
    status, body = await log_in(client, "Alex")  # even the right password now waits
    assert status == 429 and "try again in" in body["error"]["message"]
    clock.advance(minutes=15)
    assert (await log_in(client, "Alex"))[0] == 201


async def test_idle_sessions_expire_and_logout_ends_the_session(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    await person(sessions, "Alex")
    assert (await log_in(client, "Alex"))[0] == 201
    clock.advance(minutes=20)
    assert (await client.get("/api/v1/me")).status == 200  # use keeps it alive
    clock.advance(minutes=20)
    assert (await client.get("/api/v1/me")).status == 200
    clock.advance(minutes=31)
    resp = await client.get("/api/v1/me")
    assert resp.status == 401 and "log in again" in (await resp.json())["error"]["message"]
    _, body = await log_in(client, "Alex")
    resp = await client.delete("/api/v1/session", headers={"X-CSRF-Token": body["csrf_token"]})
    assert resp.status == 200
    assert (await client.get("/api/v1/me")).status == 401
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WebSession)) == 0


async def test_disabling_an_agent_ends_their_browser_session_and_live_feed(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent_id, _ = await person(sessions, "Alex")
    await log_in(client, "Alex")
    origin = {"Origin": str(client.make_url("")).rstrip("/")}
    async with client.ws_connect("/api/v1/events", headers=origin) as ws:
        assert (await ws.receive_json(timeout=5))["kind"] == "hello"
        async with sessions.begin() as session:
            agent = await session.get(Agent, agent_id)
            assert agent is not None
            agent.disabled = True
        msg = await ws.receive(timeout=10)
        assert ws.close_code == 1008, msg
    assert (await client.get("/api/v1/me")).status == 401


async def test_the_websocket_takes_the_cookie_only_from_this_origin(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await person(sessions, "Alex")
    await log_in(client, "Alex")
    for headers in ({"Origin": "https://evil.example"}, {}):
        resp = await client.get("/api/v1/events", headers={
            **headers, "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        })
        assert resp.status == 403


async def test_bearer_tokens_keep_working_without_csrf(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, token = await person(sessions, "Alex")
    resp = await client.put("/api/v1/me/availability", json={"status": "online"},
                            headers=bearer(token))
    assert resp.status == 200


async def test_an_invite_sets_the_password_once_and_logs_in(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    agent_id, _ = await make_agent(sessions, "Newbie")
    async with sessions.begin() as session:
        agent = await session.get(Agent, agent_id)
        assert agent is not None
        token = create_invite(agent, clock())
    resp = await client.post("/api/v1/session/invite", json={"token": token, "password": "short"})
    assert resp.status == 400 and "at least 10" in (await resp.json())["error"]["message"]
    resp = await client.post("/api/v1/session/invite", json={"token": token, "password": PASSWORD})
    assert resp.status == 201 and (await resp.json())["agent"]["name"] == "Newbie"
    assert (await client.get("/api/v1/me")).status == 200
    resp = await client.post("/api/v1/session/invite", json={"token": token, "password": PASSWORD})
    assert resp.status == 400  # used up
    assert (await log_in(client, "Newbie"))[0] == 201


async def test_console_page_is_served_with_a_strict_policy(client: Client) -> None:
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/console"
    resp = await client.get("/console")
    assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    html = await resp.text()
    assert "<script>" not in html and 'type="module"' in html
    assert (await client.get("/static/console/console.js")).status == 200
