"""Helpers shared by the Telegram and outbox tests: settings for the fake Bot API, waiting for
the database to catch up, counting rows, queueing outbox rows in a real conversation."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import (
    ChannelReceipt,
    Conversation,
    Message,
    OutboxMessage,
    Touchpoint,
)
from carebot.delivery.outbox import enqueue
from carebot.domain.clock import ManualClock
from carebot.domain.messages import Button, OutboundMessage
from carebot.routing.conversations import current_conversation, find_or_create_contact
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
        contact = await find_or_create_contact(session, channel, recipient, "Alice", clock())
        conv = await current_conversation(session, contact, None, clock(), timedelta(hours=24))
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

