"""A database's rows, taken once and put back into fresh databases of the same kind.

The statistics tests build one fixed-clock scenario through the public paths and assert on it
in many tests. Building it takes most of each test's time; a module builds it once per kind of
database (in its first test, unchanged) and gives every later test a fresh database holding
the same rows and, on PostgreSQL, the same sequence positions: the state the first build left,
as a restarted service would see it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from carebot.db.models import Base
from carebot.domain.clock import ManualClock
from carebot.matching.knowledge import import_knowledge
from tests.conftest import starter_knowledge

Built = TypeVar("Built")


@dataclass(frozen=True)
class Snapshot:
    """Every table's rows in primary-key order, and PostgreSQL's sequence positions."""

    rows: dict[str, list[dict[str, Any]]]
    sequences: dict[str, int]


async def built_once(
    built: dict[str, tuple[Snapshot, Built, datetime]], engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock,
    build: Callable[[], Awaitable[Built]],
) -> tuple[Built, bool]:
    """(what `build` returned, whether it ran now). The first call per kind of database
    imports the starter knowledge base, runs `build` (the scenario through the public paths)
    and keeps a snapshot of the database and the clock in `built` (a module's cache); every
    later call puts that snapshot into its fresh database and sets the clock back to it."""
    kind = engine.dialect.name
    if kind not in built:
        async with sessions.begin() as session:  # the starter_kb fixture's import
            await import_knowledge(session, list(starter_knowledge()), clock())
        first = await build()
        built[kind] = (await take_snapshot(engine), first, clock.now)
        return first, True
    snapshot, first, now = built[kind]
    await restore_snapshot(engine, snapshot)
    clock.now = now
    return first, False


async def take_snapshot(engine: AsyncEngine) -> Snapshot:
    """Read the whole database (the migrated tables of `Base.metadata`)."""
    async with engine.connect() as conn:
        return await _read(conn)


async def restore_snapshot(engine: AsyncEngine, snapshot: Snapshot) -> None:
    """Make a fresh, migrated database hold exactly the snapshot's rows, then check it does.

    Fresh means as the `database_url` fixture gives it: empty but for the configuration the
    migrations seed (the append-only audit log must be empty: it refuses deletes)."""
    tables = Base.metadata.sorted_tables
    async with engine.begin() as conn:
        for table in reversed(tables):
            if await conn.scalar(select(func.count()).select_from(table)):
                await conn.execute(table.delete())
        for table in tables:
            if snapshot.rows[table.name]:
                await conn.execute(table.insert(), snapshot.rows[table.name])
        for name, last_value in snapshot.sequences.items():
            await conn.execute(text("SELECT setval(CAST(:seq AS regclass), :v)"),
                               {"seq": name, "v": last_value})
    async with engine.connect() as conn:
        assert await _read(conn) == snapshot, "the database copy differs from its snapshot"


async def _read(conn: AsyncConnection) -> Snapshot:
    rows = {}
    for table in Base.metadata.sorted_tables:
        result = await conn.execute(select(table).order_by(*table.primary_key.columns))
        rows[table.name] = [dict(row) for row in result.mappings()]
    sequences: dict[str, int] = {}
    if conn.dialect.name == "postgresql":
        found = await conn.execute(text(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value"
            " FROM pg_sequences WHERE schemaname = current_schema()"
            " AND last_value IS NOT NULL"))
        sequences = {name: value for name, value in found.all()}
    return Snapshot(rows, sequences)
