"""Resolution statistics for managers, computed with SQL from conversations and touchpoints.

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

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    and_,
    case,
    func,
    literal,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from carebot.db.models import Agent, FaqEntry, Touchpoint
from carebot.stats.knowledge_gaps import DEFAULT_THRESHOLD, GapQuestion, cluster
from carebot.stats.period import Bucket, Period, buckets
from carebot.stats.scope import WORK_MEM, C, S, Scope, StatsQuery, T, period_dict
from carebot.stats.segments import handle_per_conversation, handle_segments, queue_waits
from carebot.stats.sql import Distribution, count_if, distributions, ratio
from carebot.stats.survey_counts import (
    CSAT_POSITIVE,
    NO_SURVEYS,
    SurveyCounts,
    survey_counts,
    survey_dict,
    survey_good,
)

# The bot's decisions after a customer message: an FAQ answer is "followed by a handoff" when
# the next of these in its conversation is a handoff.
BOT_TURN_KINDS = ("faq_answer", "faq_suggest", "handoff", "resolved")
GAP_REASONS = ("no_match", "failed_turns")
DEFAULT_GAP_SAMPLE = 5000


# --- summary --------------------------------------------------------------------------------


async def summary(session: AsyncSession, query: StatsQuery) -> dict[str, Any]:
    """Every headline metric for the period and filters (see the module docstring)."""
    scope = await Scope.build(session, query)

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
            count_if(C.resolved_by == "bot"),
            count_if(C.resolved_by == "timeout"),
            count_if(C.resolved_by == "agent"),
            count_if(C.handoffs == 0),
            count_if(C.reopen_count > 0),
            func.coalesce(func.sum(C.transfers), 0),
            func.coalesce(func.sum(C.effort_score), 0),
        ).where(*scope.resolved()))).one()
        fcr = int(await s.scalar(
            select(func.count()).where(*scope.resolved(), scope.first_contact_resolution())
        ) or 0)
        return opened, resolved, fcr, await distributions(s, _conversation_times(scope), ["g"])

    async def handle(s: AsyncSession) -> dict[tuple[Any, ...], Distribution]:
        per_conv = handle_per_conversation(scope).subquery("handle")
        return await distributions(
            s, select(literal("handle_time").label("g"), per_conv.c.v.label("v")), ["g"]
        )

    async def waits(s: AsyncSession) -> dict[tuple[Any, ...], Distribution]:
        stays = queue_waits(scope).subquery("waits")
        return await distributions(
            s, select(literal("queue_wait").label("g"), stays.c.v.label("v")), ["g"]
        )

    (opened, resolved, fcr, dists), handle_dist, wait_dist = await _concurrently(
        session, scope, counts, handle, waits
    )
    n_opened, customers, involved, by_faq, handed_off = (int(v or 0) for v in opened)
    n_resolved, confirmed, assumed, by_agent, contained, reopened_res, transfers, effort = (
        int(v or 0) for v in resolved
    )
    all_dists: dict[tuple[Any, ...], Distribution] = {**dists, **handle_dist, **wait_dist}

    def dist(name: str) -> dict[str, Any]:
        return all_dists.get((name,), Distribution.empty()).as_dict()

    reasons: dict[str, int] = {}
    reopened_convs = sla_breaches = 0
    for kind, reason, n, convs in await _event_counts(session, scope):
        if kind == "handoff":
            reasons[reason or "unknown"] = reasons.get(reason or "unknown", 0) + int(n)
        elif kind == "reopened":
            reopened_convs += int(convs)
        elif kind == "sla_breached":
            sla_breaches += int(n)

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
        },
        "agents": {"resolved": by_agent},
        "first_response_ms": {"bot": dist("bot_first_response"),
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
        "sla": {"breaches": sla_breaches, "sla_seconds": query.sla_seconds},
    }


def _conversation_times(scope: Scope) -> CompoundSelect[Any]:
    """(g, v) rows of the durations kept on the conversations, in one UNION ALL."""
    sql = scope.sql
    return union_all(
        select(literal("bot_first_response").label("g"), C.first_bot_response_ms.label("v"))
        .where(*scope.opened()),
        select(literal("human_first_response"), C.first_human_response_ms)
        .where(*scope.opened()),
        select(literal("resolution_time"), sql.ms_between(C.opened_at, C.resolved_at))
        .where(*scope.resolved()),
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
            await other.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
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
            T.kind.in_(("handoff", "reopened", "sla_breached")),
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


# --- time series ----------------------------------------------------------------------------


async def timeseries(session: AsyncSession, query: StatsQuery, unit: str) -> dict[str, Any]:
    """The main counts and rates per local day or week, every bucket present (zeros too)."""
    slots = buckets(query.period, unit)
    scope = await Scope.build(session, query)
    sql = scope.sql
    per: dict[str, dict[str, Any]] = {b.label: {} for b in slots}

    def bucket_of(column: Any) -> ColumnElement[str]:
        return sql.local_bucket(column, query.period, unit).label("b")

    opened = select(
        bucket_of(C.opened_at),
        case((C.handoffs > 0, 1), else_=0).label("handed_off"),
        case((C.first_bot_response_ms.is_not(None), 1), else_=0).label("involved"),
    ).where(*scope.opened()).subquery("o")
    for b, n, handed, involved in await session.execute(
        select(opened.c.b, func.count(), func.sum(opened.c.handed_off),
               func.sum(opened.c.involved)).group_by(opened.c.b)
    ):
        per[b].update(opened=int(n), handed_off=int(handed or 0), bot_involved=int(involved or 0))

    resolved = select(
        bucket_of(C.resolved_at),
        case((C.resolved_by == "bot", 1), else_=0).label("confirmed"),
        case((C.resolved_by == "timeout", 1), else_=0).label("assumed"),
        case((C.handoffs == 0, 1), else_=0).label("contained"),
        case((scope.first_contact_resolution(), 1), else_=0).label("fcr"),
    ).where(*scope.resolved()).subquery("r")
    for b, n, confirmed, assumed, contained, fcr in await session.execute(
        select(resolved.c.b, func.count(), func.sum(resolved.c.confirmed),
               func.sum(resolved.c.assumed), func.sum(resolved.c.contained),
               func.sum(resolved.c.fcr)).group_by(resolved.c.b)
    ):
        per[b].update(resolved=int(n), confirmed_resolutions=int(confirmed or 0),
                      assumed_resolutions=int(assumed or 0), contained=int(contained or 0),
                      fcr=int(fcr or 0))

    events = select(bucket_of(T.created_at), T.kind, T.conversation_id).where(
        T.kind.in_(("reopened", "sla_breached")), scope.during(T.created_at),
        *scope.selected(T.conversation_id),
    ).subquery("e")
    for b, kind, n, convs in await session.execute(
        select(events.c.b, events.c.kind, func.count(),
               func.count(events.c.conversation_id.distinct())).group_by(events.c.b,
                                                                       events.c.kind)
    ):
        if kind == "reopened":
            per[b]["reopened"] = int(convs)
        else:
            per[b]["sla_breaches"] = int(n)

    csat = select(
        bucket_of(S.sent_at),
        case((S.status == "answered", 1), else_=0).label("answered"),
        case((survey_good(), 1), else_=0).label("good"),
        case((S.status == "answered", S.score), else_=0).label("score"),
    ).where(S.kind == "csat", scope.during(S.sent_at), *scope.selected(S.conversation_id)
            ).subquery("s")
    for b, sent, answered, good, scores in await session.execute(
        select(csat.c.b, func.count(), func.sum(csat.c.answered), func.sum(csat.c.good),
               func.sum(csat.c.score)).group_by(csat.c.b)
    ):
        per[b].update(csat=survey_dict(
            SurveyCounts(int(sent), int(answered or 0), int(good or 0), int(scores or 0)),
            "satisfied",
        ))

    values: CompoundSelect[Any] = union_all(
        select(literal("bot_first_response").label("g"), bucket_of(C.opened_at),
               C.first_bot_response_ms.label("v")).where(*scope.opened()),
        select(literal("human_first_response"), bucket_of(C.opened_at),
               C.first_human_response_ms).where(*scope.opened()),
        select(literal("resolution_time"), bucket_of(C.resolved_at),
               sql.ms_between(C.opened_at, C.resolved_at)).where(*scope.resolved()),
    )
    dists = await distributions(session, values, ["g", "b"])
    return {
        "period": period_dict(query),
        "bucket": unit,
        "series": [_bucket_row(query.period, b, per[b.label], dists) for b in slots],
    }


def _bucket_row(
    period: Period, b: Bucket, counts: dict[str, Any], dists: dict[tuple[Any, ...], Distribution]
) -> dict[str, Any]:
    opened, resolved = counts.get("opened", 0), counts.get("resolved", 0)
    handed, contained, fcr = (counts.get(k, 0) for k in ("handed_off", "contained", "fcr"))

    def median(name: str) -> float | None:
        d = dists.get((name, b.label))
        return round(d.median, 1) if d is not None and d.median is not None else None

    return {
        "bucket": b.label,
        "from": period.local(b.start).isoformat(),
        "to": period.local(b.end).isoformat(),
        "opened": opened,
        "resolved": resolved,
        "reopened": counts.get("reopened", 0),
        "bot_involved": counts.get("bot_involved", 0),
        "handed_off": handed,
        "handoff_rate": ratio(handed, opened),
        "confirmed_resolutions": counts.get("confirmed_resolutions", 0),
        "assumed_resolutions": counts.get("assumed_resolutions", 0),
        "contained": contained,
        "containment_rate": ratio(contained, resolved),
        "fcr": fcr,
        "fcr_rate": ratio(fcr, resolved),
        "sla_breaches": counts.get("sla_breaches", 0),
        "csat": counts.get("csat", survey_dict(NO_SURVEYS, "satisfied")),
        "median_first_response_ms": {"bot": median("bot_first_response"),
                                     "human": median("human_first_response")},
        "median_resolution_time_ms": median("resolution_time"),
    }


# --- per agent ------------------------------------------------------------------------------


async def agents(session: AsyncSession, query: StatsQuery) -> dict[str, Any]:
    """One row per agent who resolved, handled, first answered or was rated in the period.

    * resolved — conversations of the resolved cohort whose assigned agent at resolution is
      the agent (bot and timeout resolutions have none);
    * first response — conversations of the opened cohort whose first agent reply was the
      agent's: their human first response time (handoff → first agent reply);
    * handle time — the agent's own assignments in conversations of the resolved cohort,
      summed per conversation (a transferred conversation counts for both agents);
    * CSAT — CSAT surveys sent in the period that snapshot the agent as the resolver.
    """
    scope = await Scope.build(session, query)
    rows: dict[int, dict[str, Any]] = {}

    def row(agent_id: int) -> dict[str, Any]:
        return rows.setdefault(agent_id, {"agent_id": agent_id, "resolved": 0})

    for agent_id, n in await session.execute(
        select(C.assigned_agent_id, func.count())
        .where(*scope.resolved(), C.assigned_agent_id.is_not(None))
        .group_by(C.assigned_agent_id)
    ):
        if agent_id is not None:
            row(agent_id)["resolved"] = int(n)

    firsts = (
        select(
            T.conversation_id,
            T.agent_id,
            func.row_number().over(partition_by=T.conversation_id, order_by=T.id).label("rn"),
        )
        .where(T.kind == "agent_reply",
               T.conversation_id.in_(select(C.id).where(*scope.opened())))
        .subquery("firsts")
    )
    first_values = (
        select(firsts.c.agent_id.label("a"), C.first_human_response_ms.label("v"))
        .select_from(firsts)
        .join(C, C.id == firsts.c.conversation_id)
        .where(firsts.c.rn == 1)
        .subquery("first_values")
    )
    segs = handle_segments(scope, select(C.id).where(*scope.resolved())).subquery("segs")
    handle_values = (
        select(segs.c.agent_id.label("a"), func.sum(segs.c.ms).label("v"))
        .group_by(segs.c.agent_id, segs.c.conversation_id)
        .subquery("handle_values")
    )
    dists = await distributions(
        session,
        union_all(
            select(literal("first_response").label("g"), first_values.c.a, first_values.c.v),
            select(literal("handle_time"), handle_values.c.a, handle_values.c.v),
        ),
        ["g", "a"],
    )

    csat = await session.execute(
        select(
            S.agent_id,
            func.count(),
            count_if(S.status == "answered"),
            count_if(survey_good()),
            func.coalesce(func.sum(case((S.status == "answered", S.score), else_=0)), 0),
        )
        .where(S.kind == "csat", S.agent_id.is_not(None), scope.during(S.sent_at),
               *scope.selected(S.conversation_id))
        .group_by(S.agent_id)
    )
    surveys = {aid: SurveyCounts(*(int(v) for v in rest)) for aid, *rest in csat}
    ids = set(rows) | {a for _g, a in dists} | set(surveys)
    names: dict[int, str] = {}
    if ids:
        for agent_id, name in await session.execute(
            select(Agent.id, Agent.name).where(Agent.id.in_(ids))
        ):
            names[agent_id] = name
    items = []
    for agent_id in sorted(ids, key=lambda a: (names.get(a, ""), a)):
        item = row(agent_id)
        item["name"] = names.get(agent_id)
        item["first_response_ms"] = dists.get(
            ("first_response", agent_id), Distribution.empty()).as_dict()
        item["handle_time_ms"] = dists.get(
            ("handle_time", agent_id), Distribution.empty()).as_dict()
        item["csat"] = survey_dict(surveys.get(agent_id, NO_SURVEYS), "satisfied")
        items.append(item)
    items.sort(key=lambda i: (-i["resolved"], i["name"] or "", i["agent_id"]))
    return {"period": period_dict(query), "items": items}


# --- per FAQ --------------------------------------------------------------------------------


async def faqs(session: AsyncSession, query: StatsQuery) -> dict[str, Any]:
    """One row per FAQ answered (or rated) in the period, the most answered first.

    * answered — `faq_answer` touchpoints in the period;
    * helpful / not_helpful — "Did this help?" Yes / No in the period;
    * followed_by_handoff — answers in the period after which the bot's next step in that
      conversation was a handoff (a weak answer: the customer still needed a person);
    * CSAT after — CSAT surveys sent in the period on conversations that got this answer
      before the survey.
    """
    scope = await Scope.build(session, query)
    rows: dict[str, dict[str, Any]] = {}

    def row(faq_id: str) -> dict[str, Any]:
        return rows.setdefault(faq_id, {
            "faq_id": faq_id, "answered": 0, "helpful": 0, "not_helpful": 0,
            "followed_by_handoff": 0,
        })

    answer = aliased(Touchpoint)
    turns = (
        select(
            T.kind, T.faq_id, T.created_at,
            func.lead(T.kind).over(partition_by=T.conversation_id, order_by=T.id).label("next"),
        )
        .where(
            T.kind.in_(BOT_TURN_KINDS),
            T.conversation_id.in_(select(answer.conversation_id).where(
                answer.kind == "faq_answer", scope.during(answer.created_at))),
            *scope.selected(T.conversation_id),
        )
        .subquery("turns")
    )
    for faq_id, n, weak in await session.execute(
        select(turns.c.faq_id, func.count(), count_if(turns.c.next == "handoff"))
        .where(turns.c.kind == "faq_answer", scope.during(turns.c.created_at))
        .group_by(turns.c.faq_id)
    ):
        row(faq_id).update(answered=int(n), followed_by_handoff=int(weak))

    feedback = select(
        T.faq_id, case((T.details["helpful"].as_boolean(), 1), else_=0).label("yes")
    ).where(
        T.kind == "faq_feedback", T.faq_id.is_not(None), scope.during(T.created_at),
        *scope.selected(T.conversation_id),
    ).subquery("fb")
    for faq_id, n, yes in await session.execute(
        select(feedback.c.faq_id, func.count(), func.sum(feedback.c.yes))
        .group_by(feedback.c.faq_id)
    ):
        row(faq_id).update(helpful=int(yes or 0), not_helpful=int(n) - int(yes or 0))

    # Each (FAQ, survey) pair once, however often the FAQ was answered before the survey.
    after = (
        select(T.faq_id, S.id, S.status, S.score)
        .join(S, and_(S.conversation_id == T.conversation_id, T.created_at <= S.sent_at))
        .where(T.kind == "faq_answer", S.kind == "csat", scope.during(S.sent_at),
               *scope.selected(S.conversation_id))
        .distinct()
        .subquery("after")
    )
    csat: dict[str, SurveyCounts] = {}
    for faq_id, sent, answered, good, scores in await session.execute(
        select(
            after.c.faq_id,
            func.count(),
            count_if(after.c.status == "answered"),
            count_if(and_(after.c.status == "answered", after.c.score >= CSAT_POSITIVE)),
            func.coalesce(func.sum(case((after.c.status == "answered", after.c.score),
                                        else_=0)), 0),
        ).group_by(after.c.faq_id)
    ):
        csat[faq_id] = SurveyCounts(int(sent), int(answered), int(good), int(scores))
        row(faq_id)

    entries = {
        fid: (question, tags) for fid, question, tags in await session.execute(
            select(FaqEntry.id, FaqEntry.question, FaqEntry.tags).where(FaqEntry.id.in_(rows))
        )
    } if rows else {}
    items = []
    for faq_id, item in rows.items():
        question, tags = entries.get(faq_id, (None, []))
        items.append({
            **item,
            "question": question,
            "tags": list(tags or []),
            "helpful_rate": ratio(item["helpful"], item["helpful"] + item["not_helpful"]),
            "handoff_rate": ratio(item["followed_by_handoff"], item["answered"]),
            "csat_after": survey_dict(csat.get(faq_id, NO_SURVEYS), "satisfied"),
        })
    items.sort(key=lambda i: (-i["answered"], i["faq_id"]))
    return {"period": period_dict(query), "items": items}


# --- knowledge gaps -------------------------------------------------------------------------


async def knowledge_gaps(
    session: AsyncSession,
    query: StatsQuery,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    sample: int = DEFAULT_GAP_SAMPLE,
    limit: int = 50,
) -> dict[str, Any]:
    """Questions that ended in a handoff because the bot had no answer, grouped by similarity.

    The texts of `no_match` and `failed_turns` handoffs in the period (the latest `sample` of
    them) are fetched with SQL and clustered in Python (see carebot.stats.knowledge_gaps).
    """
    scope = await Scope.build(session, query)
    reason = T.details["reason"].as_string()
    question = T.details["text"].as_string()
    rows = (await session.execute(
        select(question, T.created_at, reason, T.details["top_faq_id"].as_string())
        .where(T.kind == "handoff", scope.during(T.created_at), reason.in_(GAP_REASONS),
               question.is_not(None), *scope.selected(T.conversation_id))
        .order_by(T.id.desc())
        .limit(sample + 1)
    )).all()
    truncated = len(rows) > sample
    questions = [GapQuestion(t, at, r, top) for t, at, r, top in rows[:sample] if t and t.strip()]
    clusters = await asyncio.to_thread(cluster, questions, threshold)
    p = query.period
    return {
        "period": period_dict(query),
        "questions": len(questions),
        "truncated": truncated,
        "similarity_threshold": threshold,
        "clusters": [
            {
                "question": c.question,
                "count": c.count,
                "examples": c.examples,
                "last_seen": p.local(c.last_seen).isoformat() if c.last_seen else None,
                "reasons": dict(sorted(c.reasons.items())),
                "nearest_faqs": [f for f, _n in c.nearest_faqs.most_common(3)],
            }
            for c in clusters[:limit]
        ],
    }
