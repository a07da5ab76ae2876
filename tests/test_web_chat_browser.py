"""The web chat widget in a real browser: a shop's page on another origin embeds it and a
visitor talks to the bot and to an agent, loses the network, reloads, answers the survey."""

from __future__ import annotations

import asyncio
import html
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.channels import web as web_channel
from carebot.db.models import Contact, Message, Survey, WebSite
from carebot.domain.clock import system_clock
from carebot.settings import Settings
from carebot.web.web_chat import WEB_VISITORS
from tests.browser import eventually, screenshots
from tests.helpers import bearer, create_app, make_agent
from tests.web_chat_support import make_site

REFUND = "How long does a refund take?"
# The shop's own page: strict CSP (no inline script or style anywhere), and CSS that would
# wreck any widget it could reach.
SHOP_CSS = ("* { color: rgb(255, 0, 0) !important; font-size: 30px !important; } "
            "button { display: none !important; } li { list-style: square !important; }")


class Shop:
    """A shop's website on its own origin (another port), embedding the chat."""

    def __init__(self, carebot: str, site: WebSite) -> None:
        self.carebot = carebot
        self.site = site
        self.user: dict[str, str] | None = None
        self.lang = "en"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/shop.css", self._css)
        return app

    async def _page(self, request: web.Request) -> web.Response:
        attrs = f'data-site="{self.site.key}"'
        user = self.user or {}
        for name, value in user.items():
            attrs += f' data-user-{name}="{html.escape(value)}"'
        body = (
            f"<!doctype html><html lang='{self.lang}'><head><meta charset='utf-8'>"
            "<title>Acme shop</title>"
            "<link rel='stylesheet' href='/shop.css'></head><body><h1>Acme shop</h1>"
            "<p>Everything for your home.</p>"
            f"<script src='{self.carebot}/widget.js' {attrs} async></script></body></html>"
        )
        ws = self.carebot.replace("http://", "ws://")
        csp = (f"default-src 'none'; script-src {self.carebot}; style-src 'self'; "
               f"connect-src {self.carebot} {ws}; img-src 'self'")
        return web.Response(text=body, content_type="text/html",
                            headers={"Content-Security-Policy": csp})

    async def _css(self, _request: web.Request) -> web.Response:
        return web.Response(text=SHOP_CSS, content_type="text/css")


class Service:
    """carebot on 127.0.0.1, its site, the shop embedding it, and helpers for the agent side."""

    def __init__(self, server: TestServer, shop: TestServer, site: WebSite,
                 sessions: async_sessionmaker[AsyncSession], shop_app: Shop) -> None:
        self.server = server
        self.url = str(server.make_url("")).rstrip("/")
        self.shop_url = str(shop.make_url("/"))
        self.site = site
        self.sessions = sessions
        self.shop = shop_app

    async def api(self, token: str, method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as http, http.request(
            method, f"{self.url}{path}", json=body, headers=bearer(token)
        ) as resp:
            data = await resp.json()
            assert resp.status < 300, data
            return data

    async def conversation(self) -> int:
        async with self.sessions() as session:
            cid = await session.scalar(select(func.max(Message.conversation_id)))
        assert cid is not None
        return int(cid)

    async def drop_sockets(self) -> int:
        """Close every visitor socket from the server's side (a network drop)."""
        visitors = self.server.app[WEB_VISITORS]
        sockets = [s for ss in visitors.by_key.values() for s in ss]
        await asyncio.gather(*(s.ws.close(code=1012, message=b"restart") for s in sockets))
        return len(sockets)


@pytest.fixture
async def service(
    aiohttp_server: Any, settings: Settings, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> Service:
    app = create_app(replace(settings, outbox_poll_seconds=0.05, run_timers=False,
                             web_messages_per_minute=8), system_clock)
    server = await aiohttp_server(app)
    carebot = str(server.make_url("")).rstrip("/")
    # The shop's port is known only once it listens: the site is added, then the page served.
    shop_app = Shop(carebot, None)  # type: ignore[arg-type]
    shop = await aiohttp_server(shop_app.app())
    site = await make_site(sessions, "Acme", (str(shop.make_url("")).rstrip("/"),),
                           title="Acme help", colour="#0f766e",
                           greeting="Hi! Ask us anything about your order.",
                           offline_text="We're away; we reply within a day.")
    shop_app.site = site
    return Service(server, shop, site, sessions, shop_app)


async def open_shop(browser: Any, service: Service, context: Any = None) -> Any:
    context = context or await browser.new_context(viewport={"width": 1100, "height": 760})
    page = await context.new_page()
    errors: list[str] = []
    # Script errors only: the network errors of the offline spell are expected.
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    await page.goto(service.shop_url)
    await page.wait_for_selector(".bubble")
    return page


async def texts(page: Any) -> list[str]:
    return list(await page.locator("li[data-id] .t").all_inner_texts())


async def test_a_visitor_talks_to_the_bot_and_an_agent_through_drops_and_reloads(
    browser: Any, service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, alex = await make_agent(sessions, "Alex")
    page = await open_shop(browser, service)
    await page.screenshot(path=str(screenshots() / "widget-closed.png"))
    # The page's CSS does not reach the widget: its button shows, in its own colour.
    assert await page.locator(".bubble").is_visible()
    await page.click(".bubble")
    await page.wait_for_selector(".panel h2:has-text('Acme help')")
    await page.wait_for_selector(".sub:has-text('we reply within a day')")
    colour = await page.locator(".panel .t >> nth=0").evaluate("e => getComputedStyle(e).color")
    assert colour != "rgb(255, 0, 0)"

    await page.fill("textarea", REFUND)
    await page.keyboard.press("Enter")
    await page.wait_for_selector(".btns button:has-text('No, talk to a person')")
    assert "refund" in (await texts(page))[-1].lower()
    await page.screenshot(path=str(screenshots() / "widget-buttons.png"))
    await page.click(".btns button:has-text('No, talk to a person')")
    await page.wait_for_selector("li.bot .t:has-text('number 1 in the queue')")

    # Alex comes online: the queue hands him the conversation; the widget hears it live.
    await service.api(alex, "PUT", "/api/v1/me/availability", {"status": "online"})
    await page.wait_for_selector(".t:has-text('Alex has joined')")
    await page.wait_for_selector(".sub:has-text(\"We're online\")")
    cid = await service.conversation()
    await service.api(alex, "POST", f"/api/v1/conversations/{cid}/typing")
    await page.wait_for_selector(".sub:has-text('Alex is typing')")
    await service.api(alex, "POST", f"/api/v1/conversations/{cid}/reply",
                      {"text": "Hi, Alex here. Which order is it?"})
    await page.wait_for_selector("li.agent:has-text('Alex here')")
    assert await page.locator("li.agent .who").inner_text() == "Alex"
    # The visitor's messages show as read once someone answered them.
    await page.wait_for_selector("li.visitor .mark:has-text('Read')")

    # The network drops: the server closes the socket and the browser is offline a while.
    context = page.context
    await context.set_offline(True)
    assert await service.drop_sockets() == 1
    await page.fill("textarea", "Order 1234, are you there?")
    await page.keyboard.press("Enter")
    await page.wait_for_selector(".mark:has-text('Sending')")
    for n in ("one", "two", "three"):
        await service.api(alex, "POST", f"/api/v1/conversations/{cid}/reply",
                          {"text": f"update {n}"})
    await asyncio.sleep(0.5)
    assert not any("update" in t for t in await texts(page))
    await context.set_offline(False)
    await page.wait_for_selector(".t:has-text('update three')")
    await page.wait_for_selector("li.visitor[data-id] .t:has-text('Order 1234')")
    shown = await texts(page)
    updates = [t for t in shown if t.startswith("update")]
    assert updates == ["update one", "update two", "update three"]
    assert shown.count("Order 1234, are you there?") == 1
    async with sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(Message).where(
            Message.text == "Order 1234, are you there?"))
    assert stored == 1
    ids = [int(i) for i in await page.locator("li[data-id]").evaluate_all(
        "els => els.map(e => e.dataset.id)")]
    assert ids == sorted(ids) and len(ids) == len(set(ids))

    # A reload restores the whole history from the server; so does a second tab.
    await page.reload()
    await page.wait_for_selector(".t:has-text('update three')")
    assert await texts(page) == shown
    second = await open_shop(browser, service, context)
    await second.wait_for_selector(".t:has-text('update three')")
    assert await texts(second) == shown

    # Resolved: the survey's score buttons; a press answers it.
    await service.api(alex, "POST", f"/api/v1/conversations/{cid}/resolve", {"code": "answered"})
    await page.wait_for_selector(".btns button:has-text('5')")
    await page.screenshot(path=str(screenshots() / "widget-survey.png"))
    await page.click(".btns button:has-text('5')")
    await page.wait_for_selector(".t:has-text('Anything we could do better')")

    async def answered() -> bool:
        async with sessions() as session:
            return await session.scalar(select(Survey.score)) == 5

    await eventually(answered)
    await page.fill("textarea", "All good, thanks!")
    await page.keyboard.press("Enter")
    await page.wait_for_selector(".t:has-text('Thank you for your feedback')")
    await page.screenshot(path=str(screenshots() / "widget-open.png"))
    assert page.errors == [] and second.errors == []


async def test_html_from_visitors_and_agents_is_shown_as_text(
    browser: Any, service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, alex = await make_agent(sessions, "Alex", status="online")
    page = await open_shop(browser, service)
    await page.click(".bubble")
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script> /human'
    await page.fill("textarea", hostile)
    await page.keyboard.press("Enter")
    await page.wait_for_selector(".t:has-text('passed your conversation to Alex')")
    cid = await service.conversation()
    await service.api(alex, "POST", f"/api/v1/conversations/{cid}/reply",
                      {"text": '<b onmouseover="window.pwned=3">bold</b><iframe src=x>'})
    await page.wait_for_selector("li.agent .t:has-text('<b onmouseover')")
    assert await page.locator(".panel img, .panel script, .panel b, .panel iframe").count() == 0
    assert hostile in await texts(page)
    await page.hover("li.agent .t")
    assert await page.evaluate("window.pwned") is None


async def test_a_signed_in_user_is_tied_to_their_customer_and_a_forged_hash_is_refused(
    browser: Any, service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    secret = service.site.secret
    service.shop.user = {"id": "customer-77", "hash": web_channel.sign_user(secret, "customer-77"),
                         "name": "Dana Buyer"}
    page = await open_shop(browser, service)
    await page.click(".bubble")
    await page.fill("textarea", "Hello from my account")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("li.visitor[data-id]")
    async with sessions() as session:
        contact = await session.scalar(select(Contact).where(Contact.channel == "web"))
    assert contact is not None
    assert contact.external_id == f"site{service.site.id}:user:customer-77"
    assert contact.display_name == "Dana Buyer"
    # Another browser with the same signed id sees the same chat.
    other = await open_shop(browser, service)
    await other.click(".bubble")
    await other.wait_for_selector(".t:has-text('Hello from my account')")

    # Someone edits the page to claim another user id with the same hash: refused.
    service.shop.user = {**service.shop.user, "id": "customer-78"}
    forged = await open_shop(browser, service)
    await forged.click(".bubble")
    await forged.wait_for_selector(".err:has-text('could not verify who you are')")
    # Refused for good: the composer is off, and the widget does not keep knocking.
    assert await forged.locator("textarea").is_disabled()
    async with sessions() as session:
        contacts = await session.scalar(select(func.count()).select_from(Contact))
    assert contacts == 1


async def test_a_page_on_another_origin_gets_no_chat(
    browser: Any, service: Service, aiohttp_server: Any
) -> None:
    elsewhere = await aiohttp_server(service.shop.app())  # same page, an origin not allowed
    context = await browser.new_context()
    page = await context.new_page()
    warnings: list[str] = []
    page.on("console", lambda msg: warnings.append(msg.text))
    await page.goto(str(elsewhere.make_url("/")))
    refused = "carebot chat: not shown on this page"
    await eventually(lambda: _true_if(any(refused in w for w in warnings)))
    assert await page.locator(".bubble").count() == 0
    # Its own socket attempt is refused before the upgrade.
    ws_url = service.url.replace("http://", "ws://")
    code = await page.evaluate(
        """url => new Promise(done => {
             const ws = new WebSocket(url);
             ws.onopen = () => done('open');
             ws.onclose = ev => done(ev.code);
           })""",
        f"{ws_url}/api/v1/channels/web/socket?site={service.site.key}",
    )
    assert code == 1006


async def _true_if(value: bool) -> bool:
    return value


async def test_a_visitor_who_writes_too_fast_is_told_to_wait(
    browser: Any, service: Service
) -> None:
    page = await open_shop(browser, service)
    await page.click(".bubble")
    for n in range(9):  # the service allows 8 a minute
        await page.fill("textarea", f"hello {n}")
        await page.keyboard.press("Enter")
    await page.wait_for_selector(".err:has-text('faster than we can read them')")
    await page.wait_for_selector("li.failed .retry")
    assert "Please wait" in await page.locator(".err").inner_text()


async def test_the_agent_console_and_the_widget_see_each_other_typing(
    browser: Any, service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from carebot.agents.passwords import set_password
    from carebot.db.models import Agent

    agent_id, _ = await make_agent(sessions, "Alex", status="online")
    async with sessions.begin() as session:
        agent = await session.get(Agent, agent_id)
        assert agent is not None
        set_password(agent, "correct horse battery")
    page = await open_shop(browser, service)
    await page.click(".bubble")
    await page.fill("textarea", "I want to talk to a person")
    await page.keyboard.press("Enter")
    await page.wait_for_selector(".t:has-text('passed your conversation to Alex')")
    cid = await service.conversation()

    console = await (await browser.new_context()).new_page()
    await console.goto(f"{service.url}/console")
    await console.fill("#login-name", "Alex")
    await console.fill("#login-password", "correct horse battery")
    await console.click("button[type=submit]")
    await console.wait_for_selector(".live.live")
    await console.goto(f"{service.url}/console#/c/{cid}")
    await console.wait_for_selector(".msg-customer:has-text('I want to talk to a person')")
    # The agent has seen the visitor's message: the widget marks it read.
    await page.wait_for_selector("li.visitor .mark:has-text('Read')")

    await page.type("textarea", "my parcel")
    await console.wait_for_selector("#customer-typing:has-text('typing…')")
    await console.type("#composer-text", "Let me check")
    await page.wait_for_selector(".sub:has-text('Alex is typing')")

    # The visitor's open widget shows the agent's reply: the console marks it read.
    await console.click("#send")
    await page.wait_for_selector(".t:has-text('Let me check')")
    await console.wait_for_selector("li.msg-agent:has-text('Let me check') .read-mark")
    assert await console.locator(".read-mark").count() == 1


async def test_an_admin_edits_a_site_in_the_console(
    browser: Any, service: Service, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from carebot.agents.passwords import set_password
    from carebot.db.models import Agent

    agent_id, _ = await make_agent(sessions, "Root", "admin")
    async with sessions.begin() as session:
        agent = await session.get(Agent, agent_id)
        assert agent is not None
        set_password(agent, "correct horse battery")
    console = await (await browser.new_context()).new_page()
    console.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await console.goto(f"{service.url}/console")
    await console.fill("#login-name", "Root")
    await console.fill("#login-password", "correct horse battery")
    await console.click("button[type=submit]")
    await console.click("nav a:has-text('Web chat')")
    form = 'form.site[data-site="Acme"]'
    await console.wait_for_selector(form)
    assert service.site.key in await console.inner_text(f"{form} h3")
    await console.fill(f"#site-{service.site.id}-offline", "Back tomorrow at 9.")
    await console.click(f"{form} button[type=submit]")
    await console.wait_for_selector("#flash:has-text('saved')")
    await console.click(f"{form} button:has-text('Rotate')")
    await console.wait_for_selector("#flash:has-text('New secret')")
    async with sessions() as session:
        site = await session.get(WebSite, service.site.id, populate_existing=True)
    assert site is not None and site.offline_text == "Back tomorrow at 9."
    assert site.secret != service.site.secret
    await console.fill("#new-site-name", "Blog")
    await console.fill("#new-site-origins", "https://blog.example")
    await console.click("#add-site button[type=submit]")
    await console.wait_for_selector('form.site[data-site="Blog"]')
    # The shop's widget shows the new offline text (within the five-second settings cache).
    page = await open_shop(browser, service)
    await page.click(".bubble")
    await page.wait_for_selector(".sub:has-text('Back tomorrow at 9.')", timeout=10_000)


async def test_the_widget_speaks_the_pages_language(browser: Any, service: Service) -> None:
    service.shop.lang = "de"
    page = await open_shop(browser, service)
    await page.click(".bubble")
    await page.wait_for_selector("textarea[placeholder='Nachricht schreiben…']")
    assert await page.inner_text("button.send") == "Senden"
    await page.fill("textarea", "Wo ist meine Bestellung?")
    await page.keyboard.press("Enter")
    # "Gesendet ✓" shows only until the answer: the bot's can come in the same moment.
    await page.wait_for_selector("li.bot .t:has-text('Bestellung')")
    await page.wait_for_selector("li.visitor .mark:has-text('Gelesen')")
    assert page.errors == []
