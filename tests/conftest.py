"""Shared fixtures: every database test runs against SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from carebot.db.engine import make_engine, make_sessionmaker
from carebot.db.migrate import upgrade, wipe_postgres_schema
from carebot.db.models import Base
from carebot.domain.clock import ManualClock
from carebot.matching.knowledge import LoadedDoc, import_knowledge, load_knowledge
from carebot.settings import Settings

pytest_plugins = ["tests.fakes.network_guard", "tests.browser"]

ROOT = Path(__file__).resolve().parents[1]
KNOWLEDGE = ROOT / "knowledge"
PG_ENV = "CAREBOT_TEST_DATABASE_URL"
PG_SKIP_MESSAGE = (
    "PostgreSQL tests skipped: set CAREBOT_TEST_DATABASE_URL="
    "postgresql+asyncpg://postgres@127.0.0.1:5432/test to run them"
)
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def pytest_report_header() -> str:
    """Say up front whether the PostgreSQL half of the suite runs."""
    return f"carebot databases: sqlite + {'postgresql' if os.environ.get(PG_ENV) else 'none'}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets a copy (migrations are tested separately)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_url() -> str | None:
    """The PostgreSQL URL, migrated once per session, or None when not configured."""
    url = os.environ.get(PG_ENV)
    if not url:
        return None
    try:
        url = _worker_database(url)
        wipe_postgres_schema(url)
        upgrade(url)
    except Exception as exc:
        if os.environ.get("CAREBOT_TEST_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"PostgreSQL at {PG_ENV} is unreachable ({exc}); {PG_SKIP_MESSAGE}")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "carebot.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    if not os.environ.get(PG_ENV):
        if os.environ.get("CAREBOT_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"CAREBOT_TEST_REQUIRE_POSTGRES is set but {PG_ENV} is not")
        pytest.skip(PG_SKIP_MESSAGE)
    url = request.getfixturevalue("pg_url")
    _truncate_pg(url)
    yield url


def _worker_database(url: str) -> str:
    """Under pytest-xdist each worker gets its own database next to the configured one
    (`test` -> `test_gw0`), so workers never truncate each other's tables."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base = make_url(url)
    name = f"{base.database}_{worker}"

    async def create() -> None:
        engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                found = await conn.scalar(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
                if not found:
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await engine.dispose()

    asyncio.run(create())
    return base.set(database=name).render_as_string(hide_password=False)


def _seed_codes() -> list[dict[str, object]]:
    """The resolution codes migration 0004 seeds (a fresh database has exactly these)."""
    path = ROOT / "migrations" / "versions" / "0004_decision_core.py"
    spec = importlib.util.spec_from_file_location("migration_0004", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [{"code": c, "label": label, "survey": survey, "may_reopen": reopen,
             "enabled": True, "created_at": START} for c, label, survey, reopen in
            module.SEED_CODES]


def _truncate_pg(url: str) -> None:
    """Empty every table and restart every sequence, as `TRUNCATE … RESTART IDENTITY` would,
    then seed what the migrations seed.

    DELETE, not TRUNCATE: a TRUNCATE costs ~60 ms however few tables it names (new files for
    each table and index), a DELETE of a test's few rows ~5 ms, and this runs before every
    PostgreSQL test. Only the append-only audit log, which refuses DELETE, is truncated, and
    only when a test wrote to it."""
    tables = Base.metadata.sorted_tables
    filled = " UNION ALL ".join(
        f"SELECT '{t.name}' WHERE EXISTS (SELECT 1 FROM {t.name})" for t in tables)

    async def run() -> None:
        engine = make_engine(url)
        async with engine.begin() as conn:
            nonempty = set(await conn.scalars(text(filled)))
            if "audit_log" in nonempty:
                await conn.execute(text("TRUNCATE audit_log"))
            for table in reversed(tables):
                if table.name in nonempty and table.name != "audit_log":
                    await conn.execute(table.delete())
            used = await conn.scalars(text(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename)"
                " FROM pg_sequences WHERE schemaname = current_schema()"
                " AND last_value IS NOT NULL"))
            for sequence in used.all():
                await conn.execute(text(f"ALTER SEQUENCE {sequence} RESTART"))
            # Configuration the migrations seed is part of an empty database.
            await conn.execute(Base.metadata.tables["resolution_codes"].insert(), _seed_codes())
        await engine.dispose()

    asyncio.run(run())


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when the test says so."""
    return ManualClock(START)


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings for a test service on the test database (no secrets, default thresholds)."""
    return Settings.from_env({}, database_url=database_url, knowledge_dir=str(KNOWLEDGE))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the test database."""
    eng = make_engine(database_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Session factory on the test database."""
    return make_sessionmaker(engine)


@functools.cache
def starter_knowledge() -> tuple[LoadedDoc, ...]:
    """The shipped knowledge base's validated entries (immutable), read once per process:
    parsing the YAML took ~0.1 s, and hundreds of tests import it (test_knowledge tests the
    loader itself)."""
    return tuple(load_knowledge(KNOWLEDGE))


@pytest.fixture
async def starter_kb(sessions: async_sessionmaker[AsyncSession], clock: ManualClock) -> None:
    """The shipped knowledge base, imported into the test database."""
    async with sessions.begin() as session:
        await import_knowledge(session, list(starter_knowledge()), clock())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the test item: browser fixtures screenshot failed tests."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
