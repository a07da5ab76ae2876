"""SQLite durability: commits are synced to disk by default, and checkpoints run beside the
writer rather than inside its commits."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import make_url, text

from carebot.db.checkpoint import WalCheckpointer
from carebot.db.engine import make_engine, make_sync_sqlite_engine
from carebot.settings import Settings, SettingsError

# PRAGMA synchronous reads back as a number: 1 = NORMAL, 2 = FULL.
_LEVEL = {"normal": 1, "full": 2}


@pytest.mark.parametrize("mode", [None, "normal", "full"])
async def test_service_and_writer_connections_use_the_configured_sync_mode(
    tmp_path: Path, mode: str | None
) -> None:
    env = {} if mode is None else {"CAREBOT_SQLITE_SYNCHRONOUS": mode}
    settings = Settings.from_env(env, database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    expected = _LEVEL[mode or "full"]  # a 200 must survive a power cut unless told otherwise
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == expected
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
    finally:
        await engine.dispose()
    writer = make_sync_sqlite_engine(make_url(settings.database_url), settings.sqlite_synchronous)
    try:
        with writer.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == expected
    finally:
        writer.dispose()


def test_an_unknown_sync_mode_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="CAREBOT_SQLITE_SYNCHRONOUS must be full or normal"):
        Settings.from_env({"CAREBOT_SQLITE_SYNCHRONOUS": "off"})


async def test_checkpoints_move_the_writers_commits_into_the_database_file(
    tmp_path: Path,
) -> None:
    db = tmp_path / "c.db"
    url = make_url(f"sqlite:///{db}")
    writer = make_sync_sqlite_engine(url, autocheckpoint=False)
    checkpointer = WalCheckpointer(url, "full", interval=0.01)
    checkpointer.start()
    try:
        with writer.begin() as conn:
            assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
            conn.execute(text("CREATE TABLE t (x TEXT)"))
        for _ in range(20):
            with writer.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (:x)"), [{"x": "a" * 500}] * 50)
        for _ in range(500):  # a few passes of the checkpointer
            if checkpointer.checkpoints >= 3:
                break
            await asyncio.sleep(0.01)
        assert checkpointer.checkpoints >= 3
        # While carebot runs, the commits are already in the database file itself
        # (immutable=1 reads the file alone, ignoring the WAL).
        with sqlite3.connect(f"file:{db}?immutable=1", uri=True) as raw:
            assert raw.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    finally:
        writer.dispose()
        await checkpointer.stop()
    wal = db.parent / "c.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # truncated on the way out
