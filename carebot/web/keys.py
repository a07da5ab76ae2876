"""Typed keys for what the app holds (no module-level state)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from carebot.db.availability import Availability
from carebot.delivery.outbox import OutboxWorker, Sender
from carebot.domain.clock import Clock
from carebot.matching.faq_index import FaqIndex, MatcherBuilder
from carebot.routing.pipeline import InboundBatcher
from carebot.routing.policy import Policy
from carebot.settings import Settings
from carebot.web.hub import EventHub
from carebot.web.login_limits import LoginLimiter

if TYPE_CHECKING:  # the channel module imports these keys
    from carebot.channels.telegram import TelegramChannel
    from carebot.web.presence import Consoles

SETTINGS = web.AppKey("settings", Settings)
# Whether the database answered lately (503s and one log line per outage).
DATABASE = web.AppKey("database", Availability)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
# Sessions that read, decide and write (on SQLite they take the write lock first).
WRITES = web.AppKey("writes", async_sessionmaker[AsyncSession])
FAQ_INDEX = web.AppKey("faq_index", FaqIndex)
MATCHER_BUILDER: web.AppKey[MatcherBuilder] = web.AppKey("matcher_builder")
POLICY = web.AppKey("policy", Policy)
EVENT_HUB = web.AppKey("event_hub", EventHub)
OUTBOX_WAKE = web.AppKey("outbox_wake", asyncio.Event)
INBOUND = web.AppKey("inbound", InboundBatcher)
# Outbox senders by channel; a channel registers its sender once it is connected.
OUTBOX_SENDERS: web.AppKey[dict[str, Sender]] = web.AppKey("outbox_senders")
OUTBOX_WORKER = web.AppKey("outbox_worker", OutboxWorker)
TELEGRAM: web.AppKey[TelegramChannel] = web.AppKey("telegram")
LOGIN_LIMITER = web.AppKey("login_limiter", LoginLimiter)
# The agents with a console (live-event WebSocket) connected to this process.
PRESENCE: web.AppKey[Consoles] = web.AppKey("presence")
