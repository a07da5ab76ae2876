"""Migrations: an empty database upgraded to head has exactly the schema the models describe."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from carebot.db.engine import make_engine
from carebot.db.migrate import downgrade, upgrade
from carebot.db.models import Base


def _diff(url: str) -> list[Any]:
    def compare(conn: Connection) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))

    async def run() -> list[Any]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_upgrade_on_empty_sqlite_matches_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    assert _diff(url) == []


def test_downgrade_then_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    downgrade(url, "base")
    upgrade(url)
    assert _diff(url) == []


def test_postgres_schema_matches_models(pg_url: str | None) -> None:
    import pytest

    if pg_url is None:
        pytest.skip("PostgreSQL tests skipped: set CAREBOT_TEST_DATABASE_URL")
    assert _diff(pg_url) == []


def _columns(url: str, table: str) -> set[str]:
    from sqlalchemy import inspect

    async def run() -> set[str]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda c: {col["name"] for col in inspect(c).get_columns(table)})
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _languages_down_and_up(url: str) -> None:
    upgrade(url)
    downgrade(url, "0008")
    assert "language" not in _columns(url, "customers")
    assert not {"language", "language_override"} & _columns(url, "conversations")
    assert "translations" not in _columns(url, "faq_entries")
    upgrade(url)
    assert {"language", "language_override"} <= _columns(url, "conversations")
    assert _diff(url) == []


def test_0009_languages_down_and_up_on_sqlite(tmp_path: Path) -> None:
    _languages_down_and_up(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


def test_0009_languages_down_and_up_on_postgres(pg_url: str | None) -> None:
    import pytest

    if pg_url is None:
        pytest.skip("PostgreSQL tests skipped: set CAREBOT_TEST_DATABASE_URL")
    _languages_down_and_up(pg_url)
