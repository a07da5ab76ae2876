"""Keeping each conversation's journey marks (carebot.domain.journey) as touchpoints are written.

The dashboard's journey is drawn from one small row per conversation instead of a pass over
the touchpoint log (a million rows at a year's traffic: a second per page load). The row is
created with the conversation and moved forward in the transaction that writes each marked
touchpoint, so it is never behind the log; `backfill` builds it from the log for
conversations written before it existed (the migration that adds it, and bulk-loaded data).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    String,
    Update,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.engine import Connection

from carebot.db.models import Conversation, Touchpoint, journey_marks
from carebot.domain.journey import CSAT_POSITIVE, LAST_MARK, MARKS

J = journey_marks.c


def start(conn: Connection, conversation_ids: list[int]) -> None:
    """An empty row for each new conversation (before its first touchpoint is written)."""
    if conversation_ids:
        conn.execute(insert(journey_marks), [
            {"conversation_id": cid, "seq": 0} for cid in conversation_ids
        ])


def advance(conn: Connection, marked: list[dict[str, Any]]) -> None:
    """Record marked touchpoints, in the order written: dicts of `cid` (conversation),
    `mark`, `at` and `effort` (the conversation's effort once this touchpoint is counted)."""
    if marked:
        conn.execute(_advance(), [
            {"b_cid": m["cid"], "b_mark": m["mark"], "b_at": m["at"], "b_effort": m["effort"]}
            for m in marked
        ])


@functools.cache
def _advance() -> Update:
    # Built once: one statement for every mark, so a batch is one executemany whatever its
    # marks; each row is applied in turn, so a conversation marked twice in a batch is too.
    mark = bindparam("b_mark", type_=String())
    at = bindparam("b_at", type_=J.msg_at.type)
    effort = bindparam("b_effort", type_=J.seq.type)
    values: dict[str, Any] = {"seq": J.seq + 1}
    for name in MARKS:
        taken = mark == name
        if name != LAST_MARK:
            taken = and_(taken, J[f"{name}_seq"].is_(None))
        for suffix, new in (("seq", J.seq + 1), ("at", at), ("effort", effort)):
            column = J[f"{name}_{suffix}"]
            values[column.name] = case((taken, new), else_=column)
    return (update(journey_marks)
            .where(J.conversation_id == bindparam("b_cid", type_=J.conversation_id.type))
            .values(values))


def backfill(conn: Connection) -> int:
    """Build the rows of the conversations that have none from their touchpoints, as
    `advance` would have (the same marks, order and effort); returns how many were added."""
    result = conn.execute(_backfill())
    return int(result.rowcount or 0)


def _mark_expression() -> ColumnElement[Any]:
    """carebot.domain.journey.mark_of, in SQL."""
    t = Touchpoint
    helpful = t.details["helpful"].as_boolean()
    csat = t.details["kind"].as_string() == "csat"
    return case(
        (t.kind == "message_in", literal("msg")),
        (t.kind == "faq_answer", literal("ans")),
        (t.kind == "faq_suggest", literal("sug")),
        (and_(t.kind == "faq_feedback", helpful), literal("yes")),
        (and_(t.kind == "faq_feedback", ~helpful), literal("no")),
        (t.kind == "handoff", literal("hand")),
        (t.kind == "assigned", literal("asg")),
        (t.kind == "resolved", literal("res")),
        (and_(t.kind == "survey_sent", csat), literal("sent")),
        (and_(t.kind == "survey_answered", csat, t.score >= CSAT_POSITIVE), literal("sat")),
    )


def _backfill() -> Insert:
    t = Touchpoint
    log = (
        select(
            t.conversation_id.label("cid"),
            t.id,
            t.created_at,
            _mark_expression().label("mark"),
            func.sum(t.effort).over(partition_by=t.conversation_id, order_by=t.id)
            .label("effort"),
        )
        .where(t.conversation_id.is_not(None))
        .subquery("log")
    )
    marked = (
        select(
            log.c.cid, log.c.created_at, log.c.mark, log.c.effort,
            func.row_number().over(partition_by=log.c.cid, order_by=log.c.id).label("seq"),
        )
        .where(log.c.mark.is_not(None))
        .subquery("marked")
    )
    m = marked.c
    # Time and effort never decrease along a conversation's log, so the first (last)
    # occurrence's are the smallest (largest) of its kind.
    columns: list[ColumnElement[Any]] = [m.cid, func.count().label("seq")]
    for name in MARKS:
        pick = func.max if name == LAST_MARK else func.min
        for suffix, value in (("seq", m.seq), ("at", m.created_at), ("effort", m.effort)):
            columns.append(pick(case((m.mark == name, value))).label(f"{name}_{suffix}"))
    per_conversation = select(*columns).group_by(m.cid).subquery("per_conversation")
    p = per_conversation.c
    c = Conversation
    names = ["conversation_id", "seq"] + [
        f"{name}_{suffix}" for name in MARKS for suffix in ("seq", "at", "effort")
    ]
    rows = (
        select(c.id, func.coalesce(p.seq, 0), *(p[n] for n in names[2:]))
        .select_from(c)
        .outerjoin(per_conversation, p.cid == c.id)
        .where(~exists().where(J.conversation_id == c.id))
    )
    return insert(journey_marks).from_select(names, rows)
