"""Telling "the database is unreachable" from a bug, and logging outages once, not per request.

While PostgreSQL is stopped, restarting or hung, every request fails the same way: those
requests get 503 with Retry-After (nothing was stored; the caller sends again), and the log
gets one line when the outage starts and one when it ends, instead of a traceback each.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import exc as sa_exc

log = logging.getLogger("carebot.database")

# Seconds a client is asked to wait before retrying while the database is away.
RETRY_AFTER_SECONDS = 5


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` means the database could not be reached or did not answer in time
    (not: a statement it refused, which is a bug and a 500)."""
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(error, sa_exc.DBAPIError):
        return error.connection_invalidated or _driver_unavailable(error.orig)
    if isinstance(error, (OSError, asyncio.TimeoutError, ConnectionError)):
        return True
    cause = error.__cause__ or error.__context__
    return cause is not None and cause is not error and _driver_unavailable(cause)


# asyncpg's: the connection broke or could not be made, or a query hit command_timeout.
_ASYNCPG_GONE = {"ConnectionDoesNotExistError", "InterfaceError", "CannotConnectNowError",
                 "ConnectionFailureError", "ConnectionRejectionError",
                 "InternalClientError", "QueryCanceledError"}
# SQLite's: another writer held the file past busy_timeout, or the file cannot be opened.
_SQLITE_BUSY = ("database is locked", "unable to open database file", "disk I/O error")


def _driver_unavailable(error: BaseException | None) -> bool:
    if error is None:
        return False
    if isinstance(error, (OSError, asyncio.TimeoutError)):
        return True
    if type(error).__name__ in _ASYNCPG_GONE:
        return True
    if type(error).__module__.startswith("sqlite3"):
        return any(text in str(error) for text in _SQLITE_BUSY)
    cause = error.__cause__ or error.__context__
    return cause is not None and cause is not error and _driver_unavailable(cause)


def is_statement_timeout(error: BaseException) -> bool:
    """Whether the server cancelled a statement for running past `statement_timeout`
    (SQLSTATE 57014): the database answered, so it is up; that one statement was too slow."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if code == "57014":
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


# PostgreSQL's "try again": a deadlock victim, a serialization failure.
_RETRYABLE = {"40P01", "40001"}


def lost_a_race(error: BaseException) -> bool:
    """Whether the transaction was chosen as a deadlock victim (or failed to serialize): the
    same work, run again, succeeds."""
    orig = getattr(error, "orig", None)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    cause = getattr(orig, "__cause__", None)
    return code in _RETRYABLE or getattr(cause, "sqlstate", None) in _RETRYABLE


class Availability:
    """Whether the database is reachable, as the last attempts found; logs each change."""

    def __init__(self) -> None:
        self.up = True

    def failed(self, error: BaseException) -> None:
        """An attempt found the database unreachable."""
        if self.up:
            self.up = False
            log.error("database unreachable (%s: %s); answering 503 until it is back",
                      type(error).__name__, str(error)[:200])

    def succeeded(self) -> None:
        """An attempt reached the database."""
        if not self.up:
            self.up = True
            log.warning("database reachable again")
