"""Typed keys for what the app holds (no module-level state)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from carebot.care.clock import Clock
from carebot.care.faq_index import FaqIndex
from carebot.care.hub import EventHub
from carebot.care.router import Router
from carebot.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
FAQ_INDEX = web.AppKey("faq_index", FaqIndex)
ROUTER = web.AppKey("router", Router)
EVENT_HUB = web.AppKey("event_hub", EventHub)
OUTBOX_WAKE = web.AppKey("outbox_wake", asyncio.Event)
