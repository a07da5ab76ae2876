"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from carebot.settings import SQLITE_SYNCHRONOUS


def make_engine(
    database_url: str, *, echo: bool = False, sqlite_synchronous: str = "full"
) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL, foreign keys, one shared connection and
    `PRAGMA synchronous` as given (see `Settings.sqlite_synchronous`)."""
    if database_url.startswith("sqlite"):
        # SQLite allows one writer at a time; one pooled connection makes writers queue in
        # Python instead of failing with "database is locked" mid-transaction.
        engine = create_async_engine(
            database_url, echo=echo, pool_size=1, max_overflow=0, pool_timeout=60
        )
        event.listen(
            engine.sync_engine, "connect",
            functools.partial(_sqlite_pragmas, synchronous=sqlite_synchronous),
        )
        return engine
    return create_async_engine(
        database_url, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True
    )


def make_sync_sqlite_engine(
    url: URL, synchronous: str = "full", *, autocheckpoint: bool = True
) -> Engine:
    """A blocking engine on the same SQLite file, for work that runs in one thread in one go
    (the inbound batch writer): one connection, the same pragmas. `autocheckpoint=False`
    leaves checkpoints to someone else (`carebot.db.checkpoint`)."""
    engine = create_engine(
        url.set(drivername="sqlite"), pool_size=1, max_overflow=0, pool_timeout=60
    )
    event.listen(engine, "connect", functools.partial(
        _sqlite_pragmas, synchronous=synchronous, autocheckpoint=autocheckpoint
    ))
    return engine


def _sqlite_pragmas(
    dbapi_conn: DBAPIConnection,
    _record: ConnectionPoolEntry,
    *,
    synchronous: str,
    autocheckpoint: bool = True,
) -> None:
    if synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"PRAGMA synchronous must be full or normal, got {synchronous!r}")
    cursor: Any = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL with FULL syncs the log on every commit; NORMAL only at checkpoints.
    cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    if not autocheckpoint:
        cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Session factory; objects stay usable after commit (no implicit reloads in async code)."""
    return async_sessionmaker(engine, expire_on_commit=False)
