"""A thread that owns the SQLite write connection and writes queued work in batches.

Each batch starts the moment the previous one committed, in the same thread: handing every
batch over through the event loop left the writer idle while the loop answered the previous
batch's requests (a quarter of its time under load). Results go back to the loop with
`call_soon_threadsafe`.

The WAL file is kept to about `wal_limit` bytes by this thread. The PASSIVE checkpoints of
`carebot.db.checkpoint` copy the WAL's pages into the database file, but SQLite starts
writing the WAL from its beginning again only when a write transaction begins while every
frame is already copied, and under sustained load this thread begins the next batch right
after each commit, before a checkpoint can catch up: the WAL grew by ~20 MB/s (10 GB in ten
minutes, with a WAL index mapped into memory growing with it). Once the file outgrows the
limit, the thread runs a TRUNCATE checkpoint between two batches; the PASSIVE ones have
already copied nearly everything, so it costs a few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import URL
from sqlalchemy.engine import Connection

from carebot.db.engine import make_sync_sqlite_engine

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

WAL_LIMIT = 64 * 2**20
# How long the TRUNCATE checkpoint may wait for readers or another writer: a long reader (a
# stats query) must not stall inbound messages; the next batch tries again.
_RESTART_WAIT_MS = 50


class SqliteWriterThread(Generic[T, R]):
    """Writes queued items on one connection, up to `max_batch` per transaction.

    `write(conn, items)` runs inside a transaction that commits when it returns (or rolls back
    when it raises); `deliver(items, result, resume)` then runs on the event loop. When
    `must_wait(result)` is true the thread waits for `resume.set()` before the next batch, so
    the loop can finish work that has to come between two batches.
    """

    def __init__(
        self,
        url: URL,
        synchronous: str,
        write: Callable[[Connection, list[T]], R],
        deliver: Callable[[list[T], R | BaseException, threading.Event | None], None],
        must_wait: Callable[[R | BaseException], bool],
        max_batch: int,
        wal_limit: int = WAL_LIMIT,
    ) -> None:
        # Checkpoints are someone else's job (carebot.db.checkpoint), never a commit's.
        self._engine = make_sync_sqlite_engine(url, synchronous, autocheckpoint=False)
        self._wal_path = f"{url.database}-wal"
        self._wal_limit = wal_limit
        self._write = write
        self._deliver = deliver
        self._must_wait = must_wait
        self._max_batch = max_batch
        self._ready: list[T] = []
        self._closing = False
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finished: asyncio.Future[None] | None = None
        # A daemon: if the loop dies without stop(), exit must not hang on it; an unfinished
        # transaction then rolls back, and none of its messages had been answered.
        self._thread = threading.Thread(target=self._main, name="inbound-sqlite", daemon=True)

    def start(self) -> None:
        """Start the thread (call from the event loop that receives the results)."""
        self._loop = asyncio.get_running_loop()
        self._finished = self._loop.create_future()
        self._thread.start()

    def put(self, items: list[T]) -> None:
        """Queue items; they are written in the order queued."""
        with self._cond:
            self._ready.extend(items)
            self._cond.notify()

    async def stop(self) -> None:
        """Write everything queued, then close the connection and end the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._finished is not None:
            await self._finished

    def _main(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                with self._cond:
                    while not self._ready and not self._closing:
                        self._cond.wait()
                    if not self._ready:
                        return
                    items = self._ready[: self._max_batch]
                    del self._ready[: self._max_batch]
                result: R | BaseException
                try:
                    # One connection for the thread's life: a pool checkout, reset and checkin
                    # per batch cost more than some of the batch's statements.
                    if conn is None:
                        conn = self._engine.connect()
                    with conn.begin():
                        # sqlite3 would begin the transaction only at the first INSERT, so the
                        # batch's reads would see commits made by other connections (the ORM
                        # engine) after them and write back conversation rows decided from a
                        # stale state. IMMEDIATE takes the write lock before the first read.
                        conn.exec_driver_sql("BEGIN IMMEDIATE")
                        result = self._write(conn, items)
                except Exception as exc:
                    result = exc
                    # The failure may have been the connection's: the next batch opens another.
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.close()
                        conn = None
                resume = threading.Event() if self._must_wait(result) else None
                self._call(self._deliver, items, result, resume)
                if resume is not None:
                    resume.wait()
                if conn is not None:
                    self._bound_wal(conn)
        finally:
            # sqlite3 connections belong to the thread that opened them: close it here.
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._engine.dispose()
            if self._finished is not None:
                self._call(_set_done, self._finished)

    def _bound_wal(self, conn: Connection) -> None:
        """Checkpoint and truncate the WAL if it outgrew the limit (see the module doc)."""
        try:
            if os.path.getsize(self._wal_path) < self._wal_limit:
                return
        except OSError:
            return
        try:
            with conn.begin():  # sqlite3 begins no transaction for a PRAGMA: none is open
                wait = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
                conn.exec_driver_sql(f"PRAGMA busy_timeout={_RESTART_WAIT_MS}")
                try:
                    busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0]
                finally:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={int(wait)}")
        except Exception:
            # Nothing is lost: the WAL only grows until a later batch manages it.
            log.warning("could not truncate the SQLite WAL", exc_info=True)
            return
        if busy:
            log.debug("WAL truncation postponed: a reader or writer was busy")

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(fn, *args)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
