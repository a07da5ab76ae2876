"""The web chat channel over its socket, without a browser: sites, origins and CORS, identity,
the bot and agents both ways, the outbox, catch-up after a lost connection, limits, stats."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.channels import web
from carebot.channels.web_delivery import recheck_after
from carebot.db.models import Contact, Conversation, Message, OutboxMessage, WebVisitor
from carebot.domain.clock import ManualClock
from carebot.routing.linked import group_ids
from carebot.settings import Settings
from tests.helpers import bearer, create_app, make_agent, touchpoint_kinds
from tests.web_chat_support import ORIGIN, SOCKET, Widget, make_site

Client = TestClient[Any, Any]
REFUND = "How long does a refund take?"


@pytest.fixture
def chat_settings(settings: Settings) -> Settings:
    return replace(settings, run_timers=False, outbox_poll_seconds=0.05)


@pytest.fixture
async def client(
    aiohttp_client: Any, chat_settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    return await aiohttp_client(create_app(chat_settings, clock))  # type: ignore[no-any-return]


async def api(client: Client, token: str, method: str, path: str, body: Any = None,
              expect: int = 200) -> Any:
    resp = await client.request(method, path, json=body, headers=bearer(token))
    data = await resp.json()
    assert resp.status == expect, (resp.status, data)
    return data


async def outbox_rows(sessions: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sessions() as session:
        return list(await session.scalars(
            select(OutboxMessage).where(OutboxMessage.channel == "web")
            .order_by(OutboxMessage.id)))


async def visitor_row(sessions: async_sessionmaker[AsyncSession], contact_id: int
                      ) -> WebVisitor:
    """The contact's visitor row (written a few milliseconds after the socket saw them)."""
    found: list[WebVisitor] = []

    async def written() -> bool:
        async with sessions() as session:
            row = await session.get(WebVisitor, contact_id)
        found[:] = [row] if row is not None else []
        return bool(found)

    await eventually(written)
    return found[0]


async def eventually(check: Any, within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# --- sites, origins, CORS ----------------------------------------------------------------------


async def test_site_settings_answer_allowed_origins_only_with_cors(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions, title="Acme help", colour="#AA0033",
                           offline_text="We reply within a day.")
    path = f"/api/v1/channels/web/sites/{site.key}"
    resp = await client.get(path, headers={"Origin": ORIGIN})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in resp.headers["Vary"]
    body = await resp.json()
    assert body["title"] == "Acme help" and body["colour"] == "#aa0033"
    assert body["offline_text"] == "We reply within a day." and body["agents_online"] is False
    assert "secret" not in body and "origins" not in body
    for origin in ("https://evil.example", "http://shop.test:8080", "null"):
        resp = await client.get(path, headers={"Origin": origin})
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
    assert (await client.get(path)).status == 403  # no Origin: not a page of the site
    resp = await client.options(path, headers={"Origin": ORIGIN,
                                               "Access-Control-Request-Method": "GET"})
    assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    resp = await client.get("/api/v1/channels/web/sites/s_nope", headers={"Origin": ORIGIN})
    assert resp.status == 404
    # The rest of the API stays same-origin: no CORS headers anywhere else.
    resp = await client.get("/api/v1/me", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_socket_from_a_page_of_another_origin_is_refused(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions)
    resp = await client.get(f"{SOCKET}?site={site.key}", headers={
        "Origin": "https://evil.example", "Connection": "Upgrade", "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert resp.status == 403
    assert "evil.example" in (await resp.json())["error"]["message"]


async def test_disabling_a_site_closes_its_open_chats_at_the_next_frame(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions)
    _, admin = await make_agent(sessions, "Root", "admin")
    widget = await Widget.open(client, site)
    await widget.expect("history")
    await api(client, admin, "PATCH", f"/api/v1/sites/{site.id}", {"enabled": False})
    await widget.say("hello?")
    error = await widget.expect("error")
    assert error["code"] == "origin_refused"
    assert (await widget.next())["type"] == "closed"


# --- the bot, both ways ---------------------------------------------------------------------


async def test_visitor_gets_the_faq_answer_with_buttons_and_presses_one(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions)
    widget = await Widget.open(client, site)
    assert web.valid_token(widget.visitor) and widget.ready["verified"] is False
    assert (await widget.expect("history"))["messages"] == []
    cid = await widget.say(REFUND)
    ack = await widget.expect("ack")
    assert ack == {"type": "ack", "cid": cid, "duplicate": False}
    await widget.until(lambda w: any(m["from"] == "bot" for m in w.shown.values()))
    mine, answer = [m for _, m in sorted(widget.shown.items())]
    assert (mine["from"], mine["text"], mine["cid"]) == ("visitor", REFUND, cid)
    assert "refund" in answer["text"].lower()
    titles = [b["title"] for b in answer["buttons"]]
    assert titles[0] == "Yes"
    yes = answer["buttons"][0]
    await widget.say(yes["title"], payload=yes["payload"])
    await widget.until(lambda w: w.has("Glad I could help"))
    async with sessions() as session:
        conv = await session.scalar(select(Conversation))
        assert conv is not None and conv.channel == "web" and conv.status == "resolved"
        contact = await session.get(Contact, conv.contact_id)
        assert contact is not None
        assert contact.external_id == web.anonymous_key(site.id, widget.visitor)
        assert widget.visitor not in contact.external_id  # the token itself is not stored
    visitor = await visitor_row(sessions, contact.id)
    assert visitor.site_id == site.id and visitor.user_id is None
    kinds = await touchpoint_kinds(sessions, conv.id)
    assert kinds[:3] == ["message_in", "faq_answer", "message_in"]
    assert "resolved" in kinds
    async with sessions() as session:
        channels = set(await session.scalars(select(Message.channel)))
    assert channels == {"web"}


async def test_a_resent_message_is_stored_once(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions)
    widget = await Widget.open(client, site)
    await widget.expect("history")
    await widget.say("hello there", cid="retry-me-1")
    await widget.expect("ack")
    await widget.say("hello there", cid="retry-me-1")
    assert (await widget.expect("ack"))["duplicate"] is True
    # Another visitor using the same cid is a different message.
    other = await Widget.open(client, site)
    await other.expect("history")
    await other.say("hello there", cid="retry-me-1")
    assert (await other.expect("ack"))["duplicate"] is False
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(Message)
                                     .where(Message.direction == "in"))
    assert count == 2


async def test_html_is_stored_and_sent_as_text(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions)
    widget = await Widget.open(client, site)
    await widget.expect("history")
    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    await widget.say(hostile)
    await widget.until(lambda w: w.has(hostile, "visitor"))


async def test_bad_frames_get_a_clear_error_and_the_socket_stays(
    client: Client, sessions: async_sessionmaker[AsyncSession], chat_settings: Settings
) -> None:
    site = await make_site(sessions)
    widget = await Widget.open(client, site)
    await widget.expect("history")
    await widget.ws.send_str("not json")
    assert (await widget.expect("error"))["code"] == "bad_request"
    await widget.say("x" * (chat_settings.web_max_text_chars + 1), cid="too-long-1")
    error = await widget.expect("error")
    assert error["code"] == "too_long" and error["cid"] == "too-long-1"
    assert "2000" in error["message"]
    await widget.say("   ")
    assert (await widget.expect("error"))["code"] == "bad_request"
    await widget.say("still here")
    await widget.expect("ack")


# --- identity -------------------------------------------------------------------------------


async def test_a_signed_user_is_one_customer_on_every_device_and_a_forged_one_is_refused(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions)
    user = {"id": "u-42", "hash": web.sign_user(site.secret, "u-42"), "name": "Dana Buyer"}
    laptop = await Widget.open(client, site, user=user)
    assert laptop.ready["verified"] is True and "visitor" not in laptop.ready
    await laptop.expect("history")
    await laptop.say("I want to talk to a person")
    await laptop.until(lambda w: len(w.shown) >= 2)
    phone = await Widget.open(client, site, user={**user, "name": "Someone Else"})
    history = await phone.expect("history")
    assert history["messages"][0]["text"] == "I want to talk to a person"
    async with sessions() as session:
        contact = await session.scalar(select(Contact))
        assert contact is not None
        assert contact.external_id == f"site{site.id}:user:u-42"
        assert contact.display_name == "Dana Buyer"
    assert (await visitor_row(sessions, contact.id)).user_id == "u-42"
    for forged in (
        {"id": "u-42", "hash": web.sign_user("not the secret", "u-42")},
        {"id": "u-43", "hash": user["hash"]},
        {"id": "u-42"},
        {"id": "u-42", "hash": "zz"},
    ):
        widget = await Widget.open(client, site, user=forged)
        assert widget.ready["type"] == "error" and widget.ready["code"] == "identity_refused"
        assert (await widget.next())["type"] == "closed"
        assert widget.ws.close_code == 4003


async def test_signing_in_brings_the_browsers_anonymous_chat_to_the_account(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions)
    user = {"id": "u-7", "hash": web.sign_user(site.secret, "u-7")}

    async def people() -> set[frozenset[int]]:
        """The customers of the web contacts, grouped by the person they are."""
        async with sessions() as session:
            ids = list(await session.scalars(select(Contact.customer_id)))
            return {frozenset(await group_ids(session, i)) for i in ids}

    # Anonymous first; then the same browser signs in and writes: one person, two chats.
    guest = await Widget.open(client, site)
    await guest.expect("history")
    await guest.say("How long does a refund take?")
    await guest.until(lambda w: len(w.shown) >= 2)
    assert len(await people()) == 1
    signed = await Widget.open(client, site, user=user, visitor=guest.visitor)
    assert (await signed.expect("history"))["messages"] == []  # the account's own history
    await signed.say("and where is my order")
    await signed.until(lambda w: len(w.shown) >= 2)
    await eventually(lambda: _one_person(people))
    [person] = await people()
    assert len(person) == 2

    # A second browser that chatted anonymously, after the account already exists: joined
    # at hello. Forged signatures bring nothing along (they are refused outright).
    other = await Widget.open(client, site)
    await other.expect("history")
    await other.say("Do you ship abroad?")
    await other.until(lambda w: len(w.shown) >= 2)
    forged = await Widget.open(client, site, user={**user, "hash": "0" * 64},
                               visitor=other.visitor)
    assert forged.ready["code"] == "identity_refused"
    assert len(await people()) == 2
    again = await Widget.open(client, site, user=user, visitor=other.visitor)
    await again.expect("history")
    await eventually(lambda: _one_person(people))
    [person] = await people()
    assert len(person) == 3


async def _one_person(people: Any) -> bool:
    return len(await people()) == 1


# --- agents, the outbox, catch-up -----------------------------------------------------------


async def test_an_agent_reply_arrives_live_and_its_outbox_row_is_marked_sent(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions)
    _, alex = await make_agent(sessions, "Alex", status="online")
    widget = await Widget.open(client, site)
    await widget.expect("history")
    await widget.say("I want to talk to a person")
    await widget.until(lambda w: w.has("passed your conversation to Alex"))
    cid = next(m["conversation_id"] for m in widget.shown.values())
    await api(client, alex, "POST", f"/api/v1/conversations/{cid}/reply",
              {"text": "Hi, Alex here. <b>How</b> can I help?"}, expect=201)
    await widget.until(lambda w: w.has("Alex here", "agent"))
    agent_msg = next(m for m in widget.shown.values() if m["from"] == "agent")
    assert agent_msg["agent"] == "Alex"
    assert agent_msg["text"] == "Hi, Alex here. <b>How</b> can I help?"

    async def all_sent() -> bool:
        return all(r.status == "sent" for r in await outbox_rows(sessions))

    await eventually(all_sent)
    # Typing both ways.
    await api(client, alex, "POST", f"/api/v1/conversations/{cid}/typing")
    assert (await widget.expect("typing"))["name"] == "Alex"
    async with client.ws_connect("/api/v1/events", headers=bearer(alex)) as feed:
        await feed.receive_json(timeout=5)  # hello
        await widget.ws.send_json({"type": "typing"})
        event = await feed.receive_json(timeout=5)
        assert (event["kind"], event["conversation_id"]) == ("typing", cid)
        # Read marks: the visitor read the agent's reply; the agent saw the visitor's words.
        await widget.ws.send_json({"type": "read", "up_to": widget.last_id})
        event = await feed.receive_json(timeout=5)
        assert (event["kind"], event["data"]["up_to"]) == ("customer_read", widget.last_id)
    mine = max(i for i, m in widget.shown.items() if m["from"] == "visitor")
    await api(client, alex, "POST", f"/api/v1/conversations/{cid}/seen", {"up_to": mine})
    assert (await widget.expect("read"))["up_to"] == mine


async def test_messages_for_an_offline_visitor_wait_and_arrive_once_in_order_on_return(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions)
    _, alex = await make_agent(sessions, "Alex", status="online")
    widget = await Widget.open(client, site)
    await widget.expect("history")
    await widget.say("/human")
    await widget.until(lambda w: w.has("passed your conversation to Alex"))
    cid = next(m["conversation_id"] for m in widget.shown.values())
    seen, token = widget.last_id, widget.visitor
    await widget.close()
    for n in range(1, 4):
        await api(client, alex, "POST", f"/api/v1/conversations/{cid}/reply",
                  {"text": f"update {n}"}, expect=201)

    async def deferred() -> bool:
        rows = [r for r in await outbox_rows(sessions) if r.text.startswith("update")]
        return len(rows) == 3 and rows[0].last_error is not None and (
            rows[0].status == "pending")

    await eventually(deferred)
    rows = [r for r in await outbox_rows(sessions) if r.text.startswith("update")]
    # Waiting for the widget is no failure: the first row waits, the others queue behind it.
    assert [r.status for r in rows] == ["pending"] * 3
    assert rows[0].last_error == "waiting for the visitor's widget"
    assert [r.attempts for r in rows] == [0, 0, 0]  # waiting uses up no attempts
    back = await Widget.open(client, site, visitor=token, since=seen)
    assert "visitor" in back.ready
    await back.until(lambda w: w.has("update 3"))
    await asyncio.sleep(0.3)  # nothing more arrives
    while True:
        try:
            await back.next(0.1)
        except TimeoutError:
            break
    pushed = [m["text"] for f in back.frames for m in f.get("messages", ())]
    assert pushed == ["update 1", "update 2", "update 3"]

    async def all_sent() -> bool:
        return all(r.status == "sent" for r in await outbox_rows(sessions))

    await eventually(all_sent)


async def test_a_second_tab_gets_the_history_and_both_stay_live(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions)
    first = await Widget.open(client, site)
    await first.expect("history")
    await first.say(REFUND)
    await first.until(lambda w: len(w.shown) == 2)
    second = await Widget.open(client, site, visitor=first.visitor)
    history = await second.expect("history")
    assert [m["id"] for m in history["messages"]] == sorted(first.shown)
    await second.say("I want to talk to a person")
    await first.until(lambda w: w.has("I want to talk to a person", "visitor"))
    await second.until(lambda w: len(w.shown) >= 4)
    await first.until(lambda w: len(w.shown) >= 4)
    assert first.texts() == second.texts()


async def test_too_many_windows_and_too_many_messages_get_clear_errors(
    aiohttp_client: Any, chat_settings: Settings, clock: ManualClock, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await aiohttp_client(create_app(replace(
        chat_settings, web_sockets_per_visitor=2, web_messages_per_minute=3), clock))
    site = await make_site(sessions)
    first = await Widget.open(client, site)
    await first.expect("history")
    await Widget.open(client, site, visitor=first.visitor)
    third = await Widget.open(client, site, visitor=first.visitor)
    assert third.ready["code"] == "too_many_windows"
    assert "too many windows" in third.ready["message"]
    for n in range(3):
        await first.say(f"message {n}")
        await first.expect("ack")
    cid = await first.say("one too many")
    error = await first.expect("error")
    assert error["code"] == "rate_limited" and error["cid"] == cid
    assert error["retry_after"] >= 1 and "Please wait" in error["message"]


# --- the outbox worker's part ---------------------------------------------------------------


def test_waiting_rows_are_looked_at_again_less_and_less_often() -> None:
    assert recheck_after(0) == 60
    assert recheck_after(300) == 300  # waited five minutes: again in five
    assert recheck_after(10 * 86_400) == 86_400


# --- statistics and staff -------------------------------------------------------------------


async def test_web_conversations_count_in_the_stats_by_channel_and_the_csv(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    site = await make_site(sessions)
    _, boss = await make_agent(sessions, "Boss", "manager")
    widget = await Widget.open(client, site)
    await widget.expect("history")
    await widget.say(REFUND)
    await widget.until(lambda w: len(w.shown) == 2)
    day = clock().date().isoformat()
    query = f"from={day}&to={day}"
    web_only = await api(client, boss, "GET", f"/api/v1/stats/summary?{query}&channel=web")
    http_only = await api(client, boss, "GET", f"/api/v1/stats/summary?{query}&channel=http")
    assert web_only["volume"]["opened"] == 1 and http_only["volume"]["opened"] == 0
    resp = await client.get(f"/api/v1/stats/conversations.csv?{query}&channel=web",
                            headers=bearer(boss))
    lines = (await resp.text()).strip().splitlines()
    assert len(lines) == 2 and ",web," in lines[1]


async def test_admins_manage_sites_and_others_may_not(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, admin = await make_agent(sessions, "Root", "admin")
    _, agent = await make_agent(sessions, "Alex")
    body = {"name": "Acme", "origins": ["HTTPS://Shop.Example:443/", "http://localhost:3000"]}
    await api(client, agent, "POST", "/api/v1/sites", body, expect=403)
    site = await api(client, admin, "POST", "/api/v1/sites", body, expect=201)
    assert site["origins"] == ["https://shop.example", "http://localhost:3000"]
    assert len(site["secret"]) == 64 and site["key"] in site["snippet"]
    assert site["snippet"].startswith('<script src="http://127.0.0.1:')
    await api(client, admin, "POST", "/api/v1/sites", body, expect=409)
    await api(client, admin, "POST", "/api/v1/sites", {"name": "B", "origins": ["ftp://x"]},
              expect=400)
    changed = await api(client, admin, "PATCH", f"/api/v1/sites/{site['id']}",
                        {"title": "Help", "greeting": "Hello!", "colour": "#112233",
                         "offline_text": "Back at 9."})
    assert (changed["title"], changed["colour"]) == ("Help", "#112233")
    await api(client, admin, "PATCH", f"/api/v1/sites/{site['id']}", {"secret": "x"},
              expect=400)
    await api(client, admin, "PATCH", f"/api/v1/sites/{site['id']}", {"colour": "red"},
              expect=400)
    rotated = await api(client, admin, "POST", f"/api/v1/sites/{site['id']}/secret")
    assert rotated["secret"] != site["secret"]
    await api(client, agent, "GET", "/api/v1/sites", expect=403)
    listed = await api(client, admin, "GET", "/api/v1/sites")
    assert [s["name"] for s in listed["items"]] == ["Acme"]
    await api(client, admin, "PATCH", "/api/v1/sites/999", {"title": "x"}, expect=404)


def test_origins_are_normalised_and_checked_exactly() -> None:
    assert web.normalize_origin("HTTPS://Shop.Example:443") == "https://shop.example"
    assert web.normalize_origin("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    for bad in ("shop.example", "https://shop.example/path", "javascript:alert(1)",
                "https://user@shop.example", "https://shop.example:99999", ""):
        with pytest.raises(ValueError):
            web.normalize_origin(bad)
    allowed = ["https://shop.example"]
    assert web.origin_allowed("https://shop.example", allowed)
    assert not web.origin_allowed("https://shop.example.evil.com", allowed)
    assert not web.origin_allowed("http://shop.example", allowed)
    assert not web.origin_allowed(None, allowed)


def test_identity_hashes_are_checked_in_constant_time_and_exactly() -> None:
    secret = "s" * 64
    good = web.sign_user(secret, "42")
    assert web.identity_verified(secret, "42", good)
    assert web.identity_verified(secret, "42", good.upper())
    assert not web.identity_verified(secret, "43", good)
    assert not web.identity_verified(secret, "42", good[:-1])
    assert not web.identity_verified(secret, "42", "g" * 64)


async def test_behind_a_trusted_proxy_the_limits_count_the_client_address(
    aiohttp_client: Any, chat_settings: Settings, clock: ManualClock, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    from carebot.web.web_chat import WEB_VISITORS

    client = await aiohttp_client(create_app(replace(
        chat_settings, trusted_proxies="127.0.0.1", web_sockets_per_ip=1), clock))
    site = await make_site(sessions)
    first = await client.ws_connect(f"{SOCKET}?site={site.key}", headers={
        "Origin": ORIGIN, "X-Forwarded-For": "203.0.113.7"})
    resp = await client.get(f"{SOCKET}?site={site.key}", headers={
        "Origin": ORIGIN, "X-Forwarded-For": "198.51.100.1, 203.0.113.7",
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert resp.status == 429  # the same client, whatever it claims before the proxy
    second = await client.ws_connect(f"{SOCKET}?site={site.key}", headers={
        "Origin": ORIGIN, "X-Forwarded-For": "203.0.113.8"})
    assert dict(client.server.app[WEB_VISITORS].per_ip) == {"203.0.113.7": 1, "203.0.113.8": 1}
    await first.close()
    await second.close()


async def test_the_widget_hears_when_an_agent_comes_online_and_pages_back_through_history(
    aiohttp_client: Any, chat_settings: Settings, clock: ManualClock, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await aiohttp_client(create_app(replace(chat_settings, web_history_messages=2),
                                             clock))
    site = await make_site(sessions)
    _, alex = await make_agent(sessions, "Alex")
    widget = await Widget.open(client, site)
    assert widget.ready["agents_online"] is False
    await widget.expect("history")
    for text in ("hello", "thanks!"):
        await widget.say(text)
        await widget.expect("ack")
    await widget.until(lambda w: len(w.shown) == 4)
    await api(client, alex, "PUT", "/api/v1/me/availability", {"status": "online"})
    assert (await widget.expect("presence"))["agents_online"] is True
    # A new tab gets the latest two messages, then the two before them on request.
    tab = await Widget.open(client, site, visitor=widget.visitor)
    history = await tab.expect("history")
    ids = sorted(widget.shown)
    assert [m["id"] for m in history["messages"]] == ids[2:] and history["more"] is True
    await tab.ws.send_json({"type": "older", "before": ids[2]})
    older = await tab.expect("older")
    assert [m["id"] for m in older["messages"]] == ids[:2] and older["more"] is False


async def test_a_waiting_message_below_the_widgets_cursor_is_still_delivered(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # A message committed out of id order (a delayed survey beside a newer message) has an
    # id below what the widget has already shown; its waiting outbox row brings it anyway.
    site = await make_site(sessions)
    _, alex = await make_agent(sessions, "Alex", status="online")
    widget = await Widget.open(client, site)
    await widget.expect("history")
    await widget.say("/human")
    await widget.until(lambda w: w.has("passed your conversation to Alex"))
    cid = next(m["conversation_id"] for m in widget.shown.values())
    token, seen = widget.visitor, widget.last_id
    await widget.close()
    reply = await api(client, alex, "POST", f"/api/v1/conversations/{cid}/reply",
                      {"text": "late but here"}, expect=201)
    back = await Widget.open(client, site, visitor=token, since=reply["id"] + 5)
    await back.until(lambda w: w.has("late but here"))
    assert seen < reply["id"] and list(back.shown) == [reply["id"]]

    async def sent() -> bool:
        return all(r.status == "sent" for r in await outbox_rows(sessions))

    await eventually(sent)


async def test_the_socket_declines_compression_which_would_cost_100_kb_per_chat(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions)
    ws = await client.ws_connect(f"{SOCKET}?site={site.key}", headers={"Origin": ORIGIN},
                                 compress=15)
    assert ws.compress == 0
    await ws.close()


async def test_quick_reads_on_sqlite_fall_back_to_the_engine_when_sqlite_says_busy(
    sqlite_template: Any, tmp_path: Any
) -> None:
    import shutil

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from carebot.db.engine import QuickReads, make_engine

    shutil.copy(sqlite_template, tmp_path / "q.db")
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")
    reads = QuickReads(engine)
    try:
        assert await reads.run(lambda c: c.execute(text("SELECT 41 + 1")).scalar()) == 42
        calls: list[str] = []

        def busy_then_fine(conn: Any) -> int:
            calls.append(conn.engine.dialect.driver)
            if len(calls) == 1:
                raise OperationalError("SELECT", {}, Exception("database is locked"))
            return 7

        assert await reads.run(busy_then_fine) == 7
        assert calls == ["pysqlite", "aiosqlite"]  # the loop never waited on the lock
        with pytest.raises(OperationalError):
            await reads.run(lambda c: c.execute(text("SELECT * FROM no_such_table")).all())
    finally:
        reads.close()
        await engine.dispose()
