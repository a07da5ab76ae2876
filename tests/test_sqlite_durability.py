"""SQLite durability: commits are synced to disk by default, on every connection carebot opens."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import make_url, text

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
