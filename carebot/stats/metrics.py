"""Resolution statistics for managers, computed with SQL from conversations and touchpoints.

This module computes the headline summary; `breakdowns` (per day or week, agent and FAQ),
`knowledge_gaps` and `csv_export` apply the same definitions.

Definitions (they are part of the product; the README and the API description repeat them).
A period is [from, to) in UTC instants, computed from local dates in the requested time zone.
Filters (channel, agent, FAQ, tag) select conversations; every metric is then computed over
the selected conversations only. Each metric is anchored on one timestamp:

* **opened cohort** — conversations whose `opened_at` is in the period: `opened`,
  `unique_customers`, bot involvement, answered by FAQ, handoff rate, first response times.
* **resolved cohort** — conversations whose current `resolved_at` is in the period (a reopened
  conversation counts once, when it was last resolved; one still open is not resolved):
  `resolved`, confirmed / assumed bot resolutions, containment, resolution time, handle time,
  first contact resolution, reopen rate, transfers and effort per conversation.
* **events in the period** — touchpoints whose `created_at` is in the period: `reopened`
  (distinct conversations), SLA breaches, handoffs by reason, queue waits (assignments from
  the queue), FAQ answers and feedback, knowledge gaps.
* **surveys sent in the period** (`sent_at`): CSAT and CES, answered or not.

Durations are milliseconds with count, total, mean, median and p90 (linear interpolation
between the closest ranks, as PostgreSQL's percentile_cont).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import CompoundSelect, case, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.stats.outcomes import OUTCOMES, outcome_counts
from carebot.stats.scope import C, Scope, StatsQuery, T, period_dict, prepare
from carebot.stats.segments import handle_per_conversation, queue_waits, sla_breaches
from carebot.stats.sql import Distribution, count_if, distributions, ratio
from carebot.stats.survey_counts import NO_SURVEYS, survey_counts, survey_dict


async def summary(
    session: AsyncSession, query: StatsQuery, *, segments: bool = True
) -> dict[str, Any]:
    """Every headline metric for the period and filters (see the module docstring).

    `segments` False leaves out what the dashboard's tiles do not show (reported as empty):
    handle time and queue waits (two window queries over the touchpoint log), the bot's
    first response, handoffs by reason and reopened conversations."""
    scope = await Scope.build(session, query, resolved_cohort=True)

    async def counts(s: AsyncSession) -> tuple[Any, Any, int, dict[tuple[Any, ...], Distribution]]:
        opened = (await s.execute(select(
            func.count(),
            func.count(C.customer_id.distinct()),
            count_if(C.first_bot_response_ms.is_not(None)),
            count_if(C.bot_answers > 0),
            count_if(C.handoffs > 0),
        ).where(*scope.opened()))).one()
        resolved = (await s.execute(select(
            func.count(),
            count_if(C.resolved_by == "agent"),
            count_if(C.reopen_count > 0),
            func.coalesce(func.sum(C.transfers), 0),
            func.coalesce(func.sum(C.effort_score), 0),
            *outcome_counts(scope),
        ).where(*scope.resolved()))).one()
        fcr = int(await s.scalar(
            select(func.count()).where(
                *scope.resolved(), scope.first_contact_resolution(resolved_cohort=True))
        ) or 0)
        times = _conversation_times(scope, bot=segments)
        return opened, resolved, fcr, await distributions(s, times, ["g"])

    async def handle(s: AsyncSession) -> dict[tuple[Any, ...], Distribution]:
        per_conv = handle_per_conversation(scope).subquery("handle")
        return await distributions(
            s, select(literal("handle_time").label("g"), per_conv.c.v.label("v")), ["g"]
        )

    async def waits(s: AsyncSession) -> tuple[dict[tuple[Any, ...], Distribution], int]:
        breaches = sla_breaches(scope).subquery("breaches")
        n_breaches = int(await s.scalar(select(func.count()).select_from(breaches)) or 0)
        if not segments:
            return {}, n_breaches
        stays = queue_waits(scope).subquery("waits")
        return await distributions(
            s, select(literal("queue_wait").label("g"), stays.c.v.label("v")), ["g"]
        ), n_breaches

    # Without segments no handle time: not even a connection for it.
    done = await _concurrently(session, scope, counts, waits, *([handle] if segments else []))
    (opened, resolved, fcr, dists), (wait_dist, sla_breached) = done[0], done[1]
    handle_dist: dict[tuple[Any, ...], Distribution] = done[2] if segments else {}
    n_opened, customers, involved, by_faq, handed_off = (int(v or 0) for v in opened)
    n_resolved, by_agent, reopened_res, transfers, effort, *per_outcome = (
        int(v or 0) for v in resolved)
    ends = dict(zip(OUTCOMES, per_outcome, strict=True))
    confirmed, assumed, abandoned = ends["bot_confirmed"], ends["bot_assumed"], ends["abandoned"]
    # Contained: the bot resolved it, confirmed or assumed. Closures by a person (from the
    # queue, as spam, ...), abandoned conversations and other timeouts are not.
    contained = confirmed + assumed
    all_dists: dict[tuple[Any, ...], Distribution] = {**dists, **handle_dist, **wait_dist}

    def dist(name: str, digits: int = 1) -> dict[str, Any]:
        return all_dists.get((name,), Distribution.empty()).as_dict(digits)

    reasons: dict[str, int] = {}
    reopened_convs = 0
    for kind, reason, n, convs in await _event_counts(session, scope) if segments else ():
        if kind == "handoff":
            reasons[reason or "unknown"] = reasons.get(reason or "unknown", 0) + int(n)
        elif kind == "reopened":
            reopened_convs += int(convs)

    surveys = await survey_counts(session, scope)
    csat, ces = surveys.get("csat", NO_SURVEYS), surveys.get("ces", NO_SURVEYS)
    return {
        "period": period_dict(query),
        "volume": {
            "opened": n_opened,
            "resolved": n_resolved,
            "reopened": reopened_convs,
            "unique_customers": customers,
        },
        "bot": {
            "involved": involved,
            "involvement_rate": ratio(involved, n_opened),
            "answered_by_faq": by_faq,
            "answered_by_faq_rate": ratio(by_faq, n_opened),
            "handed_off": handed_off,
            "handoff_rate": ratio(handed_off, n_opened),
            "handoffs_by_reason": dict(sorted(reasons.items())),
            "confirmed_resolutions": confirmed,
            "assumed_resolutions": assumed,
            "contained": contained,
            "containment_rate": ratio(contained, n_resolved),
            "abandoned": abandoned,
            "abandonment_rate": ratio(abandoned, n_resolved),
        },
        "outcomes": ends,
        "agents": {"resolved": by_agent},
        "first_response_ms": {"bot": dist("bot_first_response", 3),
                              "human": dist("human_first_response")},
        "resolution_time_ms": dist("resolution_time"),
        "handle_time_ms": dist("handle_time"),
        "queue_wait_ms": dist("queue_wait"),
        "first_contact_resolution": {
            "count": fcr,
            "rate": ratio(fcr, n_resolved),
            "repeat_window_days": query.repeat_window.total_seconds() / 86400,
        },
        "reopen": {"resolved_after_reopen": reopened_res, "rate": ratio(reopened_res, n_resolved)},
        "transfers": {"total": transfers, "per_conversation": ratio(transfers, n_resolved)},
        "effort": {"total": effort, "per_conversation": ratio(effort, n_resolved)},
        "csat": survey_dict(csat, "satisfied"),
        "ces": survey_dict(ces, "easy"),
        "sla": {"breaches": sla_breached, "sla_seconds": query.sla_seconds},
    }


def _conversation_times(scope: Scope, *, bot: bool = True) -> CompoundSelect[Any]:
    """(g, v) rows of the durations kept on the conversations, in one UNION ALL (`bot`
    False: without the bot's first response, which no tile shows)."""
    bot_first = [
        select(literal("bot_first_response").label("g"),
               scope.bot_first_response_ms().label("v")).where(*scope.opened()),
    ] if bot else []
    return union_all(
        *bot_first,
        select(literal("human_first_response").label("g"),
               C.first_human_response_ms.label("v")).where(*scope.opened()),
        select(literal("resolution_time"), scope.resolution_ms()).where(*scope.resolved()),
    )


async def _concurrently(
    session: AsyncSession, scope: Scope, *works: Callable[[AsyncSession], Awaitable[Any]]
) -> list[Any]:
    """Run independent read queries; on PostgreSQL in parallel, the first on `session` and
    each other one on a connection of its own.

    The handle-time and queue-wait queries each sort a window over the touchpoint log; run
    one after the other they dominate the summary's time on a large history.
    """
    if scope.sql.sqlite:  # one file, one writer: nothing to gain from more connections
        return [await work(session) for work in works]

    async def own(work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        async with AsyncSession(session.bind) as other:
            await prepare(other)
            return await work(other)

    first, *rest = works
    return list(await asyncio.gather(first(session), *(own(work) for work in rest)))


async def _event_counts(session: AsyncSession, scope: Scope) -> Sequence[Any]:
    """(kind, handoff reason, touchpoints, conversations) for the counted events."""
    events = (
        select(
            T.kind.label("kind"),
            case((T.kind == "handoff", T.details["reason"].as_string())).label("reason"),
            T.conversation_id,
        )
        .where(
            T.kind.in_(("handoff", "reopened")),
            scope.during(T.created_at),
            *scope.selected(T.conversation_id),
        )
        .subquery("events")
    )
    rows = await session.execute(
        select(
            events.c.kind, events.c.reason, func.count(),
            func.count(events.c.conversation_id.distinct()),
        ).group_by(events.c.kind, events.c.reason)
    )
    return rows.all()
