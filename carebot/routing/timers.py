"""Timers: what time alone does to conversations, decided by the core and written here.

Each pass resolves bot conversations the customer walked away from (`timeout`), records an
SLA breach once per queue stay that outlasted the SLA, sends surveys whose delay has passed,
and expires surveys nobody answered. Rows are claimed with SKIP LOCKED, so timers in several
processes share the work and never wait on a conversation an agent or the inbound writer has.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Conversation, Survey, Touchpoint
from carebot.domain.events import Effects
from carebot.routing import apply, core, survey_rules
from carebot.routing.actions import _recipient, _state, _survey_state, resolve_facts
from carebot.routing.policy import Policy

BATCH = 200


async def resolve_timeouts(
    session: AsyncSession, now: datetime, policy: Policy, silence_cutoff: datetime,
    effects: Effects,
) -> int:
    """Resolve bot conversations whose customer has been silent since `silence_cutoff`."""
    rows = list(await session.scalars(
        select(Conversation)
        .where(
            Conversation.status == "bot",
            Conversation.last_customer_message_at <= silence_cutoff,
            Conversation.updated_at <= silence_cutoff,
        )
        .order_by(Conversation.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    ))
    for conv in rows:
        d = core.time_out(_state(conv), now)
        await apply.write(session, d, await _recipient(session, conv), policy, effects)
    return len(rows)


async def flag_sla_breaches(
    session: AsyncSession, now: datetime, policy: Policy, effects: Effects
) -> int:
    """Record `sla_breached` once per queue stay longer than the SLA, and tell managers."""
    already = exists().where(
        and_(
            Touchpoint.conversation_id == Conversation.id,
            Touchpoint.kind == "sla_breached",
            Touchpoint.created_at >= Conversation.queued_at,
        )
    )
    rows = list(await session.scalars(
        select(Conversation)
        .where(
            Conversation.status == "queued",
            Conversation.queued_at <= now - policy.queue_sla,
            ~already,
        )
        .order_by(Conversation.queued_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    ))
    flagged = 0
    for conv in rows:
        # Oldest first: counted in business time, the first stay not yet late means no later
        # one is either.
        if not core.sla_due(_state(conv), now, policy):
            break
        d = core.sla_breached(_state(conv), now, policy)
        await apply.write(session, d, await _recipient(session, conv), policy, effects)
        flagged += 1
    return flagged


async def send_due_surveys(
    session: AsyncSession, now: datetime, policy: Policy, effects: Effects
) -> int:
    """Send scheduled surveys whose delay has passed; returns how many went out."""
    due = list(await session.scalars(
        select(Survey)
        .where(Survey.status == "scheduled", Survey.due_at <= now)
        .order_by(Survey.due_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    ))
    sent = 0
    for row in due:
        conv = await session.get(Conversation, row.conversation_id)
        survey = _survey_state(row)
        assert conv is not None and survey is not None
        facts = await resolve_facts(session, conv.id, conv.customer_id, now, policy)
        d = survey_rules.send_due(_state(conv), survey, now, bool(facts.surveyed_recently),
                                  policy.surveys)
        await apply.write(session, d, await _recipient(session, conv), policy, effects)
        sent += bool(d.replies)
    return sent


async def expire_surveys(
    session: AsyncSession, now: datetime, policy: Policy, effects: Effects
) -> int:
    """Mark surveys past their expiry, so stats see them as unanswered."""
    rows = list(await session.scalars(
        select(Survey)
        .where(Survey.awaiting.is_not(None), Survey.expires_at < now)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    ))
    for row in rows:
        conv = await session.get(Conversation, row.conversation_id)
        survey = _survey_state(row)
        assert conv is not None and survey is not None
        d = survey_rules.expire(_state(conv), survey, now)
        await apply.write(session, d, await _recipient(session, conv), policy, effects)
    return len(rows)
