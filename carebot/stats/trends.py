"""The dashboard's charts over time: outcomes, CSAT and CES, response and resolution time
percentiles per local hour, day or week, and the volume by hour of the week.

The series are columnar (one array per figure, aligned with `labels`), the shape charting
libraries take. Every bucket of the period is present, zeros included; each figure follows
the summary's anchor (carebot.stats.metrics): outcomes and resolution time by `resolved_at`,
human first response by `opened_at`, surveys by `sent_at`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, case, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.stats.outcomes import OUTCOMES, outcome_of
from carebot.stats.period import Period, pick_unit, slots
from carebot.stats.scope import C, S, Scope, StatsQuery, T, period_dict
from carebot.stats.sql import Distribution, distributions, ratio
from carebot.stats.survey_counts import SurveyCounts, survey_good

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def bucket_of(scope: Scope, column: Any, unit: str) -> ColumnElement[str]:
    """The label of the local bucket a timestamp falls in (as `slots` labels them)."""
    if unit == "hour":
        return scope.sql.local_hour(column, scope.period).label("b")
    return scope.sql.local_bucket(column, scope.period, unit).label("b")


async def trends(session: AsyncSession, query: StatsQuery, requested: str) -> dict[str, Any]:
    """The chart series of the period in buckets of `requested` (auto, hour, day, week)."""
    unit = pick_unit(query.period, requested)
    buckets = slots(query.period, unit)
    labels = [b.label for b in buckets]
    index = {label: i for i, label in enumerate(labels)}
    scope = await Scope.build(session, query)

    def zeros() -> list[int]:
        return [0] * len(labels)

    def put(series: list[Any], label: str, value: Any) -> None:
        i = index.get(label)
        if i is not None:  # a label outside the period's buckets is impossible; never fail
            series[i] = value

    opened = zeros()
    rows = select(bucket_of(scope, C.opened_at, unit)).where(*scope.opened()).subquery("o")
    for label, n in await session.execute(select(rows.c.b, func.count()).group_by(rows.c.b)):
        put(opened, label, int(n))

    outcomes = {name: zeros() for name in OUTCOMES}
    resolved = zeros()
    rows = select(bucket_of(scope, C.resolved_at, unit), outcome_of(scope).label("o")).where(
        *scope.resolved()
    ).subquery("r")
    for label, outcome, n in await session.execute(
        select(rows.c.b, rows.c.o, func.count()).group_by(rows.c.b, rows.c.o)
    ):
        put(outcomes[outcome], label, int(n))
    for name in OUTCOMES:
        for i, n in enumerate(outcomes[name]):
            resolved[i] += n

    surveys: dict[str, dict[str, SurveyCounts]] = {"csat": {}, "ces": {}}
    answered = S.status == "answered"
    sent = select(
        bucket_of(scope, S.sent_at, unit), S.kind,
        case((answered, 1), else_=0).label("answered"),
        case((survey_good(), 1), else_=0).label("good"),
        case((answered, S.score), else_=0).label("score"),
    ).where(scope.during(S.sent_at), *scope.selected(S.conversation_id)).subquery("s")
    for label, kind, *counts in await session.execute(
        select(sent.c.b, sent.c.kind, func.count(), func.sum(sent.c.answered),
               func.sum(sent.c.good), func.sum(sent.c.score)).group_by(sent.c.b, sent.c.kind)
    ):
        if kind in surveys:
            surveys[kind][label] = SurveyCounts(*(int(v or 0) for v in counts))

    values: CompoundSelect[Any] = union_all(
        select(literal("first_response").label("g"), bucket_of(scope, C.opened_at, unit),
               C.first_human_response_ms.label("v")).where(*scope.opened()),
        select(literal("resolution_time"), bucket_of(scope, C.resolved_at, unit),
               scope.resolution_ms()).where(*scope.resolved()),
    )
    dists = await distributions(session, values, ["g", "b"])

    def percentiles(name: str) -> dict[str, list[Any]]:
        got = [dists.get((name, label), Distribution.empty()) for label in labels]
        return {"p50": [_ms(d.median) for d in got], "p90": [_ms(d.p90) for d in got],
                "count": [d.count for d in got]}

    def survey_series(kind: str, good: str) -> dict[str, list[Any]]:
        got = [surveys[kind].get(label, SurveyCounts(0, 0, 0, 0)) for label in labels]
        return {
            "sent": [s.sent for s in got],
            "answered": [s.answered for s in got],
            f"{good}_rate": [ratio(s.good, s.answered) for s in got],
            "mean": [round(s.score_sum / s.answered, 4) if s.answered else None for s in got],
        }

    return {
        "period": period_dict(query),
        "bucket": unit,
        "labels": labels,
        "from": [query.period.local(b.start).isoformat() for b in buckets],
        "to": [query.period.local(b.end).isoformat() for b in buckets],
        "opened": opened,
        "resolved": resolved,
        "outcomes": outcomes,
        "csat": survey_series("csat", "satisfied"),
        "ces": survey_series("ces", "easy"),
        "first_response_ms": percentiles("first_response"),
        "resolution_time_ms": percentiles("resolution_time"),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def heatmap(session: AsyncSession, query: StatsQuery) -> dict[str, Any]:
    """Conversations opened and handoffs per local weekday and hour (7 x 24), for staffing."""
    scope = await Scope.build(session, query)
    period: Period = query.period
    grids: dict[str, list[list[int]]] = {
        "opened": [[0] * 24 for _ in DAYS], "handoffs": [[0] * 24 for _ in DAYS],
    }
    dow, hour = scope.sql.local_weekday_hour(C.opened_at, period)
    opened = select(dow.label("d"), hour.label("h")).where(*scope.opened()).subquery("o")
    t_dow, t_hour = scope.sql.local_weekday_hour(T.created_at, period)
    handoffs = select(t_dow.label("d"), t_hour.label("h")).where(
        T.kind == "handoff", scope.during(T.created_at), *scope.selected(T.conversation_id)
    ).subquery("h")
    for name, rows in (("opened", opened), ("handoffs", handoffs)):
        for d, h, n in await session.execute(
            select(rows.c.d, rows.c.h, func.count()).group_by(rows.c.d, rows.c.h)
        ):
            grids[name][int(d)][int(h)] = int(n)
    return {
        "period": period_dict(query),
        "days": list(DAYS),
        "hours": list(range(24)),
        "opened": grids["opened"],
        "handoffs": grids["handoffs"],
        "totals": {name: sum(map(sum, grid)) for name, grid in grids.items()},
    }
