"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import URL, Connection, Engine, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from carebot.settings import SQLITE_SYNCHRONOUS

T = TypeVar("T")


def make_engine(
    database_url: str, *, echo: bool = False, sqlite_synchronous: str = "full",
    timeout: float | None = 10.0,
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
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    if timeout is None:  # migrations: a long ALTER must not be cut off
        return create_async_engine(
            database_url, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True
        )
    # A stopped or hung server must not hang requests: connecting, each statement (client
    # and server side) and waiting for a pooled connection are all bounded.
    return create_async_engine(
        database_url, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True,
        pool_timeout=timeout,
        connect_args={
            "timeout": timeout,
            "command_timeout": timeout,
            "server_settings": {"statement_timeout": str(int(timeout * 1000)),
                                "idle_in_transaction_session_timeout": "60000"},
        },
    )


class QuickReads:
    """Small read-only queries on a hot path (a web chat's catch-up after every message).

    On SQLite they run on a plain sqlite3 connection of their own, in the calling (event
    loop) thread: an index lookup costs a fraction of a millisecond, less than the thread
    round trips aiosqlite needs per statement, and it never queues behind a writer on the
    main engine's one shared connection (WAL lets readers run beside the writer). On
    PostgreSQL they use the async engine's pool.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sync: Engine | None = None
        if engine.url.get_backend_name() == "sqlite":
            self._sync = create_engine(
                engine.url.set(drivername="sqlite"), pool_size=1, max_overflow=0)
            event.listen(self._sync, "connect", _sqlite_reader_pragmas)

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """`fn(connection)`, read only."""
        if self._sync is not None:
            try:
                with self._sync.connect() as conn:
                    return fn(conn)
            except OperationalError as exc:
                # SQLite answers a reader "busy" only in rare moments (a checkpoint resetting
                # the WAL): the loop must not wait there, so the read goes the slow way.
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
        async with self._engine.connect() as conn:
            return await conn.run_sync(fn)

    def close(self) -> None:
        """Close the SQLite connection."""
        if self._sync is not None:
            self._sync.dispose()


def _sqlite_reader_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor: Any = dbapi_conn.cursor()
    # It runs in the event loop's thread: never wait long on a lock there (see `run`).
    cursor.execute("PRAGMA busy_timeout=20")
    cursor.execute("PRAGMA query_only=ON")  # a reader never writes, not even by mistake
    cursor.close()


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
    # Deleted and overwritten content is zeroed in the file, not left in free space: an erased
    # customer's texts must not survive in the database file (carebot.routing.erasure).
    cursor.execute("PRAGMA secure_delete=ON")
    if not autocheckpoint:
        cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writing sessions (`make_write_sessionmaker`) take the write lock before their first
    # read: sqlite3 alone would begin the transaction only at the first INSERT or UPDATE, so
    # a read-modify-write could lose a concurrent update. Readers (stats, listings) keep
    # sqlite3's own behaviour, so a long query never holds the write lock.
    dbapi_conn: Any = conn.connection.dbapi_connection
    if conn.get_execution_options().get(WRITE_OPTION):
        dbapi_conn.isolation_level = None  # sqlite3 must not begin one of its own
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        dbapi_conn.isolation_level = ""  # sqlite3's default: BEGIN before the first write


WRITE_OPTION = "carebot_writes"


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Session factory; objects stay usable after commit (no implicit reloads in async code)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def make_write_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Session factory for transactions that read, decide and write: on SQLite they hold the
    write lock from their first statement (on PostgreSQL they lock the rows they change)."""
    return async_sessionmaker(engine.execution_options(**{WRITE_OPTION: True}),
                              expire_on_commit=False)
