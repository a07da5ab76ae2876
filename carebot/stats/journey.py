"""The customer journey: how far the conversations opened in the period got, step by step,
read from the touchpoint log, with the wait before each step and the effort spent so far.

Steps, in order (a conversation reaches some of them; each counts once per conversation):

1. **first_message** — the conversation's first customer message (every conversation);
2. **bot_answered** / **bot_suggested** — the bot's first reply before any handoff was an FAQ
   answer / a list of suggestions (a conversation handed off before the bot replied goes
   straight to `queued`);
3. **helpful_yes** / **helpful_no** — the first answer to "Did this help?" before any handoff;
4. **queued** — the first handoff: the conversation entered the queue for a person;
5. **assigned** — its first assignment to an agent;
6. **resolved** — it is resolved now (its last resolution);
7. **surveyed** — a CSAT question was sent;
8. **satisfied** — a CSAT answer of 4 or 5.

The conversations are followed to the present: one opened in the period and resolved after it
counts as resolved. Each step's time is its first touchpoint (the last `resolved` for
*resolved*); the **wait** at a step runs from the conversation's latest earlier step (by the
log's order) to this one, so it is never negative; the **effort** at a step is the
touchpoints' effort points summed from the start of the conversation to that step, averaged
over the conversations at the step. The flows between consecutive steps a conversation
reached make a Sankey diagram; `ended_here` counts the conversations whose furthest step it
is.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, or_, select, type_coerce, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.stats.period import StatsInputError
from carebot.stats.scope import C, Scope, StatsQuery, T, period_dict
from carebot.stats.sql import ratio
from carebot.stats.survey_counts import CSAT_POSITIVE

STAGES: tuple[tuple[str, ...], ...] = (
    ("first_message",),
    ("bot_answered", "bot_suggested"),
    ("helpful_yes", "helpful_no"),
    ("queued",),
    ("assigned",),
    ("resolved",),
    ("surveyed",),
    ("satisfied",),
)
STEPS: tuple[str, ...] = tuple(step for stage in STAGES for step in stage)
LABELS = {
    "first_message": "First message",
    "bot_answered": "Bot answered",
    "bot_suggested": "Bot suggested FAQs",
    "helpful_yes": "Helpful: yes",
    "helpful_no": "Helpful: no",
    "queued": "Queued for a person",
    "assigned": "Assigned to an agent",
    "resolved": "Resolved",
    "surveyed": "Surveyed (CSAT)",
    "satisfied": "Satisfied (CSAT 4-5)",
}
# The columns of a conversation listed at a step (JSON and CSV).
ITEM_COLUMNS = ("conversation_id", "customer_id", "channel", "status", "opened_at",
                "reached_at", "wait_ms", "effort")
# The touchpoints that mark a step.
MARK_KINDS = ("message_in", "faq_answer", "faq_suggest", "faq_feedback", "handoff", "assigned",
              "resolved", "survey_sent", "survey_answered")


def _cohort(scope: Scope) -> Select[Any]:
    return select(C.id).where(*scope.opened())


def _steps(scope: Scope) -> Any:
    """A CTE: one row per conversation of the opened cohort, with the touchpoint id of each
    step it reached (NULL for the others)."""
    helpful = T.details["helpful"].as_boolean()
    csat = T.details["kind"].as_string() == "csat"

    def first(condition: Any) -> Any:
        return func.min(case((condition, T.id)))

    marks = (
        select(
            T.conversation_id.label("cid"),
            first(T.kind == "message_in").label("msg"),
            first(T.kind == "faq_answer").label("ans"),
            first(T.kind == "faq_suggest").label("sug"),
            first(and_(T.kind == "faq_feedback", helpful)).label("yes"),
            first(and_(T.kind == "faq_feedback", ~helpful)).label("no"),
            first(T.kind == "handoff").label("hand"),
            first(T.kind == "assigned").label("asg"),
            func.max(case((T.kind == "resolved", T.id))).label("res"),
            first(and_(T.kind == "survey_sent", csat)).label("sent"),
            first(and_(T.kind == "survey_answered", csat, T.score >= CSAT_POSITIVE)).label("sat"),
        )
        .where(T.kind.in_(MARK_KINDS), T.conversation_id.in_(_cohort(scope)))
        .group_by(T.conversation_id)
        .subquery("marks")
    )
    m = marks.c

    def before_handoff(col: Any) -> Any:
        return or_(m.hand.is_(None), col < m.hand)

    def earliest(col: Any, other: Any) -> Any:
        """`col` exists, came before any handoff and before `other`."""
        return and_(col.is_not(None), before_handoff(col), or_(other.is_(None), col < other))

    return (
        select(
            m.cid,
            m.msg.label("first_message"),
            case((earliest(m.ans, m.sug), m.ans)).label("bot_answered"),
            case((earliest(m.sug, m.ans), m.sug)).label("bot_suggested"),
            case((earliest(m.yes, m.no), m.yes)).label("helpful_yes"),
            case((earliest(m.no, m.yes), m.no)).label("helpful_no"),
            m.hand.label("queued"),
            m.asg.label("assigned"),
            case((C.status == "resolved", m.res)).label("resolved"),
            m.sent.label("surveyed"),
            m.sat.label("satisfied"),
        )
        .join(C, C.id == m.cid)
        .cte("journey_steps")
    )


def _reached(scope: Scope) -> Any:
    """A subquery: (step, cid, tid, reached_at, wait_ms, effort) for each step reached."""
    steps = _steps(scope)
    unpivot = union_all(*(
        select(literal(step).label("step"), steps.c.cid, steps.c[step].label("tid"))
        .where(steps.c[step].is_not(None))
        for step in STEPS
    )).subquery("unpivot")
    log = (
        select(
            T.id,
            T.created_at,
            func.sum(T.effort)
            .over(partition_by=T.conversation_id, order_by=T.id)
            .label("effort"),
        )
        .where(T.conversation_id.in_(_cohort(scope)),
               or_(T.effort != 0, T.kind.in_(MARK_KINDS)))
        .subquery("log")
    )
    ordered = (
        select(
            unpivot.c.step,
            unpivot.c.cid,
            unpivot.c.tid,
            log.c.created_at.label("reached_at"),
            func.lag(log.c.created_at)
            .over(partition_by=unpivot.c.cid, order_by=unpivot.c.tid)
            .label("prev_at"),
            log.c.effort,
        )
        .join(log, log.c.id == unpivot.c.tid)
        .subquery("ordered")
    )
    return select(
        ordered.c.step,
        ordered.c.cid,
        ordered.c.tid,
        ordered.c.reached_at,
        scope.sql.ms_between(ordered.c.prev_at, ordered.c.reached_at).label("wait_ms"),
        ordered.c.effort,
    ).subquery("reached")


# The marks read in the one pass: (name, first or last) -> the step rules below.
_MARKS = ("msg", "ans", "sug", "yes", "no", "hand", "asg", "res", "sent", "sat")


def _one_pass(scope: Scope) -> Select[Any]:
    """One row per conversation of the opened cohort: its status and, for each mark, the
    touchpoint id, time and running effort of its first occurrence (the last for `res`),
    from a single scan of the cohort's log. Time and running effort never decrease along
    the log, so the minimum of each over a kind's touchpoints is the first one's."""
    helpful = T.details["helpful"].as_boolean()
    csat = T.details["kind"].as_string() == "csat"
    log = (
        select(
            T.conversation_id, T.id, T.kind, T.created_at,
            case((T.kind == "faq_feedback", helpful)).label("helpful"),
            case((T.kind.in_(("survey_sent", "survey_answered")), csat)).label("csat"),
            T.score,
            func.sum(T.effort).over(partition_by=T.conversation_id, order_by=T.id)
            .label("effort"),
        )
        .where(T.conversation_id.in_(_cohort(scope)),
               *scope.id_range(T.conversation_id, _cohort(scope)),
               or_(T.effort != 0, T.kind.in_(MARK_KINDS)))
        .subquery("log")
    )
    g = log.c
    conditions = {
        "msg": g.kind == "message_in",
        "ans": g.kind == "faq_answer",
        "sug": g.kind == "faq_suggest",
        "yes": and_(g.kind == "faq_feedback", g.helpful),
        "no": and_(g.kind == "faq_feedback", ~g.helpful),
        "hand": g.kind == "handoff",
        "asg": g.kind == "assigned",
        "res": g.kind == "resolved",
        "sent": and_(g.kind == "survey_sent", g.csat),
        "sat": and_(g.kind == "survey_answered", g.csat, g.score >= CSAT_POSITIVE),
    }
    columns: list[Any] = [g.conversation_id.label("cid")]
    for name in _MARKS:
        pick = func.max if name == "res" else func.min
        for value in (g.id, g.created_at, g.effort):
            columns.append(type_coerce(pick(case((conditions[name], value))), value.type))
    marks = select(*columns).group_by(g.conversation_id).subquery("marks")
    return select(marks, C.status).join(C, C.id == marks.c.cid).where(
        *scope.id_range(C.id, _cohort(scope)))


def _steps_of(row: Any) -> dict[str, tuple[int, datetime, int]]:
    """step -> (touchpoint id, time, effort so far) of each step the conversation reached."""
    m: dict[str, tuple[int, datetime, int] | None] = {}
    for i, name in enumerate(_MARKS):
        tid, at, effort = row[1 + 3 * i: 4 + 3 * i]
        m[name] = None if tid is None else (int(tid), at, int(effort or 0))
    hand = m["hand"]

    def earliest(mark: str, other: str) -> tuple[int, datetime, int] | None:
        """The mark, when it came before any handoff and before `other`."""
        got, rival = m[mark], m[other]
        if got is None or (hand is not None and got[0] >= hand[0]):
            return None
        return got if rival is None or got[0] < rival[0] else None

    found = {
        "first_message": m["msg"],
        "bot_answered": earliest("ans", "sug"),
        "bot_suggested": earliest("sug", "ans"),
        "helpful_yes": earliest("yes", "no"),
        "helpful_no": earliest("no", "yes"),
        "queued": hand,
        "assigned": m["asg"],
        "resolved": m["res"] if row[-1] == "resolved" else None,
        "surveyed": m["sent"],
        "satisfied": m["sat"],
    }
    return {step: mark for step, mark in found.items() if mark is not None}


def _percentile(ordered: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks, as PostgreSQL's percentile_cont."""
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


async def journey(session: AsyncSession, query: StatsQuery) -> dict[str, Any]:
    """Steps (count, wait, effort, where conversations ended) and the flows between them.

    One statement reads each conversation's steps (`_one_pass`); counting them, the flows
    and the waits' percentiles over a period's conversations (one small row each) is then
    cheaper here than a second and third pass over the touchpoint log in the database."""
    scope = await Scope.build(session, query)
    counts = dict.fromkeys(STEPS, 0)
    ended = dict.fromkeys(STEPS, 0)
    flows: dict[tuple[str, str], int] = {}
    waits: dict[str, list[float]] = {step: [] for step in STEPS}
    efforts: dict[str, list[int]] = {step: [] for step in STEPS}
    for row in await session.execute(_one_pass(scope)):
        reached = _steps_of(row)
        if not reached:
            continue
        path = [step for step in STEPS if step in reached]
        for step in path:
            counts[step] += 1
            efforts[step].append(reached[step][2])
        for a, b in pairwise(path):
            flows[(a, b)] = flows.get((a, b), 0) + 1
        ended[path[-1]] += 1
        in_log_order = sorted(reached.items(), key=lambda item: item[1][0])
        for (_before, (_, then, _e)), (step, (_, at, _f)) in pairwise(in_log_order):
            # Whole milliseconds rounded half up, as the SQL of the conversation lists.
            waits[step].append(math.floor((at - then).total_seconds() * 1000 + 0.5))
    first = counts["first_message"]
    items = []
    for n_stage, stage in enumerate(STAGES, start=1):
        for step in stage:
            wait = sorted(waits[step])
            effort = efforts[step]
            items.append({
                "key": step,
                "label": LABELS[step],
                "stage": n_stage,
                "count": counts[step],
                "share_of_first": ratio(counts[step], first),
                "ended_here": ended[step],
                "wait_ms": {"median": _round(_percentile(wait, 0.5), 1),
                            "p90": _round(_percentile(wait, 0.9), 1), "count": len(wait)},
                "effort": {"mean": _round(sum(effort) / len(effort) if effort else None, 4),
                           "count": len(effort)},
            })
    order = {step: i for i, step in enumerate(STEPS)}
    return {
        "period": period_dict(query),
        "conversations": first,
        "steps": items,
        "flows": [
            {"from": a, "to": b, "count": n}
            for (a, b), n in sorted(flows.items(), key=lambda f: (order[f[0][0]],
                                                                  order[f[0][1]]))
        ],
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _step_rows(scope: Scope, step: str) -> Select[Any]:
    reached = _reached(scope)
    return (
        select(
            C.id, C.customer_id, C.channel, C.status, C.opened_at, reached.c.reached_at,
            reached.c.wait_ms, reached.c.effort,
        )
        .join(reached, reached.c.cid == C.id)
        .where(reached.c.step == step)
        .order_by(reached.c.reached_at.desc(), C.id.desc())
    )


def check_step(step: str) -> None:
    """A step name the journey knows (StatsInputError otherwise)."""
    if step not in STEPS:
        raise StatsInputError(f"'step' must be one of {', '.join(STEPS)}")


def _item(query: StatsQuery, row: Any) -> dict[str, Any]:
    cid, customer, channel, status, opened_at, reached_at, wait_ms, effort = row
    p = query.period
    return {
        "conversation_id": cid,
        "customer_id": customer,
        "channel": channel,
        "status": status,
        "opened_at": p.local(opened_at).isoformat(),
        "reached_at": p.local(reached_at).isoformat(),
        "wait_ms": None if wait_ms is None else int(wait_ms),
        "effort": int(effort or 0),
    }


async def step_conversations(
    session: AsyncSession, query: StatsQuery, step: str, limit: int, offset: int
) -> dict[str, Any]:
    """The conversations at one step of the journey, the latest to reach it first."""
    check_step(step)
    scope = await Scope.build(session, query)
    rows = _step_rows(scope, step).subquery("at_step")
    total = int(await session.scalar(select(func.count()).select_from(rows)) or 0)
    page = await session.execute(_step_rows(scope, step).limit(limit).offset(offset))
    return {
        "period": period_dict(query),
        "step": step,
        "total": total,
        "limit": limit,
        "offset": offset,
        "items": [_item(query, r) for r in page],
    }


async def step_rows(
    session: AsyncSession, query: StatsQuery, step: str
) -> AsyncIterator[dict[str, Any]]:
    """Every conversation at one step (for the CSV export), streamed."""
    check_step(step)
    scope = await Scope.build(session, query)
    result = await session.stream(_step_rows(scope, step))
    async for row in result:
        yield _item(query, row)
