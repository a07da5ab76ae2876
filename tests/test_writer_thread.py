"""The SQLite writer thread: each batch is one transaction that owns the write lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url
from sqlalchemy.engine import Connection

from carebot.db.writer_thread import SqliteWriterThread

Result = list[int] | BaseException


def _database(tmp_path: Path) -> Path:
    path = tmp_path / "writer.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return path


class _Results:
    """Collects what the writer delivers to the event loop: (items, result) per batch."""

    def __init__(self) -> None:
        self.batches: asyncio.Queue[tuple[list[str], Result]] = asyncio.Queue()

    def deliver(self, items: list[str], result: Result, _resume: threading.Event | None) -> None:
        self.batches.put_nowait((items, result))


def _writer(
    path: Path,
    write: Callable[[Connection, list[str]], list[int]],
    results: _Results,
    max_batch: int,
    **options: Any,
) -> SqliteWriterThread[str, list[int]]:
    writer = SqliteWriterThread[str, list[int]](
        make_url(f"sqlite:///{path}"),
        "full",
        write,
        results.deliver,
        lambda _: False,
        max_batch,
        **options,
    )
    writer.start()
    return writer


async def test_no_other_connection_can_write_between_a_batchs_reads_and_its_commit(
    tmp_path: Path,
) -> None:
    path = _database(tmp_path)
    read_done = threading.Event()
    may_finish = threading.Event()

    def write(conn: Connection, items: list[str]) -> list[int]:
        before = conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
        read_done.set()
        may_finish.wait(10)
        for v in items:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (?)", (v,))
        return [before]

    results = _Results()
    writer = _writer(path, write, results, 10)
    writer.put(["batch"])
    assert await asyncio.to_thread(read_done.wait, 10)
    other = sqlite3.connect(path, timeout=0)
    try:
        # The batch has only read so far; a write committed now would make its decision stale.
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("INSERT INTO t (v) VALUES ('sneaked in')")
        other.rollback()
        may_finish.set()
        items, result = await asyncio.wait_for(results.batches.get(), 10)
        assert (items, result) == (["batch"], [0])
        await writer.stop()
        assert other.execute("SELECT v FROM t").fetchall() == [("batch",)]
    finally:
        may_finish.set()
        other.close()


async def test_a_failed_batch_rolls_back_and_the_next_one_is_written(tmp_path: Path) -> None:
    path = _database(tmp_path)

    def write(conn: Connection, items: list[str]) -> list[int]:
        for v in items:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (?)", (v,))
            if v == "bad":
                raise ValueError("refused")
        return [len(items)]

    results = _Results()
    writer = _writer(path, write, results, 2)
    writer.put(["first", "bad"])
    writer.put(["after"])
    _, failed = await asyncio.wait_for(results.batches.get(), 10)
    assert isinstance(failed, ValueError)
    assert await asyncio.wait_for(results.batches.get(), 10) == (["after"], [1])
    await writer.stop()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT v FROM t").fetchall() == [("after",)]


async def test_the_wal_file_stays_near_its_limit_while_batches_keep_coming(
    tmp_path: Path,
) -> None:
    path = _database(tmp_path)
    wal = Path(f"{path}-wal")
    row = "x" * 2000
    sizes: list[int] = []  # the WAL's size as each batch begins, seen from the writer thread

    def write(conn: Connection, items: list[str]) -> list[int]:
        sizes.append(wal.stat().st_size if wal.exists() else 0)
        for v in items:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (?)", (v + row,))
        return [len(items)]

    results = _Results()
    limit = 256 * 1024
    writer = _writer(path, write, results, 10, wal_limit=limit)
    for i in range(200):  # ~4 MB of rows, one batch after the other
        writer.put([f"{i}-{j}" for j in range(10)])
        _, result = await asyncio.wait_for(results.batches.get(), 10)
        assert result == [10]
    await writer.stop()
    assert len(sizes) == 200
    # Past the limit by at most one batch's pages (about 20 KB of rows, their index pages).
    assert max(sizes) < limit + 128 * 1024
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM t").fetchone() == (2000,)
