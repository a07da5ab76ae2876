"""The periodic task that runs the domain timers (timeouts, SLA) and publishes their events."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from aiohttp import web

from carebot.domain.events import Effects
from carebot.routing import retention
from carebot.routing.timers import (
    expire_surveys,
    flag_assigned_sla_breaches,
    flag_sla_breaches,
    mark_absent,
    requeue_unanswered,
    resolve_timeouts,
    send_due_surveys,
)
from carebot.web.keys import CLOCK, POLICY, SETTINGS, WRITES
from carebot.web.publish import publish_effects

log = logging.getLogger(__name__)


async def tick(app: web.Application) -> tuple[int, int]:
    """One timer pass; returns (conversations timed out, queue SLA breaches flagged).

    In the same pass, on the app's clock: online agents without a console for the presence
    grace period become away, conversations of absent agents unanswered for too long go back
    to the queue, assigned SLA breaches are recorded, delayed surveys are sent and overdue
    ones expired.
    """
    settings, now = app[SETTINGS], app[CLOCK]()
    effects = Effects()
    policy = app[POLICY]
    async with app[WRITES].begin() as session:
        timed_out = await resolve_timeouts(
            session, now, policy, now - timedelta(minutes=settings.bot_timeout_minutes), effects
        )
        breached = await flag_sla_breaches(session, now, policy, effects)
        # Presence first: an agent found gone in this pass has their customers requeued in
        # it; a breach of the assigned SLA is on record before its conversation is requeued.
        await mark_absent(session, now, policy, effects)
        await flag_assigned_sla_breaches(session, now, policy, effects)
        await requeue_unanswered(session, now, policy, effects)
        await send_due_surveys(session, now, policy, effects)
        await expire_surveys(session, now, policy, effects)
    await publish_effects(app, effects)
    return timed_out, breached


# Each interval, retention works at most this long (in batches of short transactions).
RETENTION_BUDGET_SECONDS = 2.0


async def retain(app: web.Application, budget: float | None = RETENTION_BUDGET_SECONDS) -> (
        retention.RetentionReport | None):
    """Erase texts older than CAREBOT_RETENTION_DAYS (None when retention is off)."""
    days = app[SETTINGS].retention_days
    if not days:
        return None
    return await retention.run_pass(app[WRITES], app[CLOCK](), days, budget_seconds=budget)


async def timer_pass(app: web.Application, *, retention: bool = True) -> None:
    """One tick and (`retention`) one retention pass; a failure is logged, not raised (the
    next pass retries)."""
    try:
        await tick(app)
    except Exception:
        log.exception("timer pass failed; retrying next interval")
    if not retention:
        return
    try:
        await retain(app)
    except Exception:
        log.exception("retention pass failed; retrying next interval")


async def run_timers(app: web.Application) -> None:
    """A timer pass every interval, forever."""
    while True:
        await asyncio.sleep(app[SETTINGS].timer_interval_seconds)
        await timer_pass(app)
