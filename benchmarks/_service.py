"""Shared benchmark plumbing: a migrated database and a carebot service on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
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


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_process(
    url: str, env: Mapping[str, str] | None = None, *, workers: int = 1,
    python_args: Sequence[str] = (),
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`carebot serve` in processes of its own on a free port of 127.0.0.1, on database `url`
    with the project's knowledge base and `env` on top; yields its base URL and the process,
    and stops it (SIGTERM, then kill after 30 s) on the way out. `python_args` go to the
    interpreter (a profiler, say)."""
    port = free_port()
    full_env = {**os.environ, "CAREBOT_DATABASE_URL": url, "CAREBOT_LOG_LEVEL": "WARNING",
                "CAREBOT_KNOWLEDGE_DIR": str(ROOT / "knowledge"), **(env or {})}
    cmd = [sys.executable, *python_args, "-m", "carebot", "serve", "--no-migrate",
           "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    service = subprocess.Popen(cmd, env=full_env, cwd=ROOT)
    try:
        yield f"http://127.0.0.1:{port}", service
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()


async def wait_ready(base: str) -> None:
    """Wait until the service at `base` answers /healthz (at most a minute)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(base + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("carebot did not start")


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
