"""Helpers shared by the Telegram and outbox tests: settings for the fake Bot API, waiting for
the database to catch up, counting rows, queueing outbox rows in a real conversation."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import (
    ChannelReceipt,
    Contact,
    Conversation,
    Customer,
    Message,
    OutboxMessage,
    Touchpoint,
)
from carebot.delivery.outbox import enqueue
from carebot.domain.clock import ManualClock
from carebot.domain.messages import Button, OutboundMessage
from carebot.settings import Settings
from tests.fakes.bot_api import FakeBotAPI

USER_ID = 111111111
SECRET = "s3cret-Token_for-tests"
TABLES = (Message, Touchpoint, OutboxMessage, Conversation, ChannelReceipt)


def telegram_settings(settings: Settings, api: FakeBotAPI, **overrides: Any) -> Settings:
    """The test settings with the Telegram channel on the fake and fast outbox timings."""
    values: dict[str, Any] = {
        "telegram_token": api.token,
        "telegram_base_url": api.base_url,
        "telegram_timeout_seconds": 2.0,
        "outbox_poll_seconds": 0.05,
        "outbox_backoff_seconds": 0.5,
        "run_timers": False,
        **overrides,
    }
    return dataclasses.replace(settings, **values)


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 5.0, what: str = "condition"
) -> None:
    """Wait until `check()` is true (the worker commits after the fake answered)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


async def count(sessions: async_sessionmaker[AsyncSession], model: Any) -> int:
    """Rows in a table."""
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def counts(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
    """Rows in every table an inbound update can write to."""
    return [await count(sessions, t) for t in TABLES]


async def outbox_rows(sessions: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    """All outbox rows, oldest first."""
    async with sessions() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def outbox_row(sessions: async_sessionmaker[AsyncSession], row_id: int) -> OutboxMessage:
    """One outbox row, fresh from the database."""
    async with sessions() as session:
        row = await session.get(OutboxMessage, row_id)
        assert row is not None
        return row


async def all_sent(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Whether every outbox row is marked sent."""
    rows = await outbox_rows(sessions)
    return bool(rows) and all(r.status == "sent" for r in rows)


async def open_conversation(
    session: AsyncSession, channel: str, recipient: str, now: datetime
) -> Conversation:
    """A customer with a contact and a bot conversation, written directly."""
    customer = Customer(display_name="Alice", created_at=now)
    session.add(customer)
    await session.flush()
    contact = Contact(customer_id=customer.id, channel=channel, external_id=recipient,
                      display_name="Alice", created_at=now)
    session.add(contact)
    await session.flush()
    conv = Conversation(customer_id=customer.id, contact_id=contact.id, channel=channel,
                        status="bot", opened_at=now, updated_at=now, failed_bot_turns=0,
                        customer_messages=0, bot_answers=0, agent_messages=0, handoffs=0,
                        transfers=0, reopen_count=0, effort_score=0)
    session.add(conv)
    await session.flush()
    return conv


async def queue_messages(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    texts: list[str],
    *,
    recipient: str = str(USER_ID),
    channel: str = "telegram",
    buttons: tuple[Button, ...] = (),
) -> list[int]:
    """Queue replies in the recipient's conversation, as the router or the console would."""
    async with sessions.begin() as session:
        conv = await open_conversation(session, channel, recipient, clock())
        ids = []
        for text in texts:
            message = await enqueue(
                session, conv, recipient, OutboundMessage(text, buttons), clock(), sender="bot"
            )
            await session.flush()
            row = await session.scalar(
                select(OutboxMessage.id).where(OutboxMessage.message_id == message.id)
            )
            assert row is not None
            ids.append(row)
        return ids

