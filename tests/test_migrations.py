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


def _backfill_round_trip(url: str) -> None:
    """At 0008, a conversation handed off at 09:00, requeued (queued_at 09:05), and one never
    handed off; upgrading fills `handed_off_at` from the first handoff touchpoint and leaves
    the other empty; downgrading to 0008 and back works."""
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from carebot.db.types import UTCDateTime

    nine = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    five_past = datetime(2026, 3, 3, 9, 5, tzinfo=UTC)
    when = sa.bindparam("t", type_=UTCDateTime())
    queued = sa.bindparam("q", type_=UTCDateTime())
    counters = "0, 0, 0, 0, {h}, 0, 0, 0"

    async def seed() -> None:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.text(
                    "INSERT INTO customers (id, display_name, created_at) VALUES (1, 'a', :t)"
                ).bindparams(when), {"t": nine})
                await conn.execute(sa.text(
                    "INSERT INTO contacts (id, customer_id, channel, external_id, display_name,"
                    " created_at) VALUES (1, 1, 'http', 'a', 'a', :t)").bindparams(when),
                    {"t": nine})
                for cid, handoffs, q in ((1, 1, five_past), (2, 0, None)):
                    await conn.execute(sa.text(
                        "INSERT INTO conversations (id, customer_id, contact_id, channel, status,"
                        " opened_at, updated_at, queued_at, failed_bot_turns, customer_messages,"
                        " bot_answers, agent_messages, handoffs, transfers, reopen_count,"
                        f" effort_score) VALUES ({cid}, 1, 1, 'http', 'queued', :t, :t, :q, "
                        f"{counters.format(h=handoffs)})").bindparams(when, queued),
                        {"t": nine, "q": q})
                await conn.execute(sa.text(
                    "INSERT INTO touchpoints (id, conversation_id, kind, actor, channel, effort,"
                    " created_at) VALUES (1, 1, 'handoff', 'bot', 'http', 2, :t)"
                ).bindparams(when), {"t": nine})
        finally:
            await engine.dispose()

    async def read(sql: str, at_column: str) -> list[Any]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(sa.text(sql).columns(**{at_column: UTCDateTime()}))
                return [tuple(r) for r in rows]
        finally:
            await engine.dispose()

    asyncio.run(seed())
    upgrade(url)
    assert asyncio.run(read(
        "SELECT id, handed_off_at, first_bot_response_us FROM conversations ORDER BY id",
        "handed_off_at")) == [(1, nine, None), (2, None, None)]
    # 0011 built the journey marks from the log: 1's handoff is its first mark, with the
    # 2 effort points it cost; 2 has no touchpoints and an empty row.
    assert asyncio.run(read(
        "SELECT conversation_id, seq, hand_seq, hand_at, hand_effort, msg_seq"
        " FROM journey_marks ORDER BY conversation_id", "hand_at",
    )) == [(1, 1, 1, nine, 2, None), (2, 0, None, None, None, None)]
    downgrade(url, "0008")
    upgrade(url)
    assert _diff(url) == []


def test_0010_backfills_handed_off_at_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0008")
    _backfill_round_trip(url)


def test_0010_backfills_handed_off_at_postgres(pg_url: str | None) -> None:
    import pytest

    from carebot.db.migrate import wipe_postgres_schema

    if pg_url is None:
        pytest.skip("PostgreSQL tests skipped: set CAREBOT_TEST_DATABASE_URL")
    wipe_postgres_schema(pg_url)
    try:
        upgrade(pg_url, "0008")
        _backfill_round_trip(pg_url)
    finally:
        # The session's other tests expect an empty database at head.
        wipe_postgres_schema(pg_url)
        upgrade(pg_url)


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

