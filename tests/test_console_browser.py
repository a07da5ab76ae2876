"""The agent console in a real browser: two agents, a customer on the HTTP channel, live."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import Message
from carebot.domain.clock import system_clock
from carebot.settings import Settings
from tests.browser import eventually, screenshots
from tests.helpers import bearer, create_app, make_person

SECRET = "bridge-secret"
PASSWORD = "correct horse battery"


class Bridge:
    """The customer's messenger bridge: receives carebot's callbacks on loopback."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/carebot", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.json_response({"ok": True})

    def texts(self) -> list[str]:
        return [str(r.get("text", "")) for r in self.received]


class Service:
    """carebot on 127.0.0.1 with its bridge, and a customer who writes to it."""

    def __init__(self, server: TestServer, bridge: Bridge,
                 sessions: async_sessionmaker[AsyncSession]) -> None:
        self.server = server
        self.bridge = bridge
        self.sessions = sessions
        self.url = str(server.make_url("")).rstrip("/")
        self.sent = 0

    async def say(self, user: str, text: str | None = None, *, payload: str | None = None,
                  name: str = "Uma Customer") -> dict[str, Any]:
        self.sent += 1
        body: dict[str, Any] = {"user_id": user, "message_id": f"{user}-{self.sent}",
                                "name": name}
        if text is not None:
            body["text"] = text
        if payload is not None:
            body["payload"] = payload
        async with aiohttp.ClientSession() as http, http.post(
            f"{self.url}/api/v1/channels/http/messages", json=body,
            headers={"X-Carebot-Secret": SECRET},
        ) as resp:
            data: dict[str, Any] = await resp.json()
            assert resp.status == 200, data
            return data

    async def api(self, token: str, method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as http, http.request(
            method, f"{self.url}{path}", json=body, headers=bearer(token)
        ) as resp:
            data = await resp.json()
            assert resp.status < 300, data
            return data

    async def person(self, name: str, role: str = "agent", status: str = "away") -> str:
        """An agent with a console password; returns their API token."""
        _, token = await make_person(self.sessions, name, role, PASSWORD, status=status)
        return token


@pytest.fixture
async def service(
    aiohttp_server: Any, settings: Settings, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> Service:
    bridge = Bridge()
    bridge_server = await aiohttp_server(bridge.app())
    app = create_app(replace(
        settings, http_channel_secret=SECRET,
        http_channel_callback_url=str(bridge_server.make_url("/carebot")),
        outbox_poll_seconds=0.05, survey_channels="http",
        # A customer who writes again a second after resolution starts a new conversation.
        reopen_window_hours=0.0002,
    ), system_clock)
    server = await aiohttp_server(app)
    return Service(server, bridge, sessions)


async def log_in(browser: Any, service: Service, name: str) -> Any:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    await page.goto(f"{service.url}/console")
    await page.fill("#login-name", name)
    await page.fill("#login-password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#queue")
    await page.wait_for_selector(".live.live")
    return page


async def test_two_agents_work_a_customer_from_queue_to_csat(
    browser: Any, service: Service
) -> None:
    alex = await service.person("Alex")
    await service.person("Bea")
    # Uma's earlier conversation, handled over the API and closed.
    earlier = (await service.say("uma", "/human"))["conversation_id"]
    await service.api(alex, "POST", f"/api/v1/conversations/{earlier}/claim")
    await service.api(alex, "POST", f"/api/v1/conversations/{earlier}/resolve",
                      {"code": "duplicate"})
    await asyncio.sleep(1.0)  # past the (tiny) reopen window

    page_a = await log_in(browser, service, "Alex")
    page_b = await log_in(browser, service, "Bea")
    cid = (await service.say("uma", "I want to talk to a person"))["conversation_id"]
    assert cid != earlier
    item = f'#queue li[data-id="{cid}"]'
    # Queued: both consoles show it without a reload, with the customer's name.
    for page in (page_a, page_b):
        await page.wait_for_selector(item)
        assert "Uma Customer" in await page.inner_text(item)
        assert "I want to talk to a person" in await page.inner_text(item)
    await page_b.screenshot(path=str(screenshots() / "console-queue.png"))
    await page_a.click(f"{item} a")
    await page_a.click("#take")
    await page_b.wait_for_selector(item, state="detached")
    # Bea may not read Alex's conversation: the page shows the refusal, not the transcript.
    await page_b.goto(f"{service.url}/console#/c/{cid}")
    await page_b.wait_for_selector("#main .error")
    assert await page_b.locator(".msg").count() == 0
    await page_a.wait_for_selector(f'#mine li[data-id="{cid}"]')
    # The customer panel lists Uma's earlier conversation.
    await page_a.wait_for_selector(f'#history a[href="#/c/{earlier}"]')

    await service.say("uma", "How long does a refund take?")
    await page_a.wait_for_selector('.msg-customer:has-text("How long does a refund take?")')
    await page_a.reload()  # assist follows the customer's last question
    await page_a.wait_for_selector(".suggestion button.insert")
    answer = await page_a.inner_text(".suggestion .a >> nth=0")
    await page_a.click(".suggestion button.insert >> nth=0")
    text = await page_a.input_value("#composer-text")
    assert text == answer
    await page_a.fill("#composer-text", text + "\nAnything else I can do?")
    await page_a.screenshot(path=str(screenshots() / "console-conversation.png"))
    await page_a.click("#send")
    await page_a.wait_for_selector('.msg-agent:has-text("Anything else I can do?")')

    async def delivered() -> bool:
        return any("Anything else I can do?" in t for t in service.bridge.texts())

    await eventually(delivered)
    await page_a.select_option("#resolve-code", "answered")
    await page_a.click("#resolve")
    await page_a.wait_for_selector(".conv-head .status-resolved")

    async def surveyed() -> bool:
        return any(r.get("buttons") for r in service.bridge.received[-1:])

    await eventually(surveyed)
    survey = service.bridge.received[-1]
    five = next(b["payload"] for b in survey["buttons"] if b["title"].startswith("5"))
    await service.say("uma", payload=five)
    await page_a.wait_for_selector(f'.pressed:has-text("{five}")')
    await page_a.wait_for_selector('#surveys li:has-text("CSAT 5/5")')
    assert page_a.errors == [] and page_b.errors == []


async def test_customer_text_is_shown_as_text_and_runs_nothing(
    browser: Any, service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await service.person("Alex")
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    link = "javascript:window.pwned=3"
    cid = (await service.say("mallory", f"{hostile} {link} /human",
                             name='<b onmouseover="window.pwned=4">Mallory</b>'))["conversation_id"]
    page = await log_in(browser, service, "Alex")
    await page.click(f'#queue li[data-id="{cid}"] a')
    await page.wait_for_selector(".msg-customer")
    assert await page.locator("#main img, #main script, #queue b, #main b").count() == 0
    assert hostile in await page.inner_text(".msg-customer .text")
    assert await page.locator('a[href^="javascript:"]').count() == 0
    await page.hover(".conv-head h2")
    assert await page.evaluate("window.pwned") is None
    async with sessions() as session:
        stored = await session.scalar(select(Message.text).where(Message.conversation_id == cid))
    assert stored is not None and hostile in stored


async def test_session_cookie_is_hidden_csp_strict_and_foreign_posts_refused(
    browser: Any, service: Service
) -> None:
    await service.person("Alex")
    page = await log_in(browser, service, "Alex")
    assert await page.evaluate("document.cookie") == ""
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "carebot_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    response = await page.goto(f"{service.url}/console")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "script-src 'self'" in csp
    # Another site's page posting with the cookie (as a form or fetch would) is refused.
    async with aiohttp.ClientSession(cookies={"carebot_session": session["value"]}) as http:
        async with http.put(f"{service.url}/api/v1/me/availability", json={"status": "online"},
                            headers={"Origin": "https://evil.example"}) as resp:
            assert resp.status == 403
        async with http.put(f"{service.url}/api/v1/me/availability",
                            json={"status": "online"}) as resp:
            assert resp.status == 403  # no CSRF token
            assert "X-CSRF-Token" in (await resp.json())["error"]["message"]


async def test_admin_adds_an_agent_with_an_invite_and_a_canned_reply_agents_expand(
    browser: Any, service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await service.person("Root", "admin")
    alex = await service.person("Alex")
    admin = await log_in(browser, service, "Root")
    await admin.click('a[href="#/admin/agents"]')
    await admin.fill("#new-agent-name", "Nia")
    await admin.select_option("#new-agent-role", "manager")
    await admin.click("#add-agent button[type=submit]")
    await admin.wait_for_selector('#agents-table tr[data-agent="Nia"]')
    link = await admin.inner_text("#shown-secret .secret-value")
    assert "/console/invite#" in link
    await admin.screenshot(path=str(screenshots() / "console-admin.png"))
    # The invite works once, in a fresh browser: Nia chooses a password and is in.
    newcomer = await (await browser.new_context()).new_page()
    await newcomer.goto(link if link.startswith("http") else f"{service.url}{link}")
    await newcomer.fill("#invite-password", PASSWORD)
    await newcomer.fill("#invite-again", PASSWORD)
    await newcomer.click("button[type=submit]")
    await newcomer.wait_for_selector("text=Nia (manager)")
    # Disabling Nia ends her session at once.
    await admin.click('#agents-table tr[data-agent="Nia"] button:has-text("Disable")')
    await newcomer.wait_for_selector("#login-name", timeout=10_000)

    await admin.click('a[href="#/admin/canned"]')
    await admin.fill("#new-canned-shortcut", "refund")
    await admin.fill("#new-canned-title", "Refund times")
    await admin.fill("#new-canned-text", "Refunds take 5 to 10 business days.")
    await admin.click("#add-canned button[type=submit]")
    await admin.wait_for_selector('#canned-table td:has-text("/refund")')

    cid = (await service.say("ben", "/human", name="Ben"))["conversation_id"]
    await service.api(alex, "POST", f"/api/v1/conversations/{cid}/claim")
    page = await log_in(browser, service, "Alex")
    await page.click(f'#mine li[data-id="{cid}"] a')
    await page.click("#composer-text")
    await page.keyboard.type("Hi Ben! /refund")
    await page.keyboard.press("Tab")
    assert await page.input_value("#composer-text") == (
        "Hi Ben! Refunds take 5 to 10 business days.")
    assert admin.errors == [] and page.errors == []
