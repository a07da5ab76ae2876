"""Connection exhaustion: idle sockets over the caps are answered 503 and closed at once, and
every other client keeps being served (issue 18, item 8).

Idle sockets come from 127.0.0.1; "other clients" connect from other loopback addresses
(127.0.0.2 and up), so the cap per address and the total cap can each be seen at work.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from carebot.cli import connection_limit
from carebot.domain.clock import system_clock
from carebot.settings import Settings, SettingsError
from carebot.web.serving import (
    RESERVED_FDS,
    ConnectionLimit,
    capped,
    effective_total,
    listen,
)
from tests.conftest import KNOWLEDGE
from tests.helpers import create_app

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Live:
    port: int
    limit: ConnectionLimit


@pytest.fixture
async def live(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Live]:
    database = tmp_path / "carebot.db"
    shutil.copy(sqlite_template, database)
    settings = Settings.from_env({}, database_url=f"sqlite+aiosqlite:///{database}",
                                 knowledge_dir=str(KNOWLEDGE))
    app = create_app(replace(settings, run_timers=False, run_worker=False), system_clock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    limit = ConnectionLimit(total=60, per_ip=40)
    listener = await listen(runner, "127.0.0.1", 0, limit)
    try:
        yield Live(listener.sockets[0].getsockname()[1], limit)
    finally:
        listener.close()
        await runner.cleanup()


async def open_idle(port: int, n: int, source: str = "127.0.0.1") -> list[Stream]:
    return [await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            for _ in range(n)]


async def refused(streams: list[Stream]) -> int:
    """How many of `streams` got the 503 and were closed (within a few seconds)."""
    async def one(reader: asyncio.StreamReader) -> bool:
        try:
            data = await asyncio.wait_for(reader.read(), 3)
        except TimeoutError:
            return False  # admitted: still open, waiting for a request
        assert data.startswith(b"HTTP/1.1 503 "), data
        assert b"too many connections" in data
        return True
    return sum(await asyncio.gather(*(one(r) for r, _ in streams)))


async def served(port: int, source: str) -> int:
    """The status of GET /healthz from `source`; 0 if the connection broke first (a refused
    connection may be reset while the request is still being sent)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        try:
            async with http.get(f"http://127.0.0.1:{port}/healthz",
                                timeout=aiohttp.ClientTimeout(total=10)) as resp:
                return resp.status
        except aiohttp.ClientOSError:
            return 0


def close(streams: list[Stream]) -> None:
    for _, writer in streams:
        writer.close()


async def test_idle_sockets_over_the_caps_are_refused_at_once_and_others_still_served(
    live: Live,
) -> None:
    idle = await open_idle(live.port, 100)
    try:
        # The cap per address: 40 stay open, the other 60 are answered and closed at once.
        assert await refused(idle) == 60
        assert live.limit.by_ip["127.0.0.1"] == 40
        # Another client is served, again and again.
        for _ in range(5):
            assert await served(live.port, "127.0.0.2") == 200
        # The total cap: 20 more from another address fill it; a third address is refused,
        # the other connections stay.
        more = await open_idle(live.port, 20, "127.0.0.3")
        assert await refused(more) == 0
        try:
            assert await served(live.port, "127.0.0.4") in (503, 0)
        finally:
            close(more)
        await asyncio.sleep(0.2)
        assert await served(live.port, "127.0.0.4") == 200
    finally:
        close(idle)
    await asyncio.sleep(0.2)
    assert live.limit.open == 0
    assert await served(live.port, "127.0.0.1") == 200


def test_the_total_cap_stays_below_the_open_file_limit() -> None:
    assert effective_total(10_000, 1_024) == 1_024 - RESERVED_FDS
    assert effective_total(10_000, 1 << 20) == 10_000
    limit = connection_limit(Settings.from_env({}, max_connections=50,
                                               max_connections_per_ip=0))
    assert (limit.total, limit.per_ip) == (50, 0)
    with pytest.raises(SettingsError):
        Settings.from_env({"CAREBOT_MAX_CONNECTIONS": "0"})
    with pytest.raises(SettingsError):
        Settings.from_env({"CAREBOT_MAX_CONNECTIONS_PER_IP": "-1"})


class _Transport:
    """A transport as uvloop has them: no subclass of asyncio's classes."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.9", 4242) if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def test_a_refusal_needs_nothing_but_write_and_close_of_the_transport() -> None:
    limit = ConnectionLimit(total=1)
    admitted: list[object] = []

    class Inner(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            admitted.append(transport)

    factory = capped(Inner, limit)
    first, second = _Transport(), _Transport()
    factory().connection_made(first)  # type: ignore[arg-type]
    factory().connection_made(second)  # type: ignore[arg-type]
    assert admitted == [first] and not first.closed
    assert second.written.startswith(b"HTTP/1.1 503 ") and second.closed
