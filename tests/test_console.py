"""Handoff and the agent console over HTTP: queue, assignment, replies, transfers, access."""

from __future__ import annotations

import ast
import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import carebot
from carebot.cli import main
from carebot.db.models import (
    Agent,
    CannedReply,
    Message,
    OutboxMessage,
    Survey,
    Touchpoint,
)
from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from carebot.web.openapi import SPEC
from tests.conftest import START
from tests.helpers import Client, Customer, agent, bearer, conforms, conv, create_app


@pytest.fixture
def console_settings(settings: Settings) -> Settings:
    return replace(settings, run_timers=False)


@pytest.fixture
async def client(
    aiohttp_client: Any, console_settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    return await aiohttp_client(create_app(console_settings, clock))  # type: ignore[no-any-return]


async def test_full_loop_handoff_assign_reply_resolve(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    alex = await agent(client, sessions, "Alex")
    await alex.online()
    data = await Customer(client, "u1", "Uma").say("I want to talk to a human")
    cid = data["conversation_id"]
    assert data["status"] == "assigned"
    assert "Alex" in data["replies"][0]["text"]

    clock.advance(seconds=40)
    sent = await alex.act(cid, "reply", {"text": "Hi Uma, Alex here. How can I help?"}, 201)
    assert sent["sender"] == "agent"
    async with sessions() as session:
        row = await session.scalar(
            select(OutboxMessage).where(OutboxMessage.message_id == sent["id"])
        )
        assert row is not None
        assert (row.recipient, row.status, row.text) == (
            "u1", "pending", "Hi Uma, Alex here. How can I help?")

    detail = await alex.call("GET", f"/api/v1/conversations/{cid}")
    assert [m["sender"] for m in detail["messages"]] == ["customer", "bot", "agent"]
    assert detail["customer"]["name"] == "Uma"

    clock.advance(seconds=20)
    done = await alex.act(cid, "resolve", {"code": "answered"})
    assert (done["status"], done["resolved_by"], done["resolution_code"]) == (
        "resolved", "agent", "answered")
    row = await conv(sessions, cid)
    assert row.first_human_response_ms == 40_000  # handoff -> first agent reply
    async with sessions() as session:
        kinds = list(await session.scalars(
            select(Touchpoint.kind).where(Touchpoint.conversation_id == cid)
            .order_by(Touchpoint.id)))
        acting = list(await session.scalars(
            select(Touchpoint.agent_id).where(
                Touchpoint.conversation_id == cid,
                Touchpoint.kind.in_(["agent_reply", "resolved"]))))
    assert kinds == [
        "message_in", "handoff", "assigned", "agent_reply", "resolved", "survey_sent",
    ]
    assert acting == [alex.id, alex.id]


async def test_resolved_from_the_queue_without_a_claim_is_credited_to_the_resolver(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    boss = await agent(client, sessions, "Boss", "manager")
    cid = (await Customer(client, "q1").say("/human"))["conversation_id"]  # nobody online
    done = await boss.act(cid, "resolve", {"code": "answered"})
    assert (done["status"], done["assigned_agent_id"]) == ("resolved", None)
    assert (await conv(sessions, cid)).resolved_agent_id == boss.id
    rows = (await boss.call("GET", "/api/v1/stats/agents?from=2026-03-01&to=2026-03-03"))
    assert [(r["agent_id"], r["resolved"]) for r in rows["items"]] == [(boss.id, 1)]


async def test_resolution_codes_are_a_managed_list_and_spam_never_reopens(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ann = await agent(client, sessions, "Ann")
    await ann.online()
    cust = Customer(client, "spammer")
    cid = (await cust.say("/human"))["conversation_id"]
    bad = await ann.act(cid, "resolve", {"code": "whatever I like"}, expect=400)
    assert bad["error"]["message"].startswith("unknown resolution code 'whatever I like'")
    await ann.act(cid, "resolve", {"code": "spam"})
    again = await cust.say("BUY CHEAP WATCHES")
    # A new conversation with the bot: the spam one stays closed and Ann is not bothered.
    assert again["conversation_id"] != cid
    closed = await conv(sessions, cid)
    assert (closed.status, closed.reopen_count) == ("resolved", 0)
    async with sessions() as session:
        surveys = await session.scalar(select(func.count()).select_from(Survey))
    assert surveys == 0  # spam is never surveyed


async def test_admins_manage_resolution_codes_and_agents_resolve_with_them(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    root = await agent(client, sessions, "Root", "admin")
    ann = await agent(client, sessions, "Ann")
    listed = await ann.call("GET", "/api/v1/resolution-codes")
    assert {"answered", "spam"} <= {c["code"] for c in listed["items"]}
    await root.call("POST", "/api/v1/resolution-codes", {"code": "Bad Code", "label": "x"}, 400)
    await root.call("POST", "/api/v1/resolution-codes", {"code": "spam", "label": "x"}, 409)
    await root.call("POST", "/api/v1/resolution-codes",
                    {"code": "fraud", "label": "Fraud", "survey": False, "may_reopen": False},
                    201)
    await root.call("PATCH", "/api/v1/resolution-codes/answered", {"enabled": False})
    await root.call("PATCH", "/api/v1/resolution-codes/answered", {"color": "red"}, 400)
    await root.call("PATCH", "/api/v1/resolution-codes/nope", {"enabled": True}, 404)
    await ann.online()
    cid = (await Customer(client, "codes1").say("/human"))["conversation_id"]
    await ann.act(cid, "resolve", {"code": "answered"}, expect=400)  # disabled now
    done = await ann.act(cid, "resolve", {"code": "fraud"})
    assert done["resolution_code"] == "fraud"


async def test_codes_cli(
    client: Client, database_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
    assert await asyncio.to_thread(
        main, ["codes", "add", "warranty", "--label", "Warranty claim", "--no-survey"]) == 0
    assert await asyncio.to_thread(main, ["codes", "set", "warranty", "--reopen", "no"]) == 0
    assert await asyncio.to_thread(main, ["codes", "add", "warranty", "--label", "x"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["codes", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("warranty"))
    assert line.split()[:4] == ["warranty", "no", "no", "yes"]


async def test_capacity_limit_and_refill_when_agent_frees_up(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    solo = await agent(client, sessions, "Solo", capacity=1)
    await solo.online()
    first = await Customer(client, "a").say("/human")
    second = await Customer(client, "b").say("/human")
    assert first["status"] == "assigned"
    assert second["status"] == "queued"
    assert "number 1 in the queue" in second["replies"][0]["text"]
    # At capacity, claiming by hand is refused too.
    await solo.act(second["conversation_id"], "claim", expect=409)

    await solo.act(first["conversation_id"], "resolve", {"code": "answered"})
    refilled = await conv(sessions, second["conversation_id"])
    assert (refilled.status, refilled.assigned_agent_id) == ("assigned", solo.id)


async def test_queue_is_served_oldest_first_when_an_agent_comes_online(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    ids = []
    for n, user in enumerate(["c1", "c2", "c3"], start=1):
        data = await Customer(client, user).say("talk to a person please")
        assert f"number {n} in the queue" in data["replies"][0]["text"]
        ids.append(data["conversation_id"])
        clock.advance(seconds=5)
    pat = await agent(client, sessions, "Pat", capacity=2)
    await pat.online()
    statuses = [(await conv(sessions, i)).status for i in ids]
    assert statuses == ["assigned", "assigned", "queued"]


async def test_least_loaded_then_longest_idle_agent_gets_the_conversation(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    from datetime import timedelta

    start = clock()
    busy = await agent(client, sessions, "Busy", status="online",
                       idle_since=start - timedelta(hours=2))
    fresh = await agent(client, sessions, "Fresh", status="online",
                        idle_since=start - timedelta(minutes=1))
    idle = await agent(client, sessions, "Idle", status="online",
                       idle_since=start - timedelta(hours=1))
    one = await Customer(client, "x1").say("/human")
    assert (await conv(sessions, one["conversation_id"])).assigned_agent_id == busy.id
    two = await Customer(client, "x2").say("/human")
    assert (await conv(sessions, two["conversation_id"])).assigned_agent_id == idle.id
    three = await Customer(client, "x3").say("/human")
    assert (await conv(sessions, three["conversation_id"])).assigned_agent_id == fresh.id


async def test_transfer_to_agent_and_to_queue_counts_and_raises_effort(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    amy = await agent(client, sessions, "Amy")
    bob = await agent(client, sessions, "Bob")
    await amy.online()
    cid = (await Customer(client, "t1").say("/human"))["conversation_id"]
    effort_before = (await conv(sessions, cid)).effort_score
    # Bob cannot touch Amy's conversation.
    await bob.act(cid, "transfer", {"agent_id": bob.id}, expect=403)
    # Bob is offline: a transfer would strand the customer.
    refused = await amy.act(cid, "transfer", {"agent_id": bob.id}, expect=409)
    assert refused["error"]["message"] == "Bob is offline; pick an online agent"
    await bob.online()
    moved = await amy.act(cid, "transfer", {"agent_id": bob.id, "note": "wants a refund"})
    assert (moved["assigned_agent_id"], moved["transfers"]) == (bob.id, 1)
    assert moved["effort_score"] == effort_before + 3
    detail = await bob.call("GET", f"/api/v1/conversations/{cid}")
    notes = [m["text"] for m in detail["messages"] if m["direction"] == "note"]
    assert notes == ["wants a refund"]  # the next agent reads why; the customer never does
    async with sessions() as session:
        sent = list(await session.scalars(select(OutboxMessage.text)))
    assert "wants a refund" not in sent and "Bob has joined the conversation." in sent
    # Back to the queue: never straight back to Bob, who let it go; Amy has room.
    queued = await bob.act(cid, "transfer", {"agent_id": None})
    assert queued["transfers"] == 2
    assert queued["assigned_agent_id"] == amy.id
    await amy.act(cid, "transfer", {"agent_id": 999_999}, expect=404)
    await amy.act(cid, "transfer", {"agent_id": "bob"}, expect=400)


async def test_transfer_to_the_queue_never_returns_to_the_releasing_agent(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    amy = await agent(client, sessions, "Amy")
    await amy.online()
    cid = (await Customer(client, "t2").say("/human"))["conversation_id"]
    released = await amy.act(cid, "transfer", {"agent_id": None})
    # Amy is the only agent online and has room, yet the conversation waits for someone else.
    assert (released["status"], released["assigned_agent_id"]) == ("queued", None)
    # Freeing capacity (another conversation resolved) does not hand it back to her either.
    other = (await Customer(client, "t3").say("/human"))["conversation_id"]
    await amy.act(other, "resolve", {"code": "answered"})
    assert (await conv(sessions, cid)).status == "queued"
    ben = await agent(client, sessions, "Ben")
    await ben.online()
    assert (await conv(sessions, cid)).assigned_agent_id == ben.id


async def test_transfer_to_a_disabled_agent_is_refused(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    amy = await agent(client, sessions, "Amy")
    gone = await agent(client, sessions, "Gone", status="online", capacity=0)
    await amy.online()
    cid = (await Customer(client, "t4").say("/human"))["conversation_id"]
    async with sessions.begin() as session:
        row = await session.get(Agent, gone.id)
        assert row is not None
        row.disabled = True
    refused = await amy.act(cid, "transfer", {"agent_id": gone.id}, expect=409)
    assert refused["error"]["message"] == "Gone is disabled"


async def test_note_is_never_sent_and_handback_returns_to_the_bot(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    kim = await agent(client, sessions, "Kim")
    await kim.online()
    cust = Customer(client, "n1")
    cid = (await cust.say("/human"))["conversation_id"]
    note = await kim.act(cid, "notes", {"text": "VIP customer, be nice"}, 201)
    assert note["direction"] == "note"
    async with sessions() as session:
        outbox_texts = list(await session.scalars(select(OutboxMessage.text)))
    assert "VIP customer, be nice" not in outbox_texts

    back = await kim.act(cid, "handback")
    assert back["status"] == "bot"
    answered = await cust.say("where is my order")
    assert answered["status"] == "bot"
    assert "Did this help?" in answered["replies"][0]["text"]


async def test_agent_sees_own_and_queued_only_managers_see_all(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ann = await agent(client, sessions, "Ann", capacity=1)
    ben = await agent(client, sessions, "Ben")
    boss = await agent(client, sessions, "Boss", "manager")
    await ann.online()
    mine = (await Customer(client, "v1").say("/human"))["conversation_id"]
    waiting = (await Customer(client, "v2").say("/human"))["conversation_id"]
    bot_only = (await Customer(client, "v3").say("where is my order"))["conversation_id"]

    ann_ids = {c["id"] for c in (await ann.call("GET", "/api/v1/conversations"))["items"]}
    ben_ids = {c["id"] for c in (await ben.call("GET", "/api/v1/conversations"))["items"]}
    boss_ids = {c["id"] for c in (await boss.call("GET", "/api/v1/conversations"))["items"]}
    assert ann_ids == {mine, waiting}
    assert ben_ids == {waiting}
    assert boss_ids == {mine, waiting, bot_only}
    await ben.call("GET", f"/api/v1/conversations/{mine}", expect=403)

    filtered = await boss.call("GET", "/api/v1/conversations?status=queued&assignee=&limit=1")
    assert [c["id"] for c in filtered["items"]] == [waiting]
    page = await boss.call("GET", "/api/v1/conversations?limit=2&offset=2")
    assert page["total"] == 3 and len(page["items"]) == 1


ENDPOINTS: list[tuple[str, str, Any, dict[str, int]]] = [
    # method, path ({cid}: a queued conversation, {customer}: its customer, {me}: the caller,
    # {canned}: a canned reply), body (its strings formatted with {role}), status per role
    ("GET", "/api/v1/me", None, {"agent": 200, "manager": 200, "admin": 200}),
    ("PUT", "/api/v1/me/availability", {"status": "away"},
     {"agent": 200, "manager": 200, "admin": 200}),
    ("GET", "/api/v1/conversations", None, {"agent": 200, "manager": 200, "admin": 200}),
    ("GET", "/api/v1/conversations/{cid}", None, {"agent": 200, "manager": 200, "admin": 200}),
    ("POST", "/api/v1/conversations/{cid}/notes", {"text": "n"},
     {"agent": 201, "manager": 201, "admin": 201}),
    ("POST", "/api/v1/conversations/{cid}/reply", {"text": "r"},
     {"agent": 409, "manager": 409, "admin": 409}),  # queued: must be claimed first
    ("POST", "/api/v1/conversations/{cid}/claim", None,
     {"agent": 200, "manager": 200, "admin": 200}),
    ("POST", "/api/v1/conversations/{cid}/transfer", {"agent_id": None},
     {"agent": 200, "manager": 200, "admin": 200}),
    ("POST", "/api/v1/conversations/{cid}/handback", None,
     {"agent": 200, "manager": 200, "admin": 200}),
    ("POST", "/api/v1/conversations/{cid}/resolve", {"code": "answered"},
     {"agent": 200, "manager": 200, "admin": 200}),
    ("GET", "/api/v1/conversations/{cid}/assist", None,
     {"agent": 200, "manager": 200, "admin": 200}),
    ("GET", "/api/v1/customers/{customer}", None, {"agent": 200, "manager": 200, "admin": 200}),
    ("GET", "/api/v1/agents", None, {"agent": 200, "manager": 200, "admin": 200}),
    ("POST", "/api/v1/agents", {"name": "new-{role}", "role": "agent"},
     {"agent": 403, "manager": 403, "admin": 201}),
    ("PATCH", "/api/v1/agents/{me}", {"capacity": 4},
     {"agent": 403, "manager": 403, "admin": 200}),
    ("POST", "/api/v1/agents/{me}/token", None, {"agent": 403, "manager": 403, "admin": 200}),
    ("POST", "/api/v1/agents/{me}/invite", None, {"agent": 403, "manager": 403, "admin": 200}),
    ("GET", "/api/v1/canned-replies", None, {"agent": 200, "manager": 200, "admin": 200}),
    ("POST", "/api/v1/canned-replies", {"shortcut": "hi-{role}", "text": "Hi!"},
     {"agent": 403, "manager": 201, "admin": 201}),
    ("PATCH", "/api/v1/canned-replies/{canned}", {"text": "Hello!"},
     {"agent": 403, "manager": 200, "admin": 200}),
    ("DELETE", "/api/v1/canned-replies/{canned}", None,
     {"agent": 403, "manager": 204, "admin": 204}),
    ("GET", "/api/v1/openapi.json", None, {"agent": 200, "manager": 200, "admin": 200}),
    ("GET", "/api/v1/resolution-codes", None, {"agent": 200, "manager": 200, "admin": 200}),
    ("POST", "/api/v1/resolution-codes", {"code": "new-code", "label": "New"},
     {"agent": 403, "manager": 403, "admin": 201}),
    ("PATCH", "/api/v1/resolution-codes/duplicate", {"label": "Same as another"},
     {"agent": 403, "manager": 403, "admin": 200}),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
async def test_authz_matrix(
    client: Client, sessions: async_sessionmaker[AsyncSession],
    method: str, path: str, body: Any, expected: dict[str, int],
) -> None:
    for n, role in enumerate(["agent", "manager", "admin"]):
        console = await agent(client, sessions, f"{role}-user", role)
        cid = (await Customer(client, f"authz-{n}").say("/human"))["conversation_id"]
        async with sessions.begin() as session:
            canned = CannedReply(shortcut=f"c{n}", title="t", text="x", created_at=START,
                                 updated_at=START)
            session.add(canned)
            await session.flush()
        url = path.format(cid=cid, customer=(await conv(sessions, cid)).customer_id,
                          me=console.id, canned=canned.id)
        payload = body
        if isinstance(body, dict):
            payload = {k: v.format(role=role) if isinstance(v, str) else v
                       for k, v in body.items()}
        await console.call(method, url, payload, expect=expected[role])
        # No token, a malformed header and a wrong token are all 401, as JSON.
        for headers in ({}, {"Authorization": "Token abc"}, bearer("cbt_not-a-real-token")):
            resp = await client.request(method, url, json=payload, headers=headers)
            assert resp.status == 401
            assert "error" in await resp.json()


async def test_disabled_agent_token_stops_working(
    client: Client, sessions: async_sessionmaker[AsyncSession], database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gone = await agent(client, sessions, "Gone")
    await gone.call("GET", "/api/v1/me")
    monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
    assert await asyncio.to_thread(main, ["agents", "disable", "Gone"]) == 0
    await gone.call("GET", "/api/v1/me", expect=401)


async def test_disabling_an_agent_closes_their_live_feed_and_requeues_their_conversations(
    client: Client, sessions: async_sessionmaker[AsyncSession], database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gone = await agent(client, sessions, "Gone")
    other = await agent(client, sessions, "Other", capacity=0)  # online, but full
    await gone.online()
    await other.online()
    cust = Customer(client, "dis1")
    cid = (await cust.say("/human"))["conversation_id"]
    assert (await conv(sessions, cid)).assigned_agent_id == gone.id
    monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
    async with client.ws_connect("/api/v1/events", headers=gone.headers) as ws:
        assert (await ws.receive_json(timeout=5))["kind"] == "hello"
        assert await asyncio.to_thread(main, ["agents", "disable", "Gone"]) == 0
        # PostgreSQL: closed at once through the fan-out, so what the customer writes now
        # never reaches the disabled agent. SQLite (the CLI is another process, with no
        # channel to the service): closed at the next re-check, within two seconds.
        if database_url.startswith("postgresql"):
            await asyncio.sleep(0.5)
            await cust.say("my card number is private")
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            assert "my card number" not in msg.data
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE,
                                        aiohttp.WSCloseCode.POLICY_VIOLATION)
    back = await conv(sessions, cid)
    assert (back.status, back.assigned_agent_id, back.released_by_agent_id) == (
        "queued", None, gone.id)
    assert "requeued" in await kinds_of(sessions, cid)


async def kinds_of(sessions: async_sessionmaker[AsyncSession], cid: int) -> list[str]:
    async with sessions() as session:
        return list(await session.scalars(
            select(Touchpoint.kind).where(Touchpoint.conversation_id == cid)
            .order_by(Touchpoint.id)))


async def test_bad_input(client: Client, sessions: async_sessionmaker[AsyncSession]) -> None:
    lee = await agent(client, sessions, "Lee")
    await lee.online()
    cid = (await Customer(client, "bad1").say("/human"))["conversation_id"]
    await lee.call("GET", "/api/v1/conversations/424242", expect=404)
    await lee.call("GET", "/api/v1/conversations/abc", expect=404)
    await lee.act(424242, "reply", {"text": "hi"}, expect=404)
    await lee.act(cid, "reply", {}, expect=400)
    await lee.act(cid, "reply", {"text": ""}, expect=400)
    await lee.act(cid, "reply", {"text": "x" * 5000}, expect=413)
    await lee.act(cid, "resolve", {"code": 7}, expect=400)
    await lee.call("PUT", "/api/v1/me/availability", {"status": "sleeping"}, expect=400)
    await lee.call("GET", "/api/v1/conversations?status=weird", expect=400)
    await lee.call("GET", "/api/v1/conversations?limit=0", expect=400)
    resp = await client.post(f"/api/v1/conversations/{cid}/reply", data=b"{oops",
                             headers=lee.headers)
    assert resp.status == 400
    resp = await client.post(f"/api/v1/conversations/{cid}/notes", data=b"x" * 100_000,
                             headers=lee.headers)
    assert resp.status == 413
    async with sessions() as session:
        agent_msgs = list(await session.scalars(select(Message).where(Message.sender == "agent")))
    assert agent_msgs == []


async def test_websocket_pushes_assignment_and_customer_messages(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    zoe = await agent(client, sessions, "Zoe")
    boss = await agent(client, sessions, "Chief", "manager")
    other = await agent(client, sessions, "Other")
    await zoe.online()
    async with client.ws_connect("/api/v1/events", headers=zoe.headers) as ws, \
            client.ws_connect("/api/v1/events", headers=boss.headers) as boss_ws, \
            client.ws_connect("/api/v1/events", headers=other.headers) as other_ws:
        for socket in (ws, boss_ws, other_ws):
            assert (await socket.receive_json(timeout=5))["kind"] == "hello"
        cust = Customer(client, "ws1")
        cid = (await cust.say("/human"))["conversation_id"]
        event = await ws.receive_json(timeout=5)
        assert (event["kind"], event["conversation_id"]) == ("assigned", cid)
        # The message that asked for a person is shown to the agent who got it.
        event = await ws.receive_json(timeout=5)
        assert (event["kind"], event["data"]["text"]) == ("message", "/human")
        await cust.say("my parcel is lost")
        event = await ws.receive_json(timeout=5)
        assert (event["kind"], event["data"]["text"]) == ("message", "my parcel is lost")
        assert (await boss_ws.receive_json(timeout=5))["kind"] == "assigned"
        # An agent not concerned gets nothing of Zoe's conversation.
        with pytest.raises(TimeoutError):
            await other_ws.receive_json(timeout=0.3)
    resp = await client.get("/api/v1/events")
    assert resp.status == 401


class Described:
    """A console's event feed whose every event is checked against the OpenAPI `Event`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def receive_json(self, **options: Any) -> Any:
        event = await self.ws.receive_json(**options)
        conforms("Event", event)
        return event


async def test_live_events_say_who_the_customer_is_and_what_was_said_last(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    zoe = await agent(client, sessions, "Zoe")
    async with client.ws_connect("/api/v1/events", headers=zoe.headers) as raw:
        ws = Described(raw)
        assert (await ws.receive_json(timeout=5))["kind"] == "hello"
        cust = Customer(client, "glance1", "Wanda Wu")
        cid = (await cust.say("/human"))["conversation_id"]  # nobody online: the queue
        queued = await ws.receive_json(timeout=5)
        assert (queued["kind"], queued["customer_name"]) == ("queued", "Wanda Wu")
        # What the customer said, not the bot's queue notice after it.
        assert (queued["preview"]["sender"], queued["preview"]["text"]) == ("customer", "/human")
        assert (await ws.receive_json(timeout=5))["data"]["text"] == "/human"
        long = "my parcel " + "is very late " * 20
        await cust.say(long)
        message = await ws.receive_json(timeout=5)
        assert message["kind"] == "message" and message["customer_name"] == "Wanda Wu"
        assert message["preview"]["sender"] == "customer"
        assert message["preview"]["text"] == long[:139].rstrip() + "…"
        await zoe.online()  # pulls the waiting conversation: written by a console action
        assigned = await ws.receive_json(timeout=5)
        while assigned["kind"] != "assigned":
            assigned = await ws.receive_json(timeout=5)
        assert assigned["customer_name"] == "Wanda Wu"
        # "Zoe has joined" is the system's: the customer's words stay the preview.
        assert assigned["preview"]["text"] == message["preview"]["text"]
        await zoe.act(cid, "notes", {"text": "private"}, 201)
        note = await ws.receive_json(timeout=5)
        assert note["kind"] == "note"
        assert note["preview"]["text"] == message["preview"]["text"]  # never a note
        await zoe.act(cid, "reply", {"text": "Hi Wanda! " + "x" * 200}, 201)
        reply = await ws.receive_json(timeout=5)
        assert reply["kind"] == "agent_reply" and reply["preview"]["sender"] == "agent"
        assert len(reply["preview"]["text"]) == 140 and reply["preview"]["text"].endswith("…")


# The routes the OpenAPI description must cover: everything under these prefixes ...
DOCUMENTED_PREFIXES = ("/api/v1/",)
# ... except these (path, method) pairs, each with the reason it is not in the description.
NOT_DOCUMENTED: dict[tuple[str, str], str] = {}


async def test_openapi_describes_exactly_the_api(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    viewer = await agent(client, sessions, "Viewer")
    spec = await viewer.call("GET", "/api/v1/openapi.json")
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    served = set()
    for route in client.server.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if (path and path.startswith(DOCUMENTED_PREFIXES) and route.method != "HEAD"
                and (path, route.method) not in NOT_DOCUMENTED):
            served.add((path, route.method))
    assert served == documented
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["responses"], f"{path} has no responses"
            for status, response in op["responses"].items():
                if status not in ("101", "204") and status.startswith(("1", "2")):
                    content = response["content"].values()
                    assert content and all("schema" in c for c in content), (path, status)
            if method in ("post", "put", "patch") and "requestBody" in op:
                assert op["requestBody"]["content"]["application/json"]["schema"]


def _event_kinds_in_the_code() -> set[str]:
    """Every event kind the code can produce: `Event("kind", …)`, `decision.emit("kind", …)`
    and the WebSocket's own `{"kind": "hello", …}`."""
    kinds = set()
    for source in Path(carebot.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            first: ast.expr | None = None
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                if (isinstance(func, ast.Name) and func.id == "Event") or (
                        isinstance(func, ast.Attribute) and func.attr == "emit"):
                    first = node.args[0]
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "kind":
                        first = value
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                kinds.add(first.value)
    return kinds


def test_every_event_kind_the_code_produces_is_described_and_no_other() -> None:
    # "visitor.*" events travel the same fan-out to web chat widgets, never to consoles
    # (carebot.web.hub); docs/web-chat.md describes their frames.
    produced = {k for k in _event_kinds_in_the_code() if not k.startswith("visitor.")}
    assert {"hello", "queued", "assigned", "message", "delivery_failed"} <= produced
    described = set(SPEC["components"]["schemas"]["Event"]["discriminator"]["mapping"])
    assert produced == described


def test_serve_raises_the_open_file_limit_to_the_hard_limit() -> None:
    import resource

    from carebot.cli import raise_file_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        assert raise_file_limit() == (hard if hard != resource.RLIM_INFINITY else 65536)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
