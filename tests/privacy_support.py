"""Where a string might still be stored: the SQLite file and its WAL byte by byte, a PostgreSQL
dump, and every text and JSON column of every table read back through SQL."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import JSON, String, Text, cast, or_, select
from sqlalchemy.engine import make_url

from carebot.db.engine import make_engine
from carebot.db.models import Base


async def columns_holding(url: str, needles: Iterable[str]) -> list[str]:
    """`table.column` for every text or JSON column with a value containing a needle."""
    needles = list(needles)
    hits: list[str] = []
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                for column in table.columns:
                    if not isinstance(column.type, String | Text | JSON):
                        continue
                    value = cast(column, Text()) if isinstance(column.type, JSON) else column
                    found = await conn.scalar(
                        select(value).where(or_(*(value.contains(n) for n in needles))).limit(1)
                    )
                    if found is not None:
                        hits.append(f"{table.name}.{column.name}")
    finally:
        await engine.dispose()
    return hits


def sqlite_files_holding(url: str, needles: Iterable[str]) -> list[str]:
    """The SQLite database file, WAL and shared-memory file (raw bytes) containing a needle."""
    path = Path(make_url(url).database or "")
    hits = []
    for suffix in ("", "-wal", "-shm", "-journal"):
        file = Path(f"{path}{suffix}")
        if file.exists():
            data = file.read_bytes()
            hits += [f"{file.name}: {n!r}" for n in needles if n.encode() in data]
    return hits


def pg_dump_holding(url: str, needles: Iterable[str]) -> list[str]:
    """Needles found in a plain-text pg_dump of the database (data and schema)."""
    parsed = make_url(url)
    dump = shutil.which("pg_dump")
    assert dump is not None, "pg_dump is needed for this test"
    env = {**os.environ, "PGPASSWORD": parsed.password or ""}
    out = subprocess.run(
        [dump, "-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432),
         "-U", parsed.username or "postgres", "-d", parsed.database or "", "--no-owner"],
        check=True, capture_output=True, env=env, timeout=120,
    ).stdout
    return [repr(n) for n in needles if n.encode() in out]


async def stored_anywhere(url: str, needles: Iterable[str]) -> list[str]:
    """Every place a needle is still stored: columns, and the files or the dump."""
    needles = list(needles)
    hits = await columns_holding(url, needles)
    if url.startswith("sqlite"):
        hits += sqlite_files_holding(url, needles)
    else:
        hits += await asyncio.to_thread(pg_dump_holding, url, needles)
    return hits
