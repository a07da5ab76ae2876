"""Timers: resolve conversations the customer walked away from, flag queue SLA breaches."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Conversation, Touchpoint
from carebot.domain.clock import ms_between
from carebot.domain.events import Effects, Event
from carebot.routing import touchpoints
from carebot.routing.conversations import resolve

BATCH = 200


async def resolve_timeouts(
    session: AsyncSession, now: datetime, silence: timedelta, effects: Effects
) -> int:
    """Resolve bot conversations whose customer has been silent for `silence` after the bot.

    Resolved as `timeout`: the customer never confirmed, so stats count it as an assumed,
    not a confirmed, bot resolution.
    """
    cutoff = now - silence
    rows = await session.scalars(
        select(Conversation)
        .where(
            Conversation.status == "bot",
            Conversation.last_customer_message_at <= cutoff,
            Conversation.updated_at <= cutoff,
        )
        .order_by(Conversation.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    done = 0
    for conv in rows:
        resolve(session, conv, now, by="timeout", actor="system", code="timeout")
        effects.emit(Event("resolved", conv.id, data={"resolved_by": "timeout"}))
        done += 1
    return done


async def flag_sla_breaches(
    session: AsyncSession, now: datetime, sla: timedelta, effects: Effects
) -> int:
    """Record `sla_breached` once per queue stay longer than the SLA, and tell managers."""
    already = exists().where(
        and_(
            Touchpoint.conversation_id == Conversation.id,
            Touchpoint.kind == "sla_breached",
            Touchpoint.created_at >= Conversation.queued_at,
        )
    )
    rows = await session.scalars(
        select(Conversation)
        .where(
            Conversation.status == "queued",
            Conversation.queued_at <= now - sla,
            ~already,
        )
        .order_by(Conversation.queued_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    flagged = 0
    for conv in rows:
        waited = ms_between(conv.queued_at, now)
        touchpoints.record(
            session, conv, "sla_breached", actor="system", channel=conv.channel, at=now,
            wait_ms=waited, details={"sla_seconds": sla.total_seconds()},
        )
        # No agent ids: only managers and admins (who see every event) get it.
        effects.emit(Event("sla_breached", conv.id, data={"waited_ms": waited}))
        flagged += 1
    return flagged
