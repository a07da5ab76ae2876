"""The managers' dashboard in a real browser, on a fixed-clock database with known numbers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from tests.browser import eventually, screenshots
from tests.helpers import bearer, create_app, make_person

PASSWORD = "correct horse battery"
# The day the scenario happens (START is Monday 2026-03-02 09:00 UTC).
DAY = "from=2026-03-02&to=2026-03-02&tz=UTC"


class Desk:
    """carebot on 127.0.0.1 with a manual clock; customers and agents act through HTTP."""

    def __init__(self, server: TestServer, clock: ManualClock,
                 sessions: async_sessionmaker[AsyncSession]) -> None:
        self.url = str(server.make_url("")).rstrip("/")
        self.clock = clock
        self.sessions = sessions
        self.sent = 0

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> Any:
        async with aiohttp.ClientSession() as http, http.request(
            method, f"{self.url}{path}", json=body, headers=headers
        ) as resp:
            data = await resp.json()
            assert resp.status < 300, data
            return data

    async def say(self, user: str, text: str | None = None, payload: str | None = None) -> Any:
        self.sent += 1
        body: dict[str, Any] = {"user_id": user, "message_id": f"m{self.sent}", "name": user}
        body.update({"text": text} if text is not None else {"payload": payload})
        return await self.call("POST", "/api/v1/channels/http/messages", body)

    async def person(self, name: str, role: str) -> str:
        _, token = await make_person(self.sessions, name, role, PASSWORD, status="away")
        return token


@pytest.fixture
async def desk(
    aiohttp_server: Any, settings: Settings, clock: ManualClock, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> Desk:
    app = create_app(replace(settings, run_timers=False, run_worker=False), clock)
    return Desk(await aiohttp_server(app), clock, sessions)


async def seed(desk: Desk) -> str:
    """Two conversations on 2026-03-02: one the bot resolves (confirmed), one a person
    answers 90 s after the handoff. Returns the agent's token."""
    alex = await desk.person("Alex", "agent")
    reply = await desk.say("anna", "where is my order?")
    yes = next(b["payload"] for b in reply["replies"][-1]["buttons"]
               if b["payload"].startswith("yes:"))
    desk.clock.advance(seconds=20)
    await desk.say("anna", payload=yes)
    desk.clock.advance(minutes=10)
    cid = (await desk.say("ben", "/human"))["conversation_id"]
    desk.clock.advance(seconds=60)
    await desk.call("POST", f"/api/v1/conversations/{cid}/claim", headers=bearer(alex))
    desk.clock.advance(seconds=30)
    await desk.call("POST", f"/api/v1/conversations/{cid}/reply", {"text": "Hi Ben"},
                    headers=bearer(alex))
    desk.clock.advance(seconds=60)
    await desk.call("POST", f"/api/v1/conversations/{cid}/resolve", {"code": "answered"},
                    headers=bearer(alex))
    return alex


async def open_dashboard(browser: Any, desk: Desk, name: str, query: str = DAY) -> Any:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    await page.goto(f"{desk.url}/dashboard?{query}")
    await page.fill("#login-name", name)
    await page.fill("#login-password", PASSWORD)
    await page.click("button[type=submit]")
    return page


async def text_becomes(page: Any, selector: str, text: str) -> None:
    """Wait for the element's text (the page's CSP forbids wait_for_function's eval)."""

    async def check() -> bool:
        return bool(await page.locator(selector).count()
                    and await page.inner_text(selector) == text)

    await eventually(check)


async def tile(page: Any, key: str) -> str:
    return str(await page.inner_text(f'.tile[data-key="{key}"] .value'))


async def test_tiles_show_the_hand_computed_figures_and_equal_the_api(
    browser: Any, desk: Desk
) -> None:
    await seed(desk)
    boss = await desk.person("Mona", "manager")
    page = await open_dashboard(browser, desk, "Mona")
    await page.wait_for_selector('.tile[data-key="conversations"]')
    # By hand: two conversations opened; one of two handed off; Ben's first human answer came
    # 60 s + 30 s after his handoff; nothing breached the 300 s queue SLA.
    assert await tile(page, "conversations") == "2"
    assert await tile(page, "handoff_rate") == "50.0%"
    assert await tile(page, "first_response_median") == "1m 30s"
    assert await tile(page, "sla_breaches") == "0"
    api = await desk.call("GET", f"/api/v1/stats/tiles?{DAY}", headers=bearer(boss))
    shown = {t["key"]: t for t in api["tiles"]}
    assert shown["conversations"]["value"] == 2 and shown["handoff_rate"]["value"] == 0.5
    assert shown["first_response_median"]["value"] == 90_000
    # Every chart drew, and its numbers are in a table too.
    for chart in ("chart-outcomes", "chart-surveys", "chart-times"):
        assert await page.locator(f"#{chart} canvas").count() >= 1
    await page.wait_for_selector('.funnel li[data-step="first_message"]')
    assert "2 (100.0%)" in await page.inner_text('.funnel li[data-step="first_message"]')
    assert await page.locator("#agents tbody tr").count() == 1
    assert page.errors == []
    await page.screenshot(path=str(screenshots() / "dashboard.png"), full_page=True)

    # A filter changes the URL and every number; the journey lists a step's conversations.
    await page.fill("#f-channel", "telegram")
    await page.click("#filters button[type=submit]")
    await text_becomes(page, '.tile[data-key="conversations"] .value', "0")
    assert "channel=telegram" in page.url
    await page.goto(f"{desk.url}/dashboard?{DAY}")
    await page.click('.funnel li[data-step="queued"] button')
    await page.wait_for_selector('#journey-list a[href^="/console#/c/"]')


async def test_live_panel_follows_the_queue_without_reload(browser: Any, desk: Desk) -> None:
    alex = await desk.person("Alex", "agent")
    await desk.person("Mona", "manager")
    page = await open_dashboard(browser, desk, "Mona")
    await page.wait_for_selector(".live.live")
    await page.wait_for_selector("#live-queue")
    assert await page.inner_text("#live-queue") == "0"
    cid = (await desk.say("ben", "/human"))["conversation_id"]
    await text_becomes(page, "#live-queue", "1")
    await desk.call("POST", f"/api/v1/conversations/{cid}/claim", headers=bearer(alex))
    await text_becomes(page, "#live-queue", "0")
    assert page.errors == []


async def test_an_agent_is_refused_the_dashboard(browser: Any, desk: Desk) -> None:
    token = await desk.person("Alex", "agent")
    page = await open_dashboard(browser, desk, "Alex")
    await page.wait_for_selector("text=The dashboard is for managers and admins.")
    async with aiohttp.ClientSession() as http, http.get(
        f"{desk.url}/api/v1/stats/tiles", headers=bearer(token)
    ) as resp:
        assert resp.status == 403
