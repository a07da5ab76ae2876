"""The customer journey: how far the conversations opened in the period got, step by step,
with the wait before each step and the effort spent so far, read from each conversation's
journey marks (carebot.db.journey_marks, kept as its touchpoints are written).

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

from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import journey_marks
from carebot.stats.period import StatsInputError
from carebot.stats.scope import C, Scope, StatsQuery, period_dict
from carebot.stats.sql import distributions, ratio

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
J = journey_marks.c


def _steps(scope: Scope) -> Any:
    """A CTE: one row per conversation of the opened cohort, with `<step>_seq`, `_at` and
    `_effort` for each step it reached (NULL for the others), from its journey marks
    (carebot.domain.journey; `seq` is the marks' order in the log)."""

    def seq(mark: str) -> Any:
        return J[f"{mark}_seq"]

    def earliest(mark: str, other: str) -> Any:
        """The mark exists, came before any handoff and before `other`."""
        got, rival = seq(mark), seq(other)
        return and_(got.is_not(None), or_(seq("hand").is_(None), got < seq("hand")),
                    or_(rival.is_(None), got < rival))

    rules: dict[str, tuple[str, Any]] = {
        "first_message": ("msg", None),
        "bot_answered": ("ans", earliest("ans", "sug")),
        "bot_suggested": ("sug", earliest("sug", "ans")),
        "helpful_yes": ("yes", earliest("yes", "no")),
        "helpful_no": ("no", earliest("no", "yes")),
        "queued": ("hand", None),
        "assigned": ("asg", None),
        "resolved": ("res", C.status == "resolved"),
        "surveyed": ("sent", None),
        "satisfied": ("sat", None),
    }
    columns: list[Any] = [J.conversation_id.label("cid")]
    for step, (mark, rule) in rules.items():
        for suffix in ("seq", "at", "effort"):
            value = J[f"{mark}_{suffix}"]
            columns.append((value if rule is None else case((rule, value))).label(
                f"{step}_{suffix}"))
    return (
        select(*columns)
        .join(C, C.id == J.conversation_id)
        .where(*scope.opened())
        .cte("journey_steps")
    )


def _reached(scope: Scope) -> Any:
    """A subquery: (step, cid, seq, reached_at, wait_ms, effort) for each step reached; the
    wait runs from the conversation's latest earlier step (by the log's order) to this one.
    Times never decrease along the log, so that step's time is the latest of the earlier
    steps' times, read from the same row: no window over the cohort's steps is needed."""
    steps = _steps(scope)
    c = steps.c

    def wait(step: str) -> Any:
        earlier = [case((c[f"{other}_seq"] < c[f"{step}_seq"], c[f"{other}_at"]))
                   for other in STEPS if other != step]
        return scope.sql.ms_between(scope.sql.latest_of(*earlier), c[f"{step}_at"])

    return union_all(*(
        select(literal(step).label("step"), c.cid, c[f"{step}_seq"].label("seq"),
               c[f"{step}_at"].label("reached_at"), wait(step).label("wait_ms"),
               c[f"{step}_effort"].label("effort"))
        .where(c[f"{step}_seq"].is_not(None))
        for step in STEPS
    )).subquery("reached")


def _paths(scope: Scope) -> Select[Any]:
    """How many conversations reached each combination of steps (a bit per step, in STEPS
    order), with their effort at each step summed."""
    steps = _steps(scope)
    path = sum(
        (case((steps.c[f"{step}_seq"].is_not(None), 1 << i), else_=0)
         for i, step in enumerate(STEPS)),
        start=literal(0),
    ).label("path")
    return select(
        path, func.count(), *(func.coalesce(func.sum(steps.c[f"{step}_effort"]), 0)
                              for step in STEPS),
    ).group_by(path)


async def journey(session: AsyncSession, query: StatsQuery) -> dict[str, Any]:
    """Steps (count, wait, effort, where conversations ended) and the flows between them.

    Two statements over the cohort's journey marks (one row per conversation): the
    combinations of steps reached, from which the counts, flows and ends follow, and the
    waits' percentiles per step."""
    scope = await Scope.build(session, query)
    counts = dict.fromkeys(STEPS, 0)
    ended = dict.fromkeys(STEPS, 0)
    effort_sums = dict.fromkeys(STEPS, 0)
    flows: dict[tuple[str, str], int] = {}
    for bits, n, *efforts in await session.execute(_paths(scope)):
        path = [step for i, step in enumerate(STEPS) if int(bits) >> i & 1]
        if not path:
            continue
        n = int(n)
        for step, effort in zip(STEPS, efforts, strict=True):
            effort_sums[step] += int(effort)
        for step in path:
            counts[step] += n
        for a, b in pairwise(path):
            flows[(a, b)] = flows.get((a, b), 0) + n
        ended[path[-1]] += n
    reached = _reached(scope)
    waits = await distributions(session, select(
        reached.c.step.label("g"), reached.c.wait_ms.label("v")), ["g"])
    first = counts["first_message"]
    items = []
    for n_stage, stage in enumerate(STAGES, start=1):
        for step in stage:
            wait = waits.get((step,))
            items.append({
                "key": step,
                "label": LABELS[step],
                "stage": n_stage,
                "count": counts[step],
                "share_of_first": ratio(counts[step], first),
                "ended_here": ended[step],
                "wait_ms": {"median": None if wait is None else _round(wait.median, 1),
                            "p90": None if wait is None else _round(wait.p90, 1),
                            "count": 0 if wait is None else wait.count},
                "effort": {"mean": _round(effort_sums[step] / counts[step]
                                          if counts[step] else None, 4),
                           "count": counts[step]},
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
