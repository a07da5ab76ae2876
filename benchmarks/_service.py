"""Shared benchmark plumbing: a migrated database and a carebot service on loopback."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from carebot.db.engine import make_engine, make_sessionmaker
from carebot.db.migrate import upgrade, wipe_postgres_schema
from carebot.domain.clock import system_clock
from carebot.matching.knowledge import import_knowledge, load_knowledge
from carebot.settings import Settings
from carebot.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]


def fresh_database(url: str | None) -> str:
    """A migrated empty database: a temp SQLite file, or the given PostgreSQL URL (wiped)."""
    if url is None:
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='carebot-bench-')}/bench.db"
    else:
        wipe_postgres_schema(url)
    upgrade(url)

    async def seed() -> None:
        engine = make_engine(url)
        async with make_sessionmaker(engine).begin() as session:
            await import_knowledge(session, load_knowledge(ROOT / "knowledge"), system_clock())
        await engine.dispose()

    asyncio.run(seed())
    return url


@asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[tuple[web.Application, str]]:
    """Run carebot on 127.0.0.1 (a free port); yields the app and its base URL."""
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(values: list[float]) -> str:
    """median / p99 / max in ms."""
    return (f"median {statistics.median(values):.2f} ms, p99 {percentile(values, 99):.2f} ms, "
            f"max {max(values):.2f} ms")
