"""Handle time, queue waits, queue stays and SLA breaches, read from the touchpoint log: the
sub-queries shared by the summary, the breakdowns, the live panel and the CSV export."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CompoundSelect, Select, and_, case, func, literal, select, union_all
from sqlalchemy.orm import aliased

from carebot.db.models import Touchpoint
from carebot.db.types import UTCDateTime
from carebot.stats.scope import C, Scope, T

# Touchpoints that start or end an agent's hold on a conversation (handle time segments):
# `requeued` ends the hold of an agent who was disabled or left their customer unanswered.
SEGMENT_KINDS = ("assigned", "transfer", "handback", "requeued", "resolved")
# Touchpoints that open or close a stay in the queue (queue waits).
QUEUE_KINDS = ("handoff", "transfer", "assigned", "handback", "requeued", "resolved")


def handle_segments(
    scope: Scope, conversations: Select[Any], since: Any | None = None
) -> Select[Any]:
    """(conversation_id, agent_id, ms) for each closed assignment of the given conversations.

    An assignment runs from its `assigned` touchpoint to the next of assigned / transfer /
    handback / requeued / resolved in the same conversation (LEAD over the touchpoint log).
    `since`: when the earliest of them opened (nothing in their log is older), so the
    database reads the log from there instead of every touchpoint of these kinds.
    """
    bounds = (
        select(
            T.conversation_id,
            T.kind,
            T.agent_id,
            T.created_at,
            func.lead(T.created_at)
            .over(partition_by=T.conversation_id, order_by=T.id)
            .label("ended_at"),
        )
        .where(T.kind.in_(SEGMENT_KINDS), T.conversation_id.in_(conversations),
               *([] if since is None else [T.created_at >= since]))
        .subquery("bounds")
    )
    return select(
        bounds.c.conversation_id,
        bounds.c.agent_id,
        scope.sql.ms_between(bounds.c.created_at, bounds.c.ended_at).label("ms"),
    ).where(bounds.c.kind == "assigned", bounds.c.ended_at.is_not(None))


def resolved_handle_segments(scope: Scope) -> Select[Any]:
    """`handle_segments` of the conversations of the resolved cohort (from when its earliest
    one opened, when the scope was built with `resolved_cohort`)."""
    return handle_segments(scope, select(C.id).where(*scope.resolved()),
                           scope.resolved_opened_from)


def handle_per_conversation(scope: Scope) -> Select[Any]:
    """(conversation_id, v): handle time of each conversation of the resolved cohort."""
    segs = resolved_handle_segments(scope).subquery("segs")
    return select(segs.c.conversation_id, func.sum(segs.c.ms).label("v")).group_by(
        segs.c.conversation_id
    )


def queue_waits(scope: Scope, conversations: Select[Any] | None = None) -> Select[Any]:
    """(conversation_id, created_at, v): each assignment from the queue.

    Without `conversations`: the assignments made in the period (of selected conversations);
    with it: every assignment of those conversations.

    `wait_ms` of an `assigned` touchpoint runs from the queue entry (handoff or transfer to the
    queue); an assignment made by a direct transfer to a named agent never waited in the queue
    and is left out (the touchpoint before it is that transfer).
    """
    by_period = conversations is None
    if conversations is None:
        assigned = aliased(Touchpoint)
        conversations = select(assigned.conversation_id).where(
            assigned.kind == "assigned", scope.during(assigned.created_at),
            *scope.selected(assigned.conversation_id),
        )
    to_agent = case((T.kind == "transfer", T.details["to_agent_id"].as_integer()))
    log = (
        select(
            T.conversation_id,
            T.kind,
            T.created_at,
            T.wait_ms,
            func.lag(T.kind).over(partition_by=T.conversation_id, order_by=T.id).label("prev"),
            func.lag(to_agent)
            .over(partition_by=T.conversation_id, order_by=T.id)
            .label("prev_to"),
        )
        .where(T.kind.in_(QUEUE_KINDS), T.conversation_id.in_(conversations))
        .subquery("log")
    )
    direct = and_(log.c.prev == "transfer", log.c.prev_to.is_not(None))
    stmt = select(log.c.conversation_id, log.c.created_at, log.c.wait_ms.label("v")).where(
        log.c.kind == "assigned", ~direct
    )
    return stmt.where(scope.during(log.c.created_at)) if by_period else stmt


def queue_stays(
    scope: Scope, entered_from: datetime | None = None, entered_to: datetime | None = None,
    conversations: Select[Any] | None = None,
) -> CompoundSelect[Any]:
    """(conversation_id, entered_at, ms) for each queue stay: from entering the queue to the
    next step that takes it out (assigned, transfer, handback, resolved), or, while still
    queued, to the query's now.

    Either the stays entered in [entered_from, entered_to) by selected conversations, or
    every stay of `conversations` (a select of ids). Each entry looks up the conversation's
    next queue step by index (a handful of rows), instead of a window over every touchpoint
    of the conversations involved. Handoffs and requeues are read from the kind index alone;
    only transfers, which enter the queue when they name no agent, read the table."""
    # Touchpoints that put a conversation in the queue: the first handoff or a later one, an
    # absent agent's conversation requeued, a transfer back to the queue (no `to_agent_id`).
    entry = aliased(Touchpoint)
    to_agent = entry.details["to_agent_id"].as_integer()
    if conversations is None:
        assert entered_from is not None and entered_to is not None
        where: list[Any] = [entry.created_at >= entered_from, entry.created_at < entered_to,
                            *scope.selected(entry.conversation_id)]
    else:
        where = [entry.conversation_id.in_(conversations)]
    # The next queue step by the log's order (its time is the earliest of the later ones):
    # one probe of ix_touchpoints_conversation_log.
    left_at = (
        select(T.created_at)
        .where(T.conversation_id == entry.conversation_id, T.id > entry.id,
               T.kind.in_(QUEUE_KINDS))
        .order_by(T.id)
        .limit(1)
        .scalar_subquery()
    )
    now = literal(scope.now, UTCDateTime())
    stays = select(
        entry.conversation_id,
        entry.created_at.label("entered_at"),
        scope.sql.ms_between(entry.created_at, func.coalesce(left_at, now)).label("ms"),
    ).where(*where)
    return union_all(
        stays.where(entry.kind.in_(("handoff", "requeued"))),
        stays.where(entry.kind == "transfer", to_agent.is_(None)),
    )


def sla_breaches(scope: Scope) -> Select[Any]:
    """(conversation_id, breached_at) for each queue stay longer than the SLA whose breach
    happened in the period: a breach is a property of the wait (entering the queue + SLA is
    in the period and the stay lasted longer, or is still going on at now), whenever the
    timer that alerts on it runs. Every stay counts, the second one after a transfer back
    to the queue too."""
    sla = timedelta(seconds=scope.query.sla_seconds)
    stays = queue_stays(scope, scope.period.start - sla, scope.period.end - sla).subquery(
        "stays")
    return select(stays.c.conversation_id, stays.c.entered_at).where(
        stays.c.ms > int(scope.query.sla_seconds * 1000)
    )
