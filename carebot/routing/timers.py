"""Timers: what time alone does to conversations, decided by the core and written here.

Each pass resolves bot conversations the customer walked away from (`timeout`), records an
SLA breach once per queue stay that outlasted the SLA, makes online agents without a console
away, puts conversations of absent agents whose customer waits for an answer back in the
queue, records an assigned SLA breach once per assignment, sends surveys whose delay has
passed, and expires surveys nobody answered. Rows are claimed with SKIP LOCKED, so timers in
several processes share the work and never wait on a conversation an agent or the inbound
writer has.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from carebot.db.models import Agent, Conversation, Message, Survey, Touchpoint
from carebot.domain.events import Effects
from carebot.routing import apply, core, survey_rules
from carebot.routing.actions import (
    _commit,
    _recipient,
    _state,
    _survey_state,
    _try_agent,
    assign_waiting,
    resolve_facts,
)
from carebot.routing.decision import NotAllowed
from carebot.routing.policy import Policy
from carebot.routing.presence import presence_of, write_status

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


def _not_flagged_since(kind: str, since: Any) -> ColumnElement[bool]:
    """The conversation has no `kind` touchpoint from `since` on (the current stay or
    assignment): each is flagged once."""
    return ~exists().where(
        and_(
            Touchpoint.conversation_id == Conversation.id,
            Touchpoint.kind == kind,
            Touchpoint.created_at >= since,
        )
    )


async def flag_sla_breaches(
    session: AsyncSession, now: datetime, policy: Policy, effects: Effects
) -> int:
    """Record `sla_breached` once per queue stay longer than the SLA, and tell managers."""
    rows = list(await session.scalars(
        select(Conversation)
        .where(
            Conversation.status == "queued",
            Conversation.queued_at <= now - policy.queue_sla,
            _not_flagged_since("sla_breached", Conversation.queued_at),
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


async def mark_absent(
    session: AsyncSession, now: datetime, policy: Policy, effects: Effects
) -> int:
    """Make online agents whose consoles have all been gone for the grace period (or who
    never connected one) away, set by presence; returns how many."""
    grace = policy.presence.grace
    if grace is None:
        return 0
    rows = list(await session.scalars(
        select(Agent)
        .where(
            Agent.status == "online",
            Agent.disabled.is_(False),
            or_(Agent.presence_at.is_(None), Agent.presence_at < now - grace),
        )
        .order_by(Agent.id)
        .limit(BATCH)
        # A process writing their heartbeat right now holds the row: skipped, and rightly.
        .with_for_update(key_share=True, skip_locked=True)
        .execution_options(populate_existing=True)
    ))
    marked = 0
    for agent in rows:
        change = core.console_gone(presence_of(agent), now, grace)
        if change is not None:
            write_status(session, agent, change, now, effects)
            marked += 1
    await session.flush()
    return marked


def _last_reply() -> Any:
    """The latest agent reply in the conversation since its assignment (a correlated subquery)."""
    return (
        select(func.max(Message.created_at))
        .where(
            Message.conversation_id == Conversation.id,
            Message.sender == "agent",
            Message.direction == "out",
            Message.created_at >= Conversation.assigned_at,
        )
        .correlate(Conversation)  # the outer query's, from inside `first_after` too
        .scalar_subquery()
    )


def _waiting_since() -> ColumnElement[Any]:
    """When the customer started waiting for an answer (`core.waiting_since`), in SQL: only to
    find the candidates; the core decides each with facts read under the row lock."""
    last = _last_reply()
    inbound = aliased(Message)
    first_after = (
        select(func.min(inbound.created_at))
        .where(inbound.conversation_id == Conversation.id, inbound.direction == "in",
               inbound.created_at > last)
        .scalar_subquery()
    )
    return case((last.is_(None), Conversation.assigned_at), else_=first_after)


async def _waiting_facts(session: AsyncSession, conv: Conversation) -> Any:
    """The conversation's latest agent reply and its customer's first message after it, read
    now (a reply committed while this pass waited for the row is seen)."""
    last = await session.scalar(
        select(func.max(Message.created_at)).where(
            Message.conversation_id == conv.id, Message.sender == "agent",
            Message.direction == "out",
        )
    )
    first = None
    if last is not None:
        first = await session.scalar(
            select(func.min(Message.created_at)).where(
                Message.conversation_id == conv.id, Message.direction == "in",
                Message.created_at > last,
            )
        )
    return core.waiting_since(_state(conv), last, first)


async def requeue_unanswered(
    session: AsyncSession, now: datetime, policy: Policy, effects: Effects
) -> int:
    """Put back in the queue the conversations whose agent is away, offline or disabled and
    whose customer has waited `unanswered_requeue` for an answer; waiting conversations then
    get the agents who are free (never straight back to the absent one). Returns how many
    went back."""
    after = policy.presence.unanswered_requeue
    absent = exists().where(
        Agent.id == Conversation.assigned_agent_id,
        or_(Agent.status != "online", Agent.disabled.is_(True)),
    )
    rows = list(await session.scalars(
        select(Conversation)
        .where(
            Conversation.status == "assigned",
            Conversation.assigned_at <= now - after,
            absent,
            _waiting_since() <= now - after,
        )
        .order_by(Conversation.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True, of=Conversation)
        .execution_options(populate_existing=True)
    ))
    requeued = 0
    for conv in rows:
        assert conv.assigned_agent_id is not None
        # Lock order: the conversation, then the agent; one held right now (coming back
        # online, say) is left for the next pass.
        holder = await _try_agent(session, conv.assigned_agent_id)
        if holder is None:
            continue
        since = await _waiting_facts(session, conv)
        try:
            d = core.requeue_unanswered(_state(conv), holder, since, now, after)
        except NotAllowed:
            continue  # answered, or the agent came back, since the candidates were read
        await _commit(session, conv, d, policy, effects)  # and refreshed for assign_waiting
        requeued += 1
    if requeued:
        await assign_waiting(session, now, effects, policy)
    return requeued


async def flag_assigned_sla_breaches(
    session: AsyncSession, now: datetime, policy: Policy, effects: Effects
) -> int:
    """Record `assigned_sla_breached` once per assignment whose customer waited longer than
    the assigned SLA for an answer, and tell managers and the agent; returns how many."""
    sla = policy.presence.assigned_sla
    rows = list(await session.scalars(
        select(Conversation)
        .where(
            Conversation.status == "assigned",
            Conversation.assigned_at <= now - sla,
            _not_flagged_since("assigned_sla_breached", Conversation.assigned_at),
            _waiting_since() <= now - sla,
        )
        .order_by(Conversation.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True, of=Conversation)
        .execution_options(populate_existing=True)
    ))
    flagged = 0
    for conv in rows:
        try:
            d = core.assigned_sla_breached(_state(conv), await _waiting_facts(session, conv),
                                           now, sla)
        except NotAllowed:
            continue
        await apply.write(session, d, await _recipient(session, conv), policy, effects)
        flagged += 1
    return flagged
