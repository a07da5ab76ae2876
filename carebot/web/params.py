"""Query parameters, read strictly: ASCII integers in range, text without NUL or lone
surrogates (PostgreSQL refuses both), and a clear 400 otherwise."""

from __future__ import annotations

import re

from aiohttp import web

from carebot.domain.text import text_problem
from carebot.web.errors import ApiError

# int() would also take full-width digits, superscripts and "1_000".
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def int_query(
    request: web.Request, name: str, default: int | None, lo: int, hi: int
) -> int | None:
    """An integer query parameter between `lo` and `hi`, or `default` when absent."""
    raw = request.query.get(name, "").strip()
    if not raw:
        return default
    if not _INTEGER.fullmatch(raw):
        raise ApiError(400, f"query parameter '{name}' must be an integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise ApiError(400, f"query parameter '{name}' must be between {lo} and {hi}")
    return value


def text_query(request: web.Request, name: str, limit: int) -> str | None:
    """A text query parameter of at most `limit` characters, or None when absent."""
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    if len(raw) > limit:
        raise ApiError(400, f"query parameter '{name}' must be at most {limit} characters")
    problem = text_problem(raw)
    if problem is not None:
        raise ApiError(400, f"query parameter '{name}' {problem}")
    return raw
