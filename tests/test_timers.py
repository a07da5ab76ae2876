"""Timers: silent bot conversations time out; long queue waits raise an SLA breach once."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import Conversation, Touchpoint
from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from carebot.web.timers import tick
from tests.helpers import Customer, bearer, create_app, make_agent

Client = TestClient[Any, Any]


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    app = create_app(
        replace(settings, run_timers=False, bot_timeout_minutes=30, queue_sla_seconds=300),
        clock,
    )
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def test_silent_customer_after_bot_answer_is_resolved_as_timeout(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    data = await Customer(client, "quiet").say("where is my order")
    cid = data["conversation_id"]
    clock.advance(minutes=29)
    assert await tick(client.server.app) == (0, 0)
    clock.advance(minutes=2)
    assert await tick(client.server.app) == (1, 0)
    async with sessions() as session:
        conv = await session.get(Conversation, cid)
        assert conv is not None
        assert (conv.status, conv.resolved_by) == ("resolved", "timeout")


async def test_conversation_with_a_person_never_times_out(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await make_agent(sessions, "Tia", status="online")
    await Customer(client, "waiting").say("/human")
    clock.advance(hours=5)
    timed_out, _ = await tick(client.server.app)
    assert timed_out == 0


async def test_queue_sla_breach_is_flagged_once_and_managers_hear_of_it(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, token = await make_agent(sessions, "Mona", "manager")
    async with client.ws_connect("/api/v1/events", headers=bearer(token)) as ws:
        assert (await ws.receive_json(timeout=5))["kind"] == "hello"
        cid = (await Customer(client, "slow").say("/human"))["conversation_id"]
        assert (await ws.receive_json(timeout=5))["kind"] == "queued"
        await ws.receive_json(timeout=5)  # the customer's message
        clock.advance(seconds=299)
        assert await tick(client.server.app) == (0, 0)
        clock.advance(seconds=2)
        assert await tick(client.server.app) == (0, 1)
        event = await ws.receive_json(timeout=5)
        assert (event["kind"], event["conversation_id"]) == ("sla_breached", cid)
        assert event["data"]["waited_ms"] == 301_000
        clock.advance(minutes=10)
        assert await tick(client.server.app) == (0, 0), "one breach per queue stay"
    async with sessions() as session:
        kinds = list(await session.scalars(
            select(Touchpoint.kind).where(Touchpoint.conversation_id == cid)))
    assert kinds.count("sla_breached") == 1


async def test_what_fell_due_while_the_service_was_down_is_handled_when_it_starts(
    client: Client, aiohttp_client: Any, settings: Settings, clock: ManualClock,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A customer goes silent after an answer; the service is restarted 31 minutes later
    with timers on and an hour between passes: the conversation times out at start, not an
    hour later."""
    cid = (await Customer(client, "quiet").say("where is my order"))["conversation_id"]
    clock.advance(minutes=31)
    restarted = create_app(
        replace(settings, run_timers=True, timer_interval_seconds=3600, bot_timeout_minutes=30),
        clock,
    )
    await aiohttp_client(restarted)
    async with sessions() as session:
        conv = await session.get(Conversation, cid)
        assert conv is not None
        assert (conv.status, conv.resolved_by) == ("resolved", "timeout")
