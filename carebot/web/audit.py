"""The audit log API for admins: filtered JSON pages and a streamed CSV."""

from __future__ import annotations

import logging

from aiohttp import web

from carebot.agents import audit
from carebot.stats.period import StatsInputError, parse_period
from carebot.web.auth import roles
from carebot.web.errors import ApiError
from carebot.web.keys import CLOCK, SESSIONS
from carebot.web.params import int_query, text_query

log = logging.getLogger(__name__)

FILTERS = frozenset({"from", "to", "tz", "actor", "actor_type", "action", "object_type",
                     "object_id"})
PAGE = frozenset({"limit", "offset"})
ACTOR_TYPES = ("agent", "cli", "system", "anonymous")
MAX_PAGE = 500


def audit_filter(request: web.Request, allowed: frozenset[str]) -> audit.AuditFilter:
    """The filter a request asks for (400 for unknown or malformed parameters)."""
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(allowed))}")
    since = until = None
    if request.query.get("from") or request.query.get("to"):
        try:
            period = parse_period(request.query.get("from"), request.query.get("to"),
                                  request.query.get("tz"), request.app[CLOCK]())
        except StatsInputError as exc:
            raise ApiError(400, str(exc)) from None
        since, until = period.start, period.end
    actor_type = text_query(request, "actor_type", 16)
    if actor_type is not None and actor_type not in ACTOR_TYPES:
        raise ApiError(400, f"'actor_type' must be one of {', '.join(ACTOR_TYPES)}")
    return audit.AuditFilter(
        since=since,
        until=until,
        actor_id=int_query(request, "actor", None, 1, 2**62),
        actor_type=actor_type,
        action=text_query(request, "action", 64),
        object_type=text_query(request, "object_type", 32),
        object_id=text_query(request, "object_id", 64),
    )


@roles("admin")
async def get_audit(request: web.Request) -> web.Response:
    """GET /api/v1/audit: entries, newest first, filtered and paginated."""
    where = audit_filter(request, FILTERS | PAGE)
    limit = int_query(request, "limit", 100, 1, MAX_PAGE)
    offset = int_query(request, "offset", 0, 0, 2**31)
    assert limit is not None and offset is not None
    async with request.app[SESSIONS]() as session:
        rows, total = await audit.entries(session, where, limit, offset)
    return web.json_response({"items": [audit.entry_dict(e) for e in rows], "total": total,
                              "limit": limit, "offset": offset})


@roles("admin")
async def get_audit_csv(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/audit.csv: every matching entry as CSV, streamed."""
    where = audit_filter(request, FILTERS)
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": 'attachment; filename="audit.csv"',
    })
    await response.prepare(request)
    try:
        async with request.app[SESSIONS]() as session:
            async for chunk in audit.csv_chunks(session, where):
                await response.write(chunk.encode())
    except ConnectionResetError:
        return response
    except Exception:
        log.exception("audit CSV export failed part-way")
        if request.transport is not None:
            request.transport.close()  # a broken download, never a silently short file
        return response
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    """Register the audit endpoints."""
    app.router.add_get("/api/v1/audit", get_audit)
    app.router.add_get("/api/v1/audit.csv", get_audit_csv)
