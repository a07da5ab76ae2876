"""Statistics API for managers and admins: thin handlers over the carebot.stats reports."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.stats import breakdowns
from carebot.stats import knowledge_gaps as gaps
from carebot.stats import metrics as stats
from carebot.stats.csv_export import export_csv
from carebot.stats.period import UNITS, StatsInputError, parse_period
from carebot.stats.scope import Filters, StatsQuery
from carebot.web.auth import SUPERVISORS, roles
from carebot.web.errors import ApiError
from carebot.web.keys import CLOCK, SESSIONS, SETTINGS
from carebot.web.params import int_query, text_query

log = logging.getLogger(__name__)

MAX_FILTER = 100
KNOWN_PARAMS = {"from", "to", "tz", "channel", "agent", "faq", "tag", "bucket", "similarity",
                "limit"}


def stats_query(request: web.Request) -> StatsQuery:
    """The period, time zone and filters of a stats request (400 when malformed)."""
    unknown = sorted(set(request.query) - KNOWN_PARAMS)
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)}; "
                            f"use {', '.join(sorted(KNOWN_PARAMS))}")
    settings = request.app[SETTINGS]
    try:
        period = parse_period(
            request.query.get("from"), request.query.get("to"), request.query.get("tz"),
            request.app[CLOCK](),
        )
    except StatsInputError as exc:
        raise ApiError(400, str(exc)) from None
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
    )


async def _compute(
    request: web.Request,
    work: Callable[[AsyncSession, StatsQuery], Awaitable[dict[str, Any]]],
) -> web.Response:
    query = stats_query(request)
    async with request.app[SESSIONS]() as session:
        try:
            result = await work(session, query)
        except StatsInputError as exc:
            raise ApiError(400, str(exc)) from None
    return web.json_response(result)


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
    return await _compute(request, lambda s, q: breakdowns.timeseries(s, q, unit))


@roles(*SUPERVISORS)
async def agents(request: web.Request) -> web.Response:
    """GET /api/v1/stats/agents."""
    return await _compute(request, breakdowns.agents)


@roles(*SUPERVISORS)
async def faqs(request: web.Request) -> web.Response:
    """GET /api/v1/stats/faqs."""
    return await _compute(request, breakdowns.faqs)


@roles(*SUPERVISORS)
async def knowledge_gaps(request: web.Request) -> web.Response:
    """GET /api/v1/stats/knowledge-gaps?similarity=&limit=."""
    similarity = int_query(request, "similarity", gaps.DEFAULT_THRESHOLD, 50, 100)
    limit = int_query(request, "limit", 50, 1, 500)
    assert similarity is not None and limit is not None
    return await _compute(
        request,
        lambda s, q: gaps.knowledge_gaps(s, q, threshold=similarity, limit=limit),
    )


@roles(*SUPERVISORS)
async def conversations_csv(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/stats/conversations.csv: one row per conversation, streamed."""
    query = stats_query(request)
    p = query.period
    name = (f"conversations_{p.local(p.start).date().isoformat()}_"
            f"{p.local(p.end).date().isoformat()}.csv")
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{name}"',
    })
    await response.prepare(request)
    try:
        async for chunk in export_csv(request.app[SESSIONS], query):
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


def add_routes(app: web.Application) -> None:
    """Register the stats endpoints."""
    r = app.router
    r.add_get("/api/v1/stats/summary", summary)
    r.add_get("/api/v1/stats/timeseries", timeseries)
    r.add_get("/api/v1/stats/agents", agents)
    r.add_get("/api/v1/stats/faqs", faqs)
    r.add_get("/api/v1/stats/knowledge-gaps", knowledge_gaps)
    r.add_get("/api/v1/stats/conversations.csv", conversations_csv)
