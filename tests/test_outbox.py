"""The outbox worker with the real Telegram sender (python-telegram-bot) against the fake Bot API:
retries and backoff, permanent failures, crash recovery, ordering, concurrent workers."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram import Bot

from carebot.channels.telegram import TelegramSender, build_application
from carebot.db.engine import make_engine, make_sessionmaker
from carebot.db.models import Touchpoint
from carebot.delivery.outbox import DeliveryPolicy, OutboxWorker, backoff_delay
from carebot.domain.clock import ManualClock
from carebot.domain.events import Effects
from carebot.domain.messages import Button
from carebot.settings import Settings
from tests.fakes.bot_api import FakeBotAPI
from tests.telegram_support import (
    USER_ID,
    outbox_row,
    outbox_rows,
    queue_messages,
    telegram_settings,
)

LEASE = timedelta(seconds=60)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI, settings: Settings) -> AsyncIterator[Bot]:
    application = build_application(
        telegram_settings(settings, api, telegram_timeout_seconds=0.5)
    )
    async with application.bot as connected:
        yield connected


class Published:
    """Collects what the worker publishes (the app hands it to the event hub)."""

    def __init__(self) -> None:
        self.effects: list[Effects] = []

    async def __call__(self, effects: Effects) -> None:
        self.effects.append(effects)


def worker(
    sessions: async_sessionmaker[AsyncSession],
    bot: Bot,
    clock: ManualClock,
    published: Published | None = None,
    **policy: Any,
) -> OutboxWorker:
    return OutboxWorker(
        sessions,
        {"telegram": TelegramSender(bot)},
        clock,
        DeliveryPolicy(**{"lease": LEASE, "backoff": timedelta(seconds=1), **policy}),
        publish=published,
        rng=random.Random(3),
    )


async def test_delivers_with_inline_keyboard_and_keeps_telegram_message_id(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    buttons = (Button("Yes", "yes:order-status"), Button("No, talk to a person", "no:x"))
    [row_id] = await queue_messages(sessions, clock, ["Did this help?"], buttons=buttons)
    assert await worker(sessions, bot, clock).run_once() == 1
    [sent] = api.sent
    assert sent["chat_id"] == USER_ID and sent["text"] == "Did this help?"
    assert sent["reply_markup"] == {"inline_keyboard": [[
        {"text": "Yes", "callback_data": "yes:order-status"},
        {"text": "No, talk to a person", "callback_data": "no:x"},
    ]]}
    row = await outbox_row(sessions, row_id)
    assert (row.status, row.attempts, row.sent_at) == ("sent", 1, clock())
    assert row.external_message_id == str(sent["message_id"])
    assert row.claim_token is None and row.claimed_until is None


async def test_429_waits_for_retry_after_then_succeeds(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    [row_id] = await queue_messages(sessions, clock, ["hello"])
    w = worker(sessions, bot, clock)
    api.fail_next("sendMessage", "429", retry_after=7)
    await w.run_once()
    row = await outbox_row(sessions, row_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "rate limit" in (row.last_error or "")
    wait = (row.next_attempt_at - clock()).total_seconds()
    assert 7 <= wait <= 7.7  # Telegram's retry_after, plus at most 10% spread
    clock.advance(seconds=6)
    assert await w.run_once() == 0, "not before retry_after"
    clock.advance(seconds=2)
    assert await w.run_once() == 1
    row = await outbox_row(sessions, row_id)
    assert (row.status, row.attempts) == ("sent", 2)
    assert [s["text"] for s in api.sent] == ["hello"]
    assert len(api.calls_to("sendMessage")) == 2


async def test_server_errors_back_off_exponentially(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    [row_id] = await queue_messages(sessions, clock, ["hello"])
    w = worker(sessions, bot, clock)
    api.fail_next("sendMessage", "500", times=3)
    waits = []
    for _ in range(3):
        await w.run_once()
        row = await outbox_row(sessions, row_id)
        assert row.status == "pending" and "Internal Server Error" in (row.last_error or "")
        waits.append((row.next_attempt_at - clock()).total_seconds())
        clock.advance(seconds=waits[-1])
    # 1 s, 2 s, 4 s ceilings with equal jitter: each wait in [ceiling/2, ceiling].
    assert [0.5 <= waits[0] <= 1, 1 <= waits[1] <= 2, 2 <= waits[2] <= 4] == [True] * 3
    await w.run_once()
    assert (await outbox_row(sessions, row_id)).attempts == 4
    assert len(api.sent) == 1


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("403", "bot was blocked by the user"), ("400", "Chat not found")],
)
async def test_permanent_errors_fail_once_with_reason_and_touchpoint(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock,
    kind: str, reason: str,
) -> None:
    [row_id] = await queue_messages(sessions, clock, ["hello"])
    published = Published()
    w = worker(sessions, bot, clock, published)
    api.fail_next("sendMessage", kind)
    await w.run_once()
    for _ in range(3):  # no retry loop, however long we wait
        clock.advance(hours=1)
        assert await w.run_once() == 0
    assert len(api.calls_to("sendMessage")) == 1
    row = await outbox_row(sessions, row_id)
    assert (row.status, row.attempts) == ("failed", 1)
    assert reason in (row.last_error or "")
    async with sessions() as session:
        tp = await session.scalar(select(Touchpoint).where(Touchpoint.kind == "delivery_failed"))
    assert tp is not None and tp.conversation_id == row.conversation_id
    assert tp.message_id == row.message_id and tp.actor == "system"
    assert tp.details is not None and reason in tp.details["reason"]
    [effects] = published.effects
    assert [e.kind for e in effects.events] == ["delivery_failed"]


async def test_gives_up_after_max_attempts(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    [row_id] = await queue_messages(sessions, clock, ["hello"])
    w = worker(sessions, bot, clock, max_attempts=3)
    api.fail_next("sendMessage", "500", times=5)
    for _ in range(5):
        await w.run_once()
        clock.advance(minutes=5)
    row = await outbox_row(sessions, row_id)
    assert (row.status, row.attempts) == ("failed", 3)
    assert (row.last_error or "").startswith("gave up after 3 attempts")
    assert len(api.calls_to("sendMessage")) == 3


async def test_timeout_is_retried_and_can_arrive_twice(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    """The honest at-least-once case: Telegram may accept a message whose answer never came."""
    [row_id] = await queue_messages(sessions, clock, ["hello"])
    w = worker(sessions, bot, clock)
    api.fail_next("sendMessage", "timeout", delay=0.8)  # the client gives up after 0.5 s
    await w.run_once()
    row = await outbox_row(sessions, row_id)
    assert row.status == "pending" and "may have arrived" in (row.last_error or "")
    await api.wait_for_sent(1)  # ... and Telegram delivered it anyway
    clock.advance(seconds=5)
    await w.run_once()
    assert (await outbox_row(sessions, row_id)).status == "sent"
    assert [s["text"] for s in api.sent] == ["hello", "hello"]


async def test_crash_after_claim_before_send_delivers_exactly_once(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine, clock: ManualClock, database_url: str,
) -> None:
    ids = await queue_messages(sessions, clock, ["one", "two"])
    claimed, _token, _until = await worker(sessions, bot, clock).claim()
    assert [i.id for i in claimed] == ids[:1], "one message per chat at a time"
    await engine.dispose()  # the process dies holding the claim
    restarted_engine = make_engine(database_url)
    try:
        restarted = worker(make_sessionmaker(restarted_engine), bot, clock)
        assert await restarted.run_once() == 0, "the lease still holds"
        clock.advance(seconds=LEASE.total_seconds() + 1)
        assert await restarted.drain() == 2
        clock.advance(hours=1)
        assert await restarted.run_once() == 0
    finally:
        await restarted_engine.dispose()
    assert [s["text"] for s in api.sent] == ["one", "two"]
    assert {r.status for r in await outbox_rows(sessions)} == {"sent"}


async def test_crash_after_telegram_accepted_resends_once_and_never_again(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    """The documented window: accepted by Telegram, worker killed before it recorded `sent`."""
    [row_id] = await queue_messages(sessions, clock, ["hello"])
    release = api.hold("sendMessage")
    crashing = asyncio.create_task(worker(sessions, bot, clock).run_once())
    await api.wait_for_calls("sendMessage", 1)
    crashing.cancel()  # killed while waiting for Telegram's answer
    await asyncio.gather(crashing, return_exceptions=True)
    release.set()
    await api.wait_for_sent(1)  # Telegram accepted it
    api.remove_handler("sendMessage")
    assert (await outbox_row(sessions, row_id)).status == "sending"

    restarted = worker(sessions, bot, clock)
    clock.advance(seconds=LEASE.total_seconds() + 1)
    assert await restarted.run_once() == 1
    row = await outbox_row(sessions, row_id)
    assert row.status == "sent"
    for _ in range(3):
        clock.advance(hours=1)
        assert await restarted.run_once() == 0
    assert [s["text"] for s in api.sent] == ["hello", "hello"]


async def test_sent_rows_are_never_sent_again(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    await queue_messages(sessions, clock, ["one", "two", "three"])
    assert await worker(sessions, bot, clock).drain() == 3
    for _ in range(2):  # restarts, much later
        clock.advance(days=1)
        assert await worker(sessions, bot, clock).drain() == 0
    assert [s["text"] for s in api.sent] == ["one", "two", "three"]


async def test_a_worker_whose_lease_ran_out_does_not_send(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    [row_id] = await queue_messages(sessions, clock, ["hello"])
    slow = worker(sessions, bot, clock)
    items, token, until = await slow.claim()
    clock.advance(seconds=LEASE.total_seconds() + 1)  # stalled past its lease ...
    assert await worker(sessions, bot, clock).run_once() == 1  # ... another worker took over
    await slow.deliver(items, token, until)  # the stalled worker wakes up
    assert [s["text"] for s in api.sent] == ["hello"]
    row = await outbox_row(sessions, row_id)
    assert (row.status, row.attempts) == ("sent", 1)


async def test_later_messages_to_a_chat_wait_for_an_earlier_retry(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    first, second = await queue_messages(sessions, clock, ["first", "second"])
    [other] = await queue_messages(sessions, clock, ["elsewhere"], recipient="222")
    w = worker(sessions, bot, clock)
    api.fail_next("sendMessage", "429", retry_after=3)
    await w.run_once()
    assert [s["text"] for s in api.sent] == ["elsewhere"], "other chats are not held up"
    assert (await outbox_row(sessions, second)).status == "pending"
    assert await w.run_once() == 0, "'second' must not overtake 'first'"
    clock.advance(seconds=4)
    assert await w.drain() == 2
    assert [s["text"] for s in api.sent] == ["elsewhere", "first", "second"]
    assert {(await outbox_row(sessions, i)).status for i in (first, second, other)} == {"sent"}


async def test_rows_without_a_sender_stay_pending_and_are_reported_once(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    [row_id] = await queue_messages(sessions, clock, ["hi"], channel="webchat", recipient="w1")
    caplog.set_level(logging.WARNING, logger="carebot.delivery.outbox")
    w = worker(sessions, bot, clock)
    assert await w.run_once() == 0
    w._next_orphan_check = 0  # as if a minute had passed
    assert await w.run_once() == 0
    warnings = [r for r in caplog.records if "'webchat'" in r.getMessage()]
    assert len(warnings) == 1
    assert (await outbox_row(sessions, row_id)).status == "pending"
    assert api.sent == []


async def test_two_workers_share_the_outbox_and_send_each_row_once(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock,
    engine: AsyncEngine, database_url: str,
) -> None:
    for chat in range(10):
        await queue_messages(sessions, clock, [f"{chat}:{n}" for n in range(4)],
                             recipient=str(1000 + chat))
    # PostgreSQL: two engines, as two processes would have (FOR UPDATE SKIP LOCKED keeps them
    # apart). SQLite is single-process by design: the two workers share the one engine.
    other = engine if database_url.startswith("sqlite") else make_engine(database_url)
    try:
        a = worker(sessions, bot, clock, batch_size=7)
        b = worker(make_sessionmaker(other), bot, clock, batch_size=7)
        await asyncio.gather(a.drain(), b.drain())
    finally:
        if other is not engine:
            await other.dispose()
    texts = [s["text"] for s in api.sent]
    assert sorted(texts) == sorted(f"{c}:{n}" for c in range(10) for n in range(4))
    for chat in range(10):  # each chat in order
        assert [t for t in texts if t.startswith(f"{chat}:")] == [f"{chat}:{n}" for n in range(4)]
    assert {r.status for r in await outbox_rows(sessions)} == {"sent"}


async def test_running_worker_wakes_at_once_and_stops_gracefully(
    api: FakeBotAPI, bot: Bot, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    w = worker(sessions, bot, clock, poll_interval=30.0)
    w.start()
    try:
        await asyncio.sleep(0.05)
        await queue_messages(sessions, clock, ["hello"])
        w.wake.set()  # what publish_effects does after a commit
        await api.wait_for_sent(1, within=2)
    finally:
        await w.stop()
    assert [r.status for r in await outbox_rows(sessions)] in (["sent"], ["sending"])


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = DeliveryPolicy(backoff=timedelta(seconds=1), backoff_max=timedelta(seconds=60))
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (40, 60)]:
        delays = [backoff_delay(policy, attempt, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # really spread out
