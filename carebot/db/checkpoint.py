"""WAL checkpoints for SQLite in a thread of their own, off the inbound writer's commits.

By default SQLite checkpoints inside the commit that pushes the WAL past 1,000 pages: that
commit copies pages into the database file and syncs it while every message of its batch
waits. The inbound writer turns that off (`wal_autocheckpoint=0`) and this task runs a
PASSIVE checkpoint (never blocks writers or readers) from its own connection twice a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from carebot.db.engine import make_sync_sqlite_engine

log = logging.getLogger(__name__)


class WalCheckpointer:
    """Checkpoints one SQLite database's WAL every `interval` seconds until stopped."""

    def __init__(self, url: URL, synchronous: str, interval: float = 0.5) -> None:
        self._engine = make_sync_sqlite_engine(url, synchronous)
        self._interval = interval
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="wal-checkpoint")
        self._task: asyncio.Task[None] | None = None
        self.checkpoints = 0  # completed checkpoint calls (tests wait on it)

    def start(self) -> None:
        """Start checkpointing in the background."""
        self._task = asyncio.create_task(self._run(), name="wal-checkpoint")

    async def stop(self) -> None:
        """Stop, after one last checkpoint that also truncates the WAL file."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self._checkpoint, "TRUNCATE")
        except Exception:
            log.warning("final WAL checkpoint failed", exc_info=True)
        # sqlite3 connections belong to the thread that opened them: close it there.
        await loop.run_in_executor(self._thread, self._engine.dispose)
        self._thread.shutdown()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval)
            try:
                await loop.run_in_executor(self._thread, self._checkpoint, "PASSIVE")
            except Exception:
                # The WAL only grows until the next successful one; nothing is lost.
                log.warning("WAL checkpoint failed", exc_info=True)

    def _checkpoint(self, mode: str) -> None:
        with self._engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})").all()
        self.checkpoints += 1


async def truncate_wal(engine: AsyncEngine, attempts: int = 20) -> bool:
    """SQLite: copy the WAL into the database file and truncate it to zero bytes, so texts
    just overwritten (an erasure) are gone from the WAL too; whether it got there. A reader
    holding an older snapshot makes it busy: it is tried again for about a second. A no-op
    (True) on other databases."""
    if engine.dialect.name != "sqlite":
        return True
    for _ in range(attempts):
        async with engine.connect() as conn:
            busy = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).one()[0]
        if not busy:
            return True
        await asyncio.sleep(0.05)
    log.warning("the SQLite WAL could not be truncated (a reader held it); erased texts leave "
                "it at the next checkpoint")
    return False
