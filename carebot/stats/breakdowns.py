"""The statistics broken down: per local day or week (time series), per agent and per FAQ.

Every count follows the definitions of carebot.stats.metrics (cohorts, events in the period,
surveys sent in the period), restricted to each bucket, agent or FAQ.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    and_,
    case,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from carebot.db.models import Agent, FaqEntry, Touchpoint
from carebot.domain.journey import CSAT_POSITIVE
from carebot.stats.confusions import confusions
from carebot.stats.outcomes import outcome_of
from carebot.stats.period import Bucket, Period, buckets
from carebot.stats.scope import C, S, Scope, StatsQuery, T, period_dict
from carebot.stats.segments import resolved_handle_segments, sla_breaches
from carebot.stats.sql import Distribution, count_if, distributions, ratio
from carebot.stats.survey_counts import (
    NO_SURVEYS,
    SurveyCounts,
    survey_aggregates,
    survey_dict,
    survey_good,
)

# The bot's decisions after a customer message: an FAQ answer is "followed by a handoff" when
# the next of these in its conversation is a handoff.
BOT_TURN_KINDS = ("faq_answer", "faq_suggest", "handoff", "resolved")


# --- time series ----------------------------------------------------------------------------


async def timeseries(session: AsyncSession, query: StatsQuery, unit: str) -> dict[str, Any]:
    """The main counts and rates per local day or week, every bucket present (zeros too)."""
    slots = buckets(query.period, unit)
    scope = await Scope.build(session, query, resolved_cohort=True)
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

    outcome = outcome_of(scope)
    resolved = select(
        bucket_of(C.resolved_at),
        case((outcome == "bot_confirmed", 1), else_=0).label("confirmed"),
        case((outcome == "bot_assumed", 1), else_=0).label("assumed"),
        # Contained as in the summary: the bot resolved it, confirmed or assumed.
        case((outcome.in_(("bot_confirmed", "bot_assumed")), 1), else_=0).label("contained"),
        case((scope.first_contact_resolution(resolved_cohort=True), 1), else_=0).label("fcr"),
    ).where(*scope.resolved()).subquery("r")
    for b, n, confirmed, assumed, contained, fcr in await session.execute(
        select(resolved.c.b, func.count(), func.sum(resolved.c.confirmed),
               func.sum(resolved.c.assumed), func.sum(resolved.c.contained),
               func.sum(resolved.c.fcr)).group_by(resolved.c.b)
    ):
        per[b].update(resolved=int(n), confirmed_resolutions=int(confirmed or 0),
                      assumed_resolutions=int(assumed or 0), contained=int(contained or 0),
                      fcr=int(fcr or 0))

    events = select(bucket_of(T.created_at), T.conversation_id).where(
        T.kind == "reopened", scope.during(T.created_at),
        *scope.selected(T.conversation_id),
    ).subquery("e")
    for b, convs in await session.execute(
        select(events.c.b, func.count(events.c.conversation_id.distinct())).group_by(events.c.b)
    ):
        per[b]["reopened"] = int(convs)
    # SLA breaches by when they happened (entering the queue + the SLA), as the summary
    # counts them; bucketed here, a period has few enough of them.
    for label, n in await breaches_per_bucket(session, scope, slots):
        per[label]["sla_breaches"] = n

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
               scope.bot_first_response_ms().label("v")).where(*scope.opened()),
        select(literal("human_first_response"), bucket_of(C.opened_at),
               C.first_human_response_ms).where(*scope.opened()),
        select(literal("resolution_time"), bucket_of(C.resolved_at),
               scope.resolution_ms()).where(*scope.resolved()),
    )
    dists = await distributions(session, values, ["g", "b"])
    return {
        "period": period_dict(query),
        "bucket": unit,
        "series": [_bucket_row(query.period, b, per[b.label], dists) for b in slots],
    }


async def breaches_per_bucket(
    session: AsyncSession, scope: Scope, slots: list[Bucket]
) -> list[tuple[str, int]]:
    """(bucket label, SLA breaches) for the buckets with any, breaches placed by the
    moment they happened (the queue entry + the SLA)."""
    sla = timedelta(seconds=scope.query.sla_seconds)
    starts = [b.start for b in slots]
    counts: dict[str, int] = {}
    for (entered_at,) in await session.execute(
        select(sla_breaches(scope).subquery("sla").c.entered_at)
    ):
        i = bisect_right(starts, entered_at + sla) - 1
        if 0 <= i < len(slots):
            counts[slots[i].label] = counts.get(slots[i].label, 0) + 1
    return sorted(counts.items())


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

    * resolved — conversations of the resolved cohort the agent resolved: whoever closed it
      is credited (a supervisor closing a colleague's conversation, or one straight from the
      queue); one with no resolver on record is counted in a last `unassigned` row
      (`agent_id` null), so the column adds up to the summary's `agents.resolved`; bot,
      timeout and erasure resolutions are nobody's;
    * first response — conversations of the opened cohort whose first agent reply was the
      agent's, from the agent's own (latest) assignment to that reply: a conversation
      transferred to them unanswered is measured from when they got it (the summary's human
      first response runs from the handoff);
    * handle time — the agent's own assignments in conversations of the resolved cohort,
      summed per conversation (a transferred conversation counts for both agents);
    * CSAT — CSAT surveys sent in the period that snapshot the agent as the resolver;
    * handled — conversations of the resolved cohort the agent held at least once (those
      their handle time sums over);
    * resolution time — opened → resolved of the conversations they resolved (resolved
      cohort);
    * transfers — transfers the agent made in the period (to another agent or the queue);
    * reopen — the agent's resolutions in the period (`resolved` touchpoints) and how many
      of them the customer reopened afterwards (the conversation's next resolution or reopen
      is a reopen), as of now.
    """
    scope = await Scope.build(session, query, resolved_cohort=True)
    rows: dict[int, dict[str, Any]] = {}

    def row(agent_id: int) -> dict[str, Any]:
        return rows.setdefault(agent_id, {"agent_id": agent_id, "resolved": 0})

    # Credited to the person who resolved it, also one closed straight from the queue;
    # with no resolver on record: the `unassigned` row. Together they add up to the
    # summary's agents.resolved.
    unassigned_resolved = 0
    for agent_id, n in await session.execute(
        select(C.resolved_agent_id, func.count())
        .where(*scope.resolved(), C.resolved_by == "agent")
        .group_by(C.resolved_agent_id)
    ):
        if agent_id is None:
            unassigned_resolved += int(n)
        else:
            row(agent_id)["resolved"] += int(n)

    firsts = (
        select(
            T.id,
            T.conversation_id,
            T.agent_id,
            T.created_at,
            func.row_number().over(partition_by=T.conversation_id, order_by=T.id).label("rn"),
        )
        # A conversation opened in the period has no touchpoint from before it: reading
        # the log from the period's start is the same and much less.
        .where(T.kind == "agent_reply", *scope.from_period_start(T.created_at),
               T.conversation_id.in_(select(C.id).where(*scope.opened())))
        .subquery("firsts")
    )
    # The agent's own first response runs from their (latest) assignment before the reply:
    # a conversation transferred to them unanswered is theirs from when they got it. One who
    # replied without holding it (a manager) is measured from the handoff.
    mine = aliased(Touchpoint)
    assigned_at = (
        select(func.max(mine.created_at))
        .where(mine.conversation_id == firsts.c.conversation_id, mine.kind == "assigned",
               mine.agent_id == firsts.c.agent_id, mine.id < firsts.c.id)
        .scalar_subquery()
    )
    first_values = (
        select(
            firsts.c.agent_id.label("a"),
            scope.sql.ms_between(func.coalesce(assigned_at, C.handed_off_at, C.queued_at),
                                 firsts.c.created_at).label("v"),
        )
        .select_from(firsts)
        .join(C, C.id == firsts.c.conversation_id)
        .where(firsts.c.rn == 1)
        .subquery("first_values")
    )
    segs = resolved_handle_segments(scope).subquery("segs")
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
            select(literal("resolution_time"), C.resolved_agent_id, scope.resolution_ms())
            .where(*scope.resolved(), C.resolved_agent_id.is_not(None)),
        ),
        ["g", "a"],
    )
    transfers, reopens = await _agent_events(session, scope)

    csat = await session.execute(
        select(S.agent_id, *survey_aggregates())
        .where(S.kind == "csat", S.agent_id.is_not(None), scope.during(S.sent_at),
               *scope.selected(S.conversation_id))
        .group_by(S.agent_id)
    )
    surveys = {aid: SurveyCounts(*(int(v) for v in rest)) for aid, *rest in csat}
    ids = set(rows) | {a for _g, a in dists} | set(surveys) | set(transfers) | set(reopens)
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
        item["handled"] = item["handle_time_ms"]["count"]
        item["resolution_time_ms"] = dists.get(
            ("resolution_time", agent_id), Distribution.empty()).as_dict()
        item["transfers"] = transfers.get(agent_id, 0)
        resolutions, reopened = reopens.get(agent_id, (0, 0))
        item["reopen"] = {"resolutions": resolutions, "reopened": reopened,
                          "rate": ratio(reopened, resolutions)}
        items.append(item)
    items.sort(key=lambda i: (-i["resolved"], i["name"] or "", i["agent_id"]))
    if unassigned_resolved:
        items.append(_unassigned_row(unassigned_resolved))
    return {"period": period_dict(query), "items": items}


def _unassigned_row(resolved: int) -> dict[str, Any]:
    """Resolutions no agent is credited with (no resolver on record), last in the table so
    the resolved column adds up to the summary."""
    empty = Distribution.empty().as_dict()
    return {
        "agent_id": None, "resolved": resolved, "name": "unassigned", "unassigned": True,
        "first_response_ms": empty, "handle_time_ms": empty,
        "csat": survey_dict(NO_SURVEYS, "satisfied"), "handled": 0,
        "resolution_time_ms": empty, "transfers": 0,
        "reopen": {"resolutions": 0, "reopened": 0, "rate": None},
    }


async def _agent_events(
    session: AsyncSession, scope: Scope
) -> tuple[dict[int, int], dict[int, tuple[int, int]]]:
    """Per agent: transfers made in the period, and (resolutions in the period, of them
    reopened afterwards)."""
    transfers: dict[int, int] = {}
    for agent_id, n in await session.execute(
        select(T.agent_id, func.count())
        .where(T.kind == "transfer", T.agent_id.is_not(None), scope.during(T.created_at),
               *scope.selected(T.conversation_id))
        .group_by(T.agent_id)
    ):
        if agent_id is not None:
            transfers[agent_id] = int(n)
    closes = (
        select(
            T.kind, T.agent_id, T.created_at,
            func.lead(T.kind).over(partition_by=T.conversation_id, order_by=T.id).label("next"),
        )
        .where(
            T.kind.in_(("resolved", "reopened")),
            *scope.from_period_start(T.created_at),
            *scope.selected(T.conversation_id),
        )
        .subquery("closes")
    )
    reopens: dict[int, tuple[int, int]] = {}
    for agent_id, n, reopened in await session.execute(
        select(closes.c.agent_id, func.count(), count_if(closes.c.next == "reopened"))
        .where(closes.c.kind == "resolved", closes.c.agent_id.is_not(None),
               scope.during(closes.c.created_at))
        .group_by(closes.c.agent_id)
    ):
        if agent_id is not None:
            reopens[agent_id] = (int(n), int(reopened))
    return transfers, reopens


# --- per FAQ --------------------------------------------------------------------------------


async def faqs(session: AsyncSession, query: StatsQuery) -> dict[str, Any]:
    """One row per FAQ answered (or rated) in the period, the most answered first.

    * answered — `faq_answer` touchpoints in the period;
    * helpful / not_helpful — "Did this help?" Yes / No in the period;
    * followed_by_handoff — answers in the period after which the bot's next step in that
      conversation was a handoff (a weak answer: the customer still needed a person);
    * CSAT after — CSAT surveys sent in the period on conversations that got this answer
      before the survey;
    * confusions — the other FAQs it was most often offered together with or followed by
      (carebot.stats.confusions).
    """
    scope = await Scope.build(session, query)
    rows: dict[str, dict[str, Any]] = {}

    def row(faq_id: str) -> dict[str, Any]:
        return rows.setdefault(faq_id, {
            "faq_id": faq_id, "answered": 0, "helpful": 0, "not_helpful": 0,
            "followed_by_handoff": 0,
        })

    turns = (
        select(
            T.kind, T.faq_id, T.created_at,
            func.lead(T.kind).over(partition_by=T.conversation_id, order_by=T.id).label("next"),
        )
        .where(
            T.kind.in_(BOT_TURN_KINDS),
            *scope.from_period_start(T.created_at),
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
    surveyed = and_(S.kind == "csat", scope.during(S.sent_at),
                    *scope.selected(S.conversation_id))
    # No answer is older than its conversation: the answers are read from when the earliest
    # surveyed conversation opened, not through the whole log.
    answers_from = (
        select(func.min(C.opened_at))
        .where(C.id.in_(select(S.conversation_id).where(surveyed)))
        .scalar_subquery()
    )
    after = (
        select(T.faq_id, S.id, S.status, S.score)
        .join(S, and_(S.conversation_id == T.conversation_id, T.created_at <= S.sent_at))
        .where(T.kind == "faq_answer", T.created_at >= answers_from, surveyed)
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

    confused = await confusions(session, scope) if rows else {}
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
            "confusions": confused.get(faq_id, []),
        })
    items.sort(key=lambda i: (-i["answered"], i["faq_id"]))
    return {"period": period_dict(query), "items": items}
