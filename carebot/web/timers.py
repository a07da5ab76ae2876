"""The periodic task that runs the domain timers (timeouts, SLA) and publishes their events."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from aiohttp import web

from carebot.domain.events import Effects
from carebot.routing import surveys
from carebot.routing.timers import flag_sla_breaches, resolve_timeouts
from carebot.web.keys import CLOCK, ROUTER, SESSIONS, SETTINGS
from carebot.web.publish import publish_effects

log = logging.getLogger(__name__)


async def tick(app: web.Application) -> tuple[int, int]:
    """One timer pass; returns (conversations timed out, SLA breaches flagged).

    Delayed surveys are sent and overdue ones expired in the same pass.
    """
    settings, now = app[SETTINGS], app[CLOCK]()
    effects = Effects()
    async with app[SESSIONS].begin() as session:
        timed_out = await resolve_timeouts(
            session, now, timedelta(minutes=settings.bot_timeout_minutes), effects
        )
        breached = await flag_sla_breaches(
            session, now, timedelta(seconds=settings.queue_sla_seconds), effects
        )
        policy = app[ROUTER].surveys
        await surveys.send_due(session, now, policy, effects)
        await surveys.expire_due(session, now)
    await publish_effects(app, effects)
    return timed_out, breached


async def run_timers(app: web.Application) -> None:
    """Tick forever; a failed pass is logged and retried on the next one."""
    while True:
        await asyncio.sleep(app[SETTINGS].timer_interval_seconds)
        try:
            await tick(app)
        except Exception:
            log.exception("timer pass failed; retrying next interval")
