"""Presence over real sockets: an agent is online while a console (the live-event WebSocket)
is connected, away after the grace period without one, and their unanswered customers go
back to the queue. The app runs on a ManualClock; the timers run when a test ticks them and
heartbeats when it beats them (the background loops' waits are real seconds)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import Agent, Conversation, Message, OutboxMessage, Touchpoint
from carebot.domain.clock import ManualClock
from carebot.settings import Settings, SettingsError
from carebot.web.fanout import PgNotifyHub
from carebot.web.keys import ENGINE, EVENT_HUB, PRESENCE
from carebot.web.presence import beat
from carebot.web.timers import tick
from tests.conftest import START
from tests.helpers import Customer, bearer, create_app, make_agent

Client = TestClient[Any, Any]
Socket = aiohttp.ClientWebSocketResponse


def presence_settings(settings: Settings) -> Settings:
    # The heartbeat loop's first beat would come after the tests end: they beat by hand.
    return replace(settings, run_timers=False, presence_grace_seconds=60,
                   presence_heartbeat_seconds=29,
                   unanswered_requeue_seconds=300, assigned_sla_seconds=120,
                   queue_sla_seconds=3600)


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    return await aiohttp_client(  # type: ignore[no-any-return]
        create_app(presence_settings(settings), clock))


def app_of(client: Client) -> web.Application:
    return client.server.app


@asynccontextmanager
async def console(client: Client, token: str) -> AsyncIterator[Socket]:
    """An open console; on leaving, waits until the server has let it go."""
    consoles = app_of(client)[PRESENCE]
    agent_id = (await (await client.get("/api/v1/me", headers=bearer(token))).json())["id"]
    before = consoles.count(agent_id)
    async with client.ws_connect("/api/v1/events", headers=bearer(token)) as ws:
        assert (await ws.receive_json(timeout=5))["kind"] == "hello"
        # Counted once its connection is on record.
        await until(lambda: consoles.count(agent_id) == before + 1)
        yield ws
    await until(lambda: consoles.count(agent_id) == before)


async def until(condition: Any) -> None:
    """Wait (at most 5 s) until the server has done what `condition` checks."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server did not get there within 5 s")


async def next_event(ws: Socket, kind: str) -> dict[str, Any]:
    """The next event of this kind (others are skipped)."""
    while True:
        event = await ws.receive_json(timeout=5)
        if event["kind"] == kind:
            return event  # type: ignore[no-any-return]


async def agent_row(sessions: async_sessionmaker[AsyncSession], agent_id: int) -> Agent:
    async with sessions() as session:
        row = await session.get(Agent, agent_id)
        assert row is not None
        return row


async def conv_row(sessions: async_sessionmaker[AsyncSession], cid: int) -> Conversation:
    async with sessions() as session:
        row = await session.get(Conversation, cid)
        assert row is not None
        return row


async def touchpoints(
    sessions: async_sessionmaker[AsyncSession], **where: Any
) -> list[Touchpoint]:
    async with sessions() as session:
        stmt = select(Touchpoint).order_by(Touchpoint.id)
        for name, value in where.items():
            stmt = stmt.where(getattr(Touchpoint, name) == value)
        return list(await session.scalars(stmt))


async def set_status(client: Client, token: str, status: str) -> None:
    resp = await client.put("/api/v1/me/availability", json={"status": status},
                            headers=bearer(token))
    assert resp.status == 200, await resp.text()


async def test_console_keeps_the_agent_online_and_its_absence_makes_them_away(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    alex_id, alex = await make_agent(sessions, "Alex", status="online")
    _, boss = await make_agent(sessions, "Mona", "manager")
    async with console(client, boss) as managers:
        async with console(client, alex):
            row = await agent_row(sessions, alex_id)
            assert (row.status, row.presence_at) == ("online", START)
            clock.advance(seconds=61)
            await beat(app_of(client))  # connected: the heartbeat moves with the clock
            await tick(app_of(client))
            assert (await agent_row(sessions, alex_id)).status == "online"
        # The console closed at START+61s; its last heartbeat said so.
        clock.advance(seconds=60)
        await tick(app_of(client))
        assert (await agent_row(sessions, alex_id)).status == "online", "within the grace"
        clock.advance(seconds=1)
        await tick(app_of(client))
        row = await agent_row(sessions, alex_id)
        assert (row.status, row.status_auto) == ("away", True)
        event = await next_event(managers, "agent_status")
        assert event["data"] == {"agent_id": alex_id, "status": "away", "auto": True,
                                 "reason": "no_console", "previous": "online"}
        [tp] = await touchpoints(sessions, kind="availability", agent_id=alex_id)
        assert (tp.actor, tp.details) == (
            "system", {"status": "away", "auto": True, "reason": "no_console"})

        # Back at the console: online again, announced; the choice of `away` would be kept.
        clock.advance(minutes=5)
        async with console(client, alex) as own:
            event = await next_event(own, "agent_status")
            assert event["data"]["status"] == "online"
            row = await agent_row(sessions, alex_id)
            assert (row.status, row.idle_since, row.presence_at) == (
                "online", clock.now, clock.now)
            await set_status(client, alex, "away")
            assert (await agent_row(sessions, alex_id)).status_auto is False
        async with console(client, alex):
            assert (await agent_row(sessions, alex_id)).status == "away", "their own choice"


async def test_an_agent_who_never_opened_a_console_is_away_after_the_grace(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Set online through the API, no socket: away at the first tick past the grace (the
    grace runs from the heartbeat, and there never was one)."""
    bea_id, bea = await make_agent(sessions, "Bea")
    await set_status(client, bea, "online")
    cid = (await Customer(client, "c1").say("/human"))["conversation_id"]
    assert (await conv_row(sessions, cid)).assigned_agent_id == bea_id
    await tick(app_of(client))
    assert (await agent_row(sessions, bea_id)).status == "away"
    # Nobody else is online: the conversation stays with her until it is unanswered 300 s.
    clock.advance(seconds=299)
    await tick(app_of(client))
    assert (await conv_row(sessions, cid)).status == "assigned"
    clock.advance(seconds=1)
    await tick(app_of(client))
    row = await conv_row(sessions, cid)
    assert (row.status, row.assigned_agent_id, row.released_by_agent_id) == (
        "queued", None, bea_id)


async def test_unanswered_customer_of_an_agent_who_left_goes_to_a_colleague(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The scenario of issue 19: an agent closes the console with a customer waiting; after
    the grace they are away, and once the customer has waited 300 s without an answer the
    conversation goes to the agent who is there, and the customer is told."""
    bea_id, bea = await make_agent(sessions, "Bea", status="online", capacity=1)
    alex_id, alex = await make_agent(sessions, "Alex", status="online", capacity=1)
    _, boss = await make_agent(sessions, "Mona", "manager")
    uma = Customer(client, "uma", "Uma")
    async with console(client, boss) as managers, console(client, bea):
        async with console(client, alex):
            # Bea is busy (the tie went to the lower id), so Uma's conversation goes to Alex.
            busy_cid = (await Customer(client, "busy").say("/human"))["conversation_id"]
            cid = (await uma.say("/human"))["conversation_id"]
            held = await conv_row(sessions, cid)
            assert held.assigned_agent_id == alex_id and held.assigned_at == START
        clock.advance(seconds=30)
        await uma.say("Hallo? Ist jemand da?")
        clock.advance(seconds=61)  # START+91s: past the grace since Alex's last heartbeat
        await beat(app_of(client))  # Bea's console is still open
        await tick(app_of(client))
        assert [(await agent_row(sessions, i)).status for i in (alex_id, bea_id)] == [
            "away", "online"]
        assert (await conv_row(sessions, cid)).status == "assigned"
        # Bea resolves her customer and has room; Uma has waited since the assignment.
        resp = await client.post(f"/api/v1/conversations/{busy_cid}/resolve",
                                 json={"code": "answered"}, headers=bearer(bea))
        assert resp.status == 200
        clock.now = START + timedelta(seconds=300)
        await beat(app_of(client))
        await tick(app_of(client))
        row = await conv_row(sessions, cid)
        assert (row.status, row.assigned_agent_id, row.released_by_agent_id) == (
            "assigned", bea_id, None)
        event = await next_event(managers, "unassigned")
        assert (event["conversation_id"], event["agent_ids"], event["data"]) == (
            cid, [alex_id], {"reason": "unanswered", "agent_status": "away",
                             "waited_ms": 300_000})
        assert (await next_event(managers, "assigned"))["data"] == {"agent_id": bea_id}
    kinds = [(t.kind, t.actor, t.agent_id) for t in await touchpoints(
        sessions, conversation_id=cid)]
    assert kinds == [
        ("message_in", "customer", None), ("handoff", "bot", None),
        ("assigned", "system", alex_id), ("message_in", "customer", None),
        ("assigned_sla_breached", "system", alex_id),
        ("requeued", "system", None), ("assigned", "system", bea_id),
    ]
    async with sessions() as session:
        told = list(await session.scalars(
            select(OutboxMessage.text).where(OutboxMessage.conversation_id == cid)
            .order_by(OutboxMessage.id)))
    assert told[-1] == "Bea has joined the conversation."


async def test_an_answered_customer_stays_and_a_new_question_waits_from_its_first_message(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    alex_id, alex = await make_agent(sessions, "Alex", status="online")
    uma = Customer(client, "uma")
    cid = (await uma.say("/human"))["conversation_id"]
    clock.advance(seconds=20)
    resp = await client.post(f"/api/v1/conversations/{cid}/reply", json={"text": "Hi!"},
                             headers=bearer(alex))
    assert resp.status == 201
    await set_status(client, alex, "offline")  # their own choice: offline counts as absent
    clock.advance(hours=1)
    await tick(app_of(client))
    assert (await conv_row(sessions, cid)).status == "assigned", "answered: nobody waits"
    first_question = clock.now
    await uma.say("one more question")
    clock.advance(seconds=200)
    await uma.say("hello??")  # writing again does not restart the wait
    clock.advance(seconds=99)
    await tick(app_of(client))
    assert (await conv_row(sessions, cid)).status == "assigned"
    clock.advance(seconds=1)
    await tick(app_of(client))
    assert (await conv_row(sessions, cid)).status == "queued"
    [tp] = await touchpoints(sessions, conversation_id=cid, kind="requeued")
    assert tp.details == {"from_agent_id": alex_id, "reason": "unanswered",
                          "agent_status": "offline", "waited_ms": 300_000}
    assert clock.now - first_question == timedelta(seconds=300)


async def test_the_assigned_sla_is_breached_once_per_assignment(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    alex_id, alex = await make_agent(sessions, "Alex", status="online")
    bea_id, bea = await make_agent(sessions, "Bea", status="online")
    _, boss = await make_agent(sessions, "Mona", "manager")
    async with console(client, boss) as managers, console(client, alex), console(client, bea):
        cid = (await Customer(client, "uma").say("/human"))["conversation_id"]
        assert (await conv_row(sessions, cid)).assigned_agent_id == alex_id
        clock.advance(seconds=119)
        await beat(app_of(client))
        await tick(app_of(client))
        assert await touchpoints(sessions, kind="assigned_sla_breached") == []
        clock.advance(seconds=1)
        await beat(app_of(client))
        await tick(app_of(client))
        event = await next_event(managers, "assigned_sla_breached")
        assert (event["conversation_id"], event["agent_ids"], event["data"]) == (
            cid, [alex_id], {"agent_id": alex_id, "waited_ms": 120_000})
        clock.advance(minutes=10)
        await beat(app_of(client))
        await tick(app_of(client))
        assert len(await touchpoints(sessions, kind="assigned_sla_breached")) == 1
        # A new assignment (a transfer) may breach again.
        resp = await client.post(f"/api/v1/conversations/{cid}/transfer",
                                 json={"agent_id": bea_id}, headers=bearer(alex))
        assert resp.status == 200, await resp.text()
        clock.advance(seconds=120)
        await beat(app_of(client))
        await tick(app_of(client))
        breaches = await touchpoints(sessions, kind="assigned_sla_breached")
        assert [(t.agent_id, t.wait_ms) for t in breaches] == [
            (alex_id, 120_000), (bea_id, 120_000)]
    # The stats' queue SLA counts only queue stays.
    resp = await client.get("/api/v1/stats/summary", headers=bearer(boss))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["sla"]["breaches"] == 0


async def test_a_heartbeat_is_one_update_for_all_the_agents_of_a_process(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tokens = [(await make_agent(sessions, f"A{n}", status="online"))[1] for n in range(3)]
    app = app_of(client)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            statements.append(statement)

    async with console(client, tokens[0]), console(client, tokens[0]), \
            console(client, tokens[1]), console(client, tokens[2]):
        assert len(app[PRESENCE].agent_ids()) == 3
        clock.advance(seconds=5)
        sync_engine = app[ENGINE].sync_engine
        event.listen(sync_engine, "before_cursor_execute", seen)
        try:
            await beat(app)
        finally:
            event.remove(sync_engine, "before_cursor_execute", seen)
        assert len(statements) == 1 and "agents" in statements[0]
        async with sessions() as session:
            beats = set(await session.scalars(select(Agent.presence_at)))
        assert beats == {clock.now}
    assert app[PRESENCE].agent_ids() == []


async def test_one_tab_closing_leaves_the_other_counting(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    alex_id, alex = await make_agent(sessions, "Alex", status="online")
    app = app_of(client)
    async with console(client, alex):
        async with console(client, alex):
            assert app[PRESENCE].count(alex_id) == 2
        assert app[PRESENCE].agent_ids() == [alex_id]
        clock.advance(minutes=5)
        await beat(app)
        await tick(app)
        assert (await agent_row(sessions, alex_id)).status == "online"


async def test_a_heartbeat_gives_back_online_that_presence_took_meanwhile(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Heartbeats could not be written for a while (the database was away) and the timers of
    another process made the connected agent away: the next heartbeat puts that right, and
    pulls the waiting conversation."""
    alex_id, alex = await make_agent(sessions, "Alex", status="online")
    async with console(client, alex) as ws:
        cid = (await Customer(client, "uma").say("/human"))["conversation_id"]
        async with sessions.begin() as session:
            row = await session.get(Agent, alex_id)
            assert row is not None
            row.status, row.status_auto = "away", True
            conv = await session.get(Conversation, cid)
            assert conv is not None
            conv.status, conv.assigned_agent_id, conv.assigned_at = "queued", None, None
        clock.advance(seconds=5)
        assert await beat(app_of(client)) == 1
        event = await next_event(ws, "agent_status")
        assert (event["data"]["status"], event["data"]["reason"]) == ("online", "console_connected")
        assert (await agent_row(sessions, alex_id)).status == "online"
        assert (await conv_row(sessions, cid)).assigned_agent_id == alex_id
        assert await beat(app_of(client)) == 0


async def test_a_socket_on_either_process_keeps_the_agent_online(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Two processes' worth of apps on one PostgreSQL database: the agent's console is on the
    second; the first runs the timers and takes the customers."""
    if settings.is_sqlite:
        pytest.skip("SQLite runs one process; several processes are PostgreSQL's")
    front = await aiohttp_client(create_app(presence_settings(settings), clock))
    back = await aiohttp_client(create_app(presence_settings(settings), clock))
    for c in (front, back):
        hub = app_of(c)[EVENT_HUB]
        assert isinstance(hub, PgNotifyHub)
        await asyncio.wait_for(hub.listening.wait(), 5)
    alex_id, alex = await make_agent(sessions, "Alex", status="online")
    _, boss = await make_agent(sessions, "Mona", "manager")
    async with console(front, boss) as managers:
        async with console(back, alex):
            for _ in range(3):
                clock.advance(seconds=50)
                await beat(app_of(back))
                await tick(app_of(front))
                assert (await agent_row(sessions, alex_id)).status == "online"
            cid = (await Customer(front, "uma").say("/human"))["conversation_id"]
            assert (await conv_row(sessions, cid)).assigned_agent_id == alex_id
        clock.advance(seconds=61)
        await tick(app_of(front))
        assert (await agent_row(sessions, alex_id)).status == "away"
        event = await next_event(managers, "agent_status")
        assert event["data"]["status"] == "away"
        clock.advance(seconds=300)
        await tick(app_of(front))
        assert (await conv_row(sessions, cid)).status == "queued"
        # Back on the first process this time: online again, and the queue is not handed
        # straight back to him (he released it), so it waits for a colleague or a claim.
        async with console(front, alex):
            assert (await agent_row(sessions, alex_id)).status == "online"
            assert (await conv_row(sessions, cid)).status == "queued"


async def test_presence_off_leaves_statuses_alone(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await aiohttp_client(create_app(
        replace(presence_settings(settings), presence_grace_seconds=0), clock))
    alex_id, _ = await make_agent(sessions, "Alex", status="online")
    clock.advance(hours=2)
    await tick(app_of(client))
    assert (await agent_row(sessions, alex_id)).status == "online"


async def test_a_private_note_is_no_answer(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A private note is no answer: the customer still waits."""
    _, alex = await make_agent(sessions, "Alex", status="online")
    cid = (await Customer(client, "uma").say("/human"))["conversation_id"]
    resp = await client.post(f"/api/v1/conversations/{cid}/notes", json={"text": "call back"},
                             headers=bearer(alex))
    assert resp.status == 201
    async with sessions() as session:
        assert await session.scalar(select(Message.direction).where(
            Message.conversation_id == cid, Message.sender == "agent")) == "note"
    clock.advance(seconds=300)
    await tick(app_of(client))
    assert (await conv_row(sessions, cid)).status == "queued"


async def test_an_absent_agents_handle_time_ends_when_the_conversation_is_requeued(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Handle time per agent: Alex held it from the assignment to the requeue (300 s), not
    while it waited in the queue afterwards; Bea from her claim to her resolution (100 s)."""
    alex_id, alex = await make_agent(sessions, "Alex", status="online")
    bea_id, bea = await make_agent(sessions, "Bea")
    _, boss = await make_agent(sessions, "Mona", "manager")
    cid = (await Customer(client, "uma").say("/human"))["conversation_id"]
    await set_status(client, alex, "away")
    clock.advance(seconds=300)
    await tick(app_of(client))
    assert (await conv_row(sessions, cid)).status == "queued"
    clock.advance(seconds=100)
    for action, body in (("claim", None), ("reply", {"text": "Hi, Bea here"})):
        resp = await client.post(f"/api/v1/conversations/{cid}/{action}", json=body,
                                 headers=bearer(bea))
        assert resp.status in (200, 201), await resp.text()
    clock.advance(seconds=100)
    resp = await client.post(f"/api/v1/conversations/{cid}/resolve", json={"code": "answered"},
                             headers=bearer(bea))
    assert resp.status == 200
    resp = await client.get("/api/v1/stats/agents?from=2026-03-02&to=2026-03-02",
                            headers=bearer(boss))
    assert resp.status == 200, await resp.text()
    handle = {i["agent_id"]: i["handle_time_ms"]["total"] for i in (await resp.json())["items"]}
    assert handle == {alex_id: 300_000, bea_id: 100_000}


def test_presence_settings_are_checked() -> None:
    assert Settings.from_env({}).presence_grace_seconds == 60
    assert Settings.from_env({"CAREBOT_PRESENCE_GRACE_SECONDS": "0"}).presence_grace_seconds == 0
    for env, message in (
        ({"CAREBOT_PRESENCE_GRACE_SECONDS": "10"}, "more than twice"),
        ({"CAREBOT_PRESENCE_GRACE_SECONDS": "-1"}, "0 \\(presence off\\) or more"),
        ({"CAREBOT_PRESENCE_HEARTBEAT_SECONDS": "0"}, "must be positive"),
        ({"CAREBOT_UNANSWERED_REQUEUE_SECONDS": "0"}, "must be positive"),
        ({"CAREBOT_ASSIGNED_SLA_SECONDS": "-5"}, "must be positive"),
    ):
        with pytest.raises(SettingsError, match=message):
            Settings.from_env(env)
