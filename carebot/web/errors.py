"""JSON errors for every failure, with the right status and a message a person can act on."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import ClientConnectionResetError, web

from carebot.channels.errors import ChannelInputError
from carebot.db.availability import RETRY_AFTER_SECONDS, is_unavailable
from carebot.domain.text import is_blank, text_problem
from carebot.web.handler import Handler
from carebot.web.keys import DATABASE, SETTINGS

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raise from a handler to answer with a JSON error."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@contextmanager
def channel_input_errors() -> Iterator[None]:
    """Answer a channel's refusal of its input (`ChannelInputError`) as the same JSON error."""
    try:
        yield
    except ChannelInputError as exc:
        raise ApiError(exc.status, exc.message) from None


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    """A JSON error response: {"error": {"status": …, "message": …}}."""
    return web.json_response({"error": {"status": status, "message": message, **extra}},
                             status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ApiError and aiohttp's HTTP errors into JSON; log and hide unexpected ones.

    While the database is known to be away, requests that need it get their 503 at once
    instead of each waiting out the connection and statement timeouts; /healthz still asks."""
    availability = request.app.get(DATABASE)
    if availability is not None and not availability.up and request.path != "/healthz":
        return _unavailable()
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.message, **exc.extra)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_body_bytes
        return json_error(413, f"request body too large (limit {limit} bytes)")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
    except ClientConnectionResetError:
        # The caller went away while we wrote to it (a console closing its live feed, a
        # dropped request): nobody to answer, and no sign of the database being away.
        # (It is an OSError; taken for an outage, it put the whole process on 503.)
        return web.Response(status=CLIENT_CLOSED)
    except Exception as exc:
        if is_unavailable(exc):
            if availability is not None:
                availability.failed(exc)
            return _unavailable()
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal error")


# What nginx logs for a request whose client closed the connection first.
CLIENT_CLOSED = 499


def _unavailable() -> web.Response:
    response = json_error(503, "the service is briefly unavailable; try again shortly")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/413 ApiError saying what is wrong."""
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"request body too large (limit {limit} bytes)")
    return parse_json_object(await request.read())


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or a 400 ApiError saying what is wrong."""
    if not raw:
        raise ApiError(400, "request body is empty; send a JSON object")
    # JSON between systems is UTF-8 without a byte order mark (RFC 8259); json.loads would
    # also take UTF-16 and UTF-32 silently.
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ApiError(400, "request body starts with a byte order mark; send UTF-8 JSON "
                            "without one")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not UTF-8; send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def text_field(
    body: dict[str, Any], key: str, limit: int, *, too_long_status: int = 413
) -> str:
    """A required, non-blank string field of at most `limit` characters, or a 400/413 ApiError."""
    value = body.get(key)
    if not isinstance(value, str) or is_blank(value):
        raise ApiError(400, f"'{key}' is required and must be a non-empty string")
    if len(value) > limit:
        raise ApiError(too_long_status, f"'{key}' must be at most {limit} characters")
    problem = text_problem(value)
    if problem is not None:
        raise ApiError(400, f"'{key}' {problem}")
    return value
