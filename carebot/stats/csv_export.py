"""The per-conversation CSV export: one row per conversation with every field the summary uses.

A conversation is exported when it was opened or resolved in the period (and matches the
filters), so a spreadsheet can recompute both cohorts of the summary: filter on
`opened_in_period` or `resolved_in_period`. Rows come in pages of conversation ids (keyset
pagination, each page its own short transaction), so an export of any size holds neither the
whole result in memory nor a database connection for the length of a slow download.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.stats.outcomes import outcome_of
from carebot.stats.period import Period
from carebot.stats.scope import C, S, Scope, StatsQuery, T
from carebot.stats.segments import handle_segments, queue_stays, queue_waits

PAGE_SIZE = 2000

# (column, meaning) — the meanings are repeated in the API description.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("conversation_id", "id"),
    ("customer_id", "the customer (one per person, across channels)"),
    ("channel", "where the conversation happened"),
    ("status", "bot, queued, assigned or resolved at export time"),
    ("opened_at", "when it was opened (ISO 8601 in the requested time zone)"),
    ("resolved_at", "when it was last resolved; empty while open"),
    ("opened_in_period", "1 when opened in the period (opened cohort)"),
    ("resolved_in_period", "1 when last resolved in the period (resolved cohort)"),
    ("resolved_by", "bot (customer said Yes), timeout, agent or system"),
    ("resolution_code", "the agent's resolution code"),
    ("bot_resolution", "confirmed (the customer said Yes), assumed (the bot answered and the "
                       "customer went silent) or empty"),
    ("outcome", "bot_confirmed, bot_assumed, agent, timeout or abandoned; empty while open"),
    ("assigned_agent_id", "the agent who had it last (kept after resolution)"),
    ("first_agent_id", "the agent who sent the first agent reply"),
    ("customer_messages", "messages from the customer"),
    ("bot_answers", "FAQ answers the bot gave"),
    ("agent_messages", "replies from agents"),
    ("bot_involved", "1 when the bot answered or offered suggestions"),
    ("answered_by_faq", "1 when the bot gave at least one FAQ answer"),
    ("faq_ids", "FAQs answered, ';'-separated"),
    ("handoffs", "handoffs to a person"),
    ("handed_off", "1 when handed off at least once"),
    ("contained", "1 when resolved by the bot (confirmed or assumed); empty while open"),
    ("transfers", "transfers between agents or back to the queue"),
    ("reopen_count", "times reopened"),
    ("effort_score", "touchpoint effort summed"),
    ("first_bot_response_ms", "receipt of the customer's message to the end of the transaction "
                              "writing the bot's first reply (to the microsecond)"),
    ("first_human_response_ms", "the first handoff to the first agent reply"),
    ("resolution_time_ms", "opened to resolved (a timeout: to when the customer went silent); "
                           "empty while open"),
    ("handle_time_ms", "assigned to resolved/transferred/handed back, summed over assignments"),
    ("queue_wait_ms", "time waited in the queue before assignments, summed"),
    ("queue_stays", "assignments from the queue"),
    ("sla_breaches", "queue stays longer than the SLA (one still waiting: up to now)"),
    ("fcr", "1 first contact resolution, 0 not; empty while open"),
    ("csat_surveys_sent", "CSAT surveys sent"),
    ("csat_score", "the latest answered CSAT score (1-5)"),
    ("ces_score", "the latest answered CES score (1-7)"),
)
HEADER = [name for name, _meaning in COLUMNS]


def _page_query(scope: Scope, page: Any) -> Select[Any]:
    """Every export column for the conversations of `page` (a CTE of ids), by id."""
    sql = scope.sql
    ids = select(page.c.id)
    segs = handle_segments(scope, ids).subquery("segs")
    handle = (
        select(segs.c.conversation_id, func.sum(segs.c.ms).label("ms"))
        .group_by(segs.c.conversation_id)
        .subquery("handle")
    )
    waits_src = queue_waits(scope, ids).subquery("waits_src")
    waits = (
        select(waits_src.c.conversation_id, func.sum(waits_src.c.v).label("ms"),
               func.count().label("n"))
        .group_by(waits_src.c.conversation_id)
        .subquery("waits")
    )
    events = (
        select(T.conversation_id, sql.group_concat(T.faq_id).label("faqs"))
        .where(T.kind == "faq_answer", T.conversation_id.in_(ids))
        .group_by(T.conversation_id)
        .subquery("events")
    )
    stays = queue_stays(scope, conversations=ids).subquery("stays")
    breaches = (
        select(stays.c.conversation_id, func.count().label("sla"))
        .where(stays.c.ms > int(scope.query.sla_seconds * 1000))
        .group_by(stays.c.conversation_id)
        .subquery("breaches")
    )
    replies = select(
        T.conversation_id, T.agent_id,
        func.row_number().over(partition_by=T.conversation_id, order_by=T.id).label("rn"),
    ).where(T.kind == "agent_reply", T.conversation_id.in_(ids)).subquery("replies")
    first_agent = (
        select(replies.c.conversation_id, replies.c.agent_id)
        .where(replies.c.rn == 1)
        .subquery("first_agent")
    )
    ranked = select(
        S.conversation_id, S.kind, S.score,
        func.row_number().over(partition_by=(S.conversation_id, S.kind),
                               order_by=S.id.desc()).label("rn"),
    ).where(S.status == "answered", S.conversation_id.in_(ids)).subquery("ranked")
    scores = (
        select(
            ranked.c.conversation_id,
            func.max(case((ranked.c.kind == "csat", ranked.c.score))).label("csat"),
            func.max(case((ranked.c.kind == "ces", ranked.c.score))).label("ces"),
        )
        .where(ranked.c.rn == 1)
        .group_by(ranked.c.conversation_id)
        .subquery("scores")
    )
    sent = (
        select(S.conversation_id, func.count().label("n"))
        .where(S.kind == "csat", S.sent_at.is_not(None), S.conversation_id.in_(ids))
        .group_by(S.conversation_id)
        .subquery("sent")
    )
    resolved = C.resolved_at.is_not(None)
    return (
        select(
            C.id, C.customer_id, C.channel, C.status, C.opened_at, C.resolved_at,
            case((scope.during(C.opened_at), 1), else_=0),
            case((and_(resolved, scope.during(C.resolved_at)), 1), else_=0),
            C.resolved_by, C.resolution_code, case((resolved, outcome_of(scope, ids))),
            C.assigned_agent_id, first_agent.c.agent_id,
            C.customer_messages, C.bot_answers, C.agent_messages,
            events.c.faqs, C.handoffs, C.transfers, C.reopen_count, C.effort_score,
            C.first_bot_response_ms, scope.bot_first_response_ms(), C.first_human_response_ms,
            case((resolved, scope.resolution_ms())),
            handle.c.ms, waits.c.ms, waits.c.n, breaches.c.sla,
            case((resolved, case((scope.first_contact_resolution(), 1), else_=0))),
            sent.c.n, scores.c.csat, scores.c.ces,
        )
        .outerjoin(handle, handle.c.conversation_id == C.id)
        .outerjoin(waits, waits.c.conversation_id == C.id)
        .outerjoin(events, events.c.conversation_id == C.id)
        .outerjoin(breaches, breaches.c.conversation_id == C.id)
        .outerjoin(first_agent, first_agent.c.conversation_id == C.id)
        .outerjoin(scores, scores.c.conversation_id == C.id)
        .outerjoin(sent, sent.c.conversation_id == C.id)
        .join(page, page.c.id == C.id)
        .order_by(C.id)
    )


def _when(period: Period, value: datetime | None) -> str:
    return period.local(value).isoformat() if value is not None else ""


def _num(value: Any) -> str:
    return "" if value is None else str(int(value))


def _ms3(value: Any) -> str:
    """Milliseconds to the microsecond."""
    return "" if value is None else f"{float(value):.3f}"


def _row(period: Period, r: Any) -> list[str]:
    (cid, customer, channel, status, opened_at, resolved_at, opened_in, resolved_in,
     resolved_by, code, outcome, agent, first_agent, customer_msgs, bot_answers, agent_msgs,
     faqs, handoffs, transfers, reopens, effort, bot_replied, bot_ms, human_ms, resolution_ms,
     handle_ms, wait_ms, stays, sla, fcr, surveys, csat, ces) = r
    resolved = resolved_at is not None
    bot_resolution = {"bot_confirmed": "confirmed", "bot_assumed": "assumed"}.get(
        outcome or "", "")
    return [
        str(cid), str(customer), channel, status, _when(period, opened_at),
        _when(period, resolved_at), str(opened_in), str(resolved_in), resolved_by or "",
        code or "", bot_resolution, outcome or "", _num(agent), _num(first_agent),
        str(customer_msgs), str(bot_answers), str(agent_msgs),
        "1" if bot_replied is not None else "0",
        "1" if bot_answers else "0", ";".join(sorted(set((faqs or "").split(",")) - {""})),
        str(handoffs), "1" if handoffs else "0",
        ("1" if bot_resolution else "0") if resolved else "", str(transfers), str(reopens),
        str(effort), _ms3(bot_ms), _num(human_ms), _num(resolution_ms),
        _num(handle_ms),
        _num(wait_ms or 0), _num(stays or 0), _num(sla or 0), _num(fcr),
        _num(surveys or 0), _num(csat), _num(ces),
    ]


async def export_csv(
    sessions: async_sessionmaker[AsyncSession], query: StatsQuery, page_size: int = PAGE_SIZE
) -> AsyncIterator[str]:
    """The CSV text in chunks (header first, then one chunk per page of conversations)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    yield buffer.getvalue()
    async with sessions() as session:
        scope = await Scope.build(session, query)
    p = query.period
    last = 0
    while True:
        page = (
            select(C.id)
            .where(or_(scope.during(C.opened_at), scope.during(C.resolved_at)),
                   C.id > last, *scope.preds)
            .order_by(C.id)
            .limit(page_size)
            .cte("page")
        )
        async with sessions() as session:
            rows = (await session.execute(_page_query(scope, page))).all()
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(_row(p, r) for r in rows)
        yield buffer.getvalue()
        last = rows[-1][0]
        if len(rows) < page_size:
            return


# --- the dashboard's tables as CSV ----------------------------------------------------------


def flatten(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """One CSV row from a JSON object: nested objects become dotted columns
    (`csat.satisfied_rate`), lists of values are joined with "; ", lists of objects are
    written as JSON."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}.") if value else {name: ""})
        elif isinstance(value, list):
            out[name] = "; ".join(
                json.dumps(v, ensure_ascii=False, sort_keys=True) if isinstance(v, dict | list)
                else _cell(v) for v in value
            )
        else:
            out[name] = value
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def rows_csv(items: list[dict[str, Any]]) -> str:
    """The objects as CSV: one row each, the columns in order of first appearance."""
    rows = [flatten(item) for item in items]
    header: dict[str, None] = {}
    for row in rows:
        header.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(list(header))
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in header])
    return buffer.getvalue()


def columns_to_rows(data: dict[str, Any], length: int) -> list[dict[str, Any]]:
    """Columnar series (arrays of `length`, possibly nested in objects) as one object per
    position; values that are not such arrays are left out."""

    def pick(value: Any, i: int) -> Any:
        if isinstance(value, dict):
            picked = {k: p for k, v in value.items() if (p := pick(v, i)) is not _SKIP}
            return picked or _SKIP
        if isinstance(value, list) and len(value) == length:
            return value[i]
        return _SKIP

    return [{k: p for k, v in data.items() if (p := pick(v, i)) is not _SKIP}
            for i in range(length)]


_SKIP = object()


async def stream_rows_csv(
    columns: Sequence[str], rows: AsyncIterator[dict[str, Any]], chunk: int = 1000
) -> AsyncIterator[str]:
    """CSV text in chunks of `chunk` rows (header first) from objects with these keys."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    n = 0
    async for row in rows:
        writer.writerow([_cell(row.get(name)) for name in columns])
        n += 1
        if n % chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
