"""Handle time and queue waits, read from the touchpoint log: the sub-queries shared by the
summary, the breakdowns and the CSV export."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.orm import aliased

from carebot.db.models import Touchpoint
from carebot.stats.scope import C, Scope, T

# Touchpoints that start or end an agent's hold on a conversation (handle time segments):
# `requeued` ends the hold of an agent who was disabled or left their customer unanswered.
SEGMENT_KINDS = ("assigned", "transfer", "handback", "requeued", "resolved")
# Touchpoints that open or close a stay in the queue (queue waits).
QUEUE_KINDS = ("handoff", "transfer", "assigned", "handback", "requeued", "resolved")


def handle_segments(scope: Scope, conversations: Select[Any]) -> Select[Any]:
    """(conversation_id, agent_id, ms) for each closed assignment of the given conversations.

    An assignment runs from its `assigned` touchpoint to the next of assigned / transfer /
    handback / requeued / resolved in the same conversation (LEAD over the touchpoint log).
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
        .where(T.kind.in_(SEGMENT_KINDS), T.conversation_id.in_(conversations))
        .subquery("bounds")
    )
    return select(
        bounds.c.conversation_id,
        bounds.c.agent_id,
        scope.sql.ms_between(bounds.c.created_at, bounds.c.ended_at).label("ms"),
    ).where(bounds.c.kind == "assigned", bounds.c.ended_at.is_not(None))


def handle_per_conversation(scope: Scope) -> Select[Any]:
    """(conversation_id, v): handle time of each conversation of the resolved cohort."""
    segs = handle_segments(scope, select(C.id).where(*scope.resolved())).subquery("segs")
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

