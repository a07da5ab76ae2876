"""Statistics API for managers and admins: thin handlers over the carebot.stats reports."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.availability import is_statement_timeout
from carebot.stats import breakdowns, gap_marks
from carebot.stats import journey as journey_module
from carebot.stats import knowledge_gaps as gaps
from carebot.stats import live as live_module
from carebot.stats import metrics as stats
from carebot.stats import tiles as dashboard_tiles
from carebot.stats import trends as trends_module
from carebot.stats.csv_export import columns_to_rows, export_csv, rows_csv, stream_rows_csv
from carebot.stats.period import UNITS, Period, StatsInputError, parse_period, parse_tz
from carebot.stats.scope import Filters, StatsQuery
from carebot.web.auth import SUPERVISORS, current_agent, roles
from carebot.web.errors import ApiError, read_json_object, text_field
from carebot.web.keys import CLOCK, SESSIONS, SETTINGS
from carebot.web.params import int_query, text_query

log = logging.getLogger(__name__)

MAX_QUESTION = 4096
_ID = re.compile(r"[0-9]{1,18}")

MAX_FILTER = 100
# Every stats endpoint takes these; each names the few more it takes (anything else is a 400).
PERIOD_PARAMS = frozenset({"from", "to", "tz"})
FILTER_PARAMS = frozenset({"channel", "agent", "faq", "tag"})
BASE_PARAMS = PERIOD_PARAMS | FILTER_PARAMS
GAP_PARAMS = frozenset({"similarity", "limit", "sort", "status"})


def check_params(request: web.Request, allowed: frozenset[str]) -> None:
    """400 for any query parameter the endpoint does not take (a typo is not ignored)."""
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)}; "
                            f"use {', '.join(sorted(allowed))}")


def stats_query(request: web.Request, extra: frozenset[str] = frozenset()) -> StatsQuery:
    """The period, time zone and filters of a stats request (400 when malformed); `extra`
    names the endpoint's own parameters besides the period and the filters."""
    check_params(request, BASE_PARAMS | extra)
    try:
        period = parse_period(
            request.query.get("from"), request.query.get("to"), request.query.get("tz"),
            request.app[CLOCK](),
        )
    except StatsInputError as exc:
        raise ApiError(400, str(exc)) from None
    return _with_filters(request, period)


def _with_filters(request: web.Request, period: Period) -> StatsQuery:
    settings = request.app[SETTINGS]
    filters = Filters(
        channel=text_query(request, "channel", MAX_FILTER),
        agent_id=int_query(request, "agent", None, 1, 2**62),
        faq_id=text_query(request, "faq", MAX_FILTER),
        tag=text_query(request, "tag", MAX_FILTER),
    )
    return StatsQuery(
        period,
        filters,
        repeat_window=timedelta(days=settings.stats_repeat_window_days),
        sla_seconds=settings.queue_sla_seconds,
        now=request.app[CLOCK](),  # an open queue stay is measured up to now
    )


Work = Callable[[AsyncSession, StatsQuery], Awaitable[dict[str, Any]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _result(
    request: web.Request, work: Work, extra: frozenset[str] = frozenset()
) -> tuple[StatsQuery, dict[str, Any]]:
    query = stats_query(request, extra)
    async with request.app[SESSIONS]() as session:
        try:
            return query, await work(session, query)
        except StatsInputError as exc:
            raise ApiError(400, str(exc)) from None


async def _compute(
    request: web.Request, work: Work, extra: frozenset[str] = frozenset()
) -> web.Response:
    _query, result = await _result(request, work, extra)
    return web.json_response(result)


def _csv_name(query: StatsQuery, what: str) -> str:
    p = query.period
    return (f"{what}_{p.local(p.start).date().isoformat()}_"
            f"{p.local(p.end).date().isoformat()}.csv")


def _csv(text: str, name: str) -> web.Response:
    return web.Response(body=text.encode(), headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{name}"',
    })


async def _table_csv(
    request: web.Request, work: Work, what: str, rows: Callable[[dict[str, Any]], Any],
    extra: frozenset[str] = frozenset(),
) -> web.Response:
    query, result = await _result(request, work, extra)
    return _csv(rows_csv(rows(result)), _csv_name(query, what))


@roles(*SUPERVISORS)
async def summary(request: web.Request) -> web.Response:
    """GET /api/v1/stats/summary."""
    return await _compute(request, stats.summary)


@roles(*SUPERVISORS)
async def timeseries(request: web.Request) -> web.Response:
    """GET /api/v1/stats/timeseries?bucket=day|week."""
    unit = request.query.get("bucket", "day")
    if unit not in UNITS:
        raise ApiError(400, f"'bucket' must be one of {', '.join(UNITS)}")
    return await _compute(request, lambda s, q: breakdowns.timeseries(s, q, unit),
                          frozenset({"bucket"}))


@roles(*SUPERVISORS)
async def agents(request: web.Request) -> web.Response:
    """GET /api/v1/stats/agents."""
    return await _compute(request, breakdowns.agents)


@roles(*SUPERVISORS)
async def faqs(request: web.Request) -> web.Response:
    """GET /api/v1/stats/faqs."""
    return await _compute(request, breakdowns.faqs)


def _gaps_work(request: web.Request) -> Work:
    similarity = int_query(request, "similarity", gaps.DEFAULT_THRESHOLD, 50, 100)
    limit = int_query(request, "limit", 50, 1, 500)
    assert similarity is not None and limit is not None
    sort = request.query.get("sort", "count")
    status = request.query.get("status", "all")
    return lambda s, q: gaps.knowledge_gaps(s, q, threshold=similarity, limit=limit, sort=sort,
                                            status=status)


@roles(*SUPERVISORS)
async def knowledge_gaps(request: web.Request) -> web.Response:
    """GET /api/v1/stats/knowledge-gaps?similarity=&limit=&sort=&status=."""
    return await _compute(request, _gaps_work(request), GAP_PARAMS)


@roles(*SUPERVISORS)
async def knowledge_gaps_csv(request: web.Request) -> web.Response:
    """GET /api/v1/stats/knowledge-gaps.csv: the same clusters, one row each."""
    return await _table_csv(request, _gaps_work(request), "knowledge_gaps",
                            lambda r: r["clusters"], GAP_PARAMS)


@roles(*SUPERVISORS)
async def gap_marks_list(request: web.Request) -> web.Response:
    """GET /api/v1/stats/knowledge-gaps/done: every cluster marked done, the latest first."""
    check_params(request, frozenset())
    async with request.app[SESSIONS]() as session:
        marks = await gap_marks.list_marks(session)
        return web.json_response({"items": [gap_marks.mark_dict(m) for m in marks]})


@roles(*SUPERVISORS)
async def gap_mark_add(request: web.Request) -> web.Response:
    """POST /api/v1/stats/knowledge-gaps/done {"question", "note"?}: mark a cluster done."""
    check_params(request, frozenset())
    body = await read_json_object(request)
    unknown = sorted(set(body) - {"question", "note"})
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}; allowed: note, question")
    question = text_field(body, "question", MAX_QUESTION, too_long_status=400)
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise ApiError(400, "'note' must be a string")
    for attempt in (1, 2):  # two managers marking the same new question at once: one wins
        try:
            async with request.app[SESSIONS].begin() as session:
                mark, created = await gap_marks.mark_done(
                    session, question, note or None, current_agent(request).id,
                    request.app[CLOCK](),
                )
                data = gap_marks.mark_dict(mark)
            return web.json_response(data, status=201 if created else 200)
        except StatsInputError as exc:
            raise ApiError(400, str(exc)) from None
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@roles(*SUPERVISORS)
async def gap_mark_remove(request: web.Request) -> web.Response:
    """DELETE /api/v1/stats/knowledge-gaps/done/{mark_id}: the cluster is open again."""
    check_params(request, frozenset())
    raw = request.match_info["mark_id"]
    if not _ID.fullmatch(raw):
        raise ApiError(404, f"mark {raw!r} not found")
    async with request.app[SESSIONS].begin() as session:
        removed = await gap_marks.remove_mark(session, int(raw))
    if not removed:
        raise ApiError(404, f"mark {raw!r} not found")
    return web.Response(status=204)


# --- the dashboard --------------------------------------------------------------------------


@roles(*SUPERVISORS)
async def tiles(request: web.Request) -> web.Response:
    """GET /api/v1/stats/tiles: the headline figures against the previous period."""
    return await _compute(request, dashboard_tiles.tiles)


def _trends_work(request: web.Request) -> Work:
    requested = request.query.get("bucket", "auto")
    return lambda s, q: trends_module.trends(s, q, requested)


@roles(*SUPERVISORS)
async def trends(request: web.Request) -> web.Response:
    """GET /api/v1/stats/trends?bucket=auto|hour|day|week: the chart series."""
    return await _compute(request, _trends_work(request), frozenset({"bucket"}))


@roles(*SUPERVISORS)
async def trends_csv(request: web.Request) -> web.Response:
    """GET /api/v1/stats/trends.csv: the same series, one row per bucket."""
    return await _table_csv(
        request, _trends_work(request), "trends",
        lambda r: columns_to_rows(r, len(r["labels"])), frozenset({"bucket"}),
    )


@roles(*SUPERVISORS)
async def heatmap(request: web.Request) -> web.Response:
    """GET /api/v1/stats/heatmap: volume by local weekday and hour."""
    return await _compute(request, trends_module.heatmap)


@roles(*SUPERVISORS)
async def journey(request: web.Request) -> web.Response:
    """GET /api/v1/stats/journey: the steps and the flows between them."""
    return await _compute(request, journey_module.journey)


def _step(request: web.Request) -> str:
    step = request.query.get("step", "").strip()
    if not step:
        raise ApiError(400, f"'step' is required: one of {', '.join(journey_module.STEPS)}")
    try:
        journey_module.check_step(step)
    except StatsInputError as exc:
        raise ApiError(400, str(exc)) from None
    return step


@roles(*SUPERVISORS)
async def journey_conversations(request: web.Request) -> web.Response:
    """GET /api/v1/stats/journey/conversations?step=&limit=&offset=: who is at a step."""
    query = stats_query(request, frozenset({"step", "limit", "offset"}))
    step = _step(request)
    limit = int_query(request, "limit", 50, 1, 200)
    offset = int_query(request, "offset", 0, 0, 10_000_000)
    assert limit is not None and offset is not None
    async with request.app[SESSIONS]() as session:
        result = await journey_module.step_conversations(session, query, step, limit, offset)
    return web.json_response(result)


@roles(*SUPERVISORS)
async def journey_conversations_csv(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/stats/journey/conversations.csv?step=: every conversation at a step."""
    query = stats_query(request, frozenset({"step"}))
    step = _step(request)

    # Written to text while the query runs, then sent: a slow download holds no connection.
    async with request.app[SESSIONS]() as session:
        text = [chunk async for chunk in stream_rows_csv(
            journey_module.ITEM_COLUMNS, journey_module.step_rows(session, query, step))]

    async def chunks() -> AsyncIterator[str]:
        for chunk in text:
            yield chunk

    return await _stream_csv(request, chunks(), _csv_name(query, f"journey_{step}"))


@roles(*SUPERVISORS)
async def live(request: web.Request) -> web.Response:
    """GET /api/v1/stats/live: the queue, agents on duty and today's SLA breaches, now."""
    check_params(request, frozenset({"tz"}) | FILTER_PARAMS)
    now = request.app[CLOCK]()
    try:
        tz = parse_tz(request.query.get("tz"))
    except StatsInputError as exc:
        raise ApiError(400, str(exc)) from None
    query = _with_filters(request, live_module.today(now, Period(now, now, tz)))
    async with request.app[SESSIONS]() as session:
        result = await live_module.live(session, query, now)
    return web.json_response(result)


@roles(*SUPERVISORS)
async def agents_csv(request: web.Request) -> web.Response:
    """GET /api/v1/stats/agents.csv: the per-agent table."""
    return await _table_csv(request, breakdowns.agents, "agents", lambda r: r["items"])


@roles(*SUPERVISORS)
async def faqs_csv(request: web.Request) -> web.Response:
    """GET /api/v1/stats/faqs.csv: the per-FAQ table."""
    return await _table_csv(request, breakdowns.faqs, "faqs", lambda r: r["items"])


@roles(*SUPERVISORS)
async def conversations_csv(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/stats/conversations.csv: one row per conversation, streamed."""
    query = stats_query(request)
    return await _stream_csv(request, export_csv(request.app[SESSIONS], query),
                             _csv_name(query, "conversations"))


async def _stream_csv(
    request: web.Request, chunks: AsyncIterator[str], name: str
) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{name}"',
    })
    await response.prepare(request)
    try:
        async for chunk in chunks:
            await response.write(chunk.encode())
    except ConnectionResetError:
        return response  # the client went away
    except Exception:
        # The status line is gone already: cut the connection so the client sees a broken
        # download (no terminating chunk) instead of a file that silently ends early.
        log.exception("CSV export failed part-way")
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


def _slow_is_504(handler: Handler) -> Handler:
    """A statistics query the server cancelled for its statement timeout fails that request
    with a 504 saying so; the database answered, so it is not marked unavailable (which
    would put every request on 503)."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            if not is_statement_timeout(exc):
                raise
            log.warning("statistics query cancelled by the statement timeout: %s %s",
                        request.method, request.path_qs)
            raise ApiError(504, "the statistics query took longer than the database's "
                                "statement timeout; try a shorter period or fewer filters",
                           reason="statement_timeout") from None

    return run


def add_routes(app: web.Application) -> None:
    """Register the stats endpoints."""
    r = app.router
    r.add_get("/api/v1/stats/summary", _slow_is_504(summary))
    r.add_get("/api/v1/stats/timeseries", _slow_is_504(timeseries))
    r.add_get("/api/v1/stats/agents", _slow_is_504(agents))
    r.add_get("/api/v1/stats/faqs", _slow_is_504(faqs))
    r.add_get("/api/v1/stats/knowledge-gaps", _slow_is_504(knowledge_gaps))
    r.add_get("/api/v1/stats/conversations.csv", _slow_is_504(conversations_csv))
    # The managers' dashboard.
    r.add_get("/api/v1/stats/tiles", _slow_is_504(tiles))
    r.add_get("/api/v1/stats/trends", _slow_is_504(trends))
    r.add_get("/api/v1/stats/trends.csv", _slow_is_504(trends_csv))
    r.add_get("/api/v1/stats/heatmap", _slow_is_504(heatmap))
    r.add_get("/api/v1/stats/journey", _slow_is_504(journey))
    r.add_get("/api/v1/stats/journey/conversations", _slow_is_504(journey_conversations))
    r.add_get("/api/v1/stats/journey/conversations.csv", _slow_is_504(journey_conversations_csv))
    r.add_get("/api/v1/stats/live", _slow_is_504(live))
    r.add_get("/api/v1/stats/agents.csv", _slow_is_504(agents_csv))
    r.add_get("/api/v1/stats/faqs.csv", _slow_is_504(faqs_csv))
    r.add_get("/api/v1/stats/knowledge-gaps.csv", _slow_is_504(knowledge_gaps_csv))
    r.add_get("/api/v1/stats/knowledge-gaps/done", _slow_is_504(gap_marks_list))
    r.add_post("/api/v1/stats/knowledge-gaps/done", _slow_is_504(gap_mark_add))
    r.add_delete("/api/v1/stats/knowledge-gaps/done/{mark_id}", _slow_is_504(gap_mark_remove))
