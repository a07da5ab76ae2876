"""Graceful shutdown of a real `carebot serve`: on SIGTERM it stops accepting, finishes the
requests and batches in flight, closes the live feeds with 1001 (going away), says so in the
log, and exits within five seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import Message
from tests.helpers import MESSAGES, bearer, make_agent

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until_up(base: str, proc: asyncio.subprocess.Process, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise AssertionError(f"carebot serve exited with {proc.returncode}")
            try:
                async with http.get(f"{base}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("carebot serve did not come up")


async def stuck_websocket(port: int, token: str) -> asyncio.StreamWriter:
    """A live feed whose client then stops reading and never answers a close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((
        "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
    await writer.drain()
    assert b"101" in await reader.readline()
    return writer


async def half_sent_request(port: int) -> asyncio.StreamWriter:
    """A request that announces a body and never sends it."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {MESSAGES} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{".encode())
    await writer.drain()
    return writer


async def until_closed(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The feed's closing message (events before it are skipped)."""
    while True:
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.ERROR):
            return msg


async def test_sigterm_finishes_in_flight_work_closes_feeds_with_1001_and_exits_fast(
    database_url: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path,
) -> None:
    _, token = await make_agent(sessions, "Night", "manager", status="online")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "CAREBOT_DATABASE_URL": database_url,
           "CAREBOT_KNOWLEDGE_DIR": str(ROOT / "knowledge"), "CAREBOT_EMBEDDING_MODEL": "off",
           "CAREBOT_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "carebot", "serve", "--no-migrate", "--port", str(port),
            cwd=ROOT, env=env, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
        )
    try:
        await wait_until_up(base, proc)
        results: list[Any] = []
        async with aiohttp.ClientSession() as http:
            feeds = [await http.ws_connect(f"{base}/api/v1/events", headers=bearer(token))
                     for _ in range(3)]
            for ws in feeds:
                assert (await ws.receive_json())["kind"] == "hello"

            async def customer(n: int) -> None:
                for i in range(1000):
                    body = {"user_id": f"c{n}", "message_id": f"c{n}-{i}",
                            "text": f"question {i}"}
                    try:
                        async with http.post(f"{base}{MESSAGES}", json=body) as resp:
                            results.append((body["message_id"], resp.status))
                    except aiohttp.ClientError as exc:
                        results.append((body["message_id"], type(exc).__name__))
                        return

            # Two clients that misbehave: a console that never answers the close handshake,
            # and a request whose body never comes.
            stuck_ws = await stuck_websocket(port, token)
            half = await half_sent_request(port)
            load = [asyncio.create_task(customer(n)) for n in range(20)]
            await asyncio.sleep(1.0)  # requests and batches are in flight
            stopped_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            closes = await asyncio.wait_for(
                asyncio.gather(*(until_closed(ws) for ws in feeds)), DEADLINE)
            await asyncio.wait_for(asyncio.gather(*load), DEADLINE)
            code = await asyncio.wait_for(proc.wait(), DEADLINE)
            took = time.monotonic() - stopped_at
            for writer in (stuck_ws, half):
                writer.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = log_path.read_text(errors="replace")
    print(f"SIGTERM to exit: {took:.2f} s; {len(results)} requests, "
          f"{sum(1 for _, st in results if st == 200)} answered")
    assert code == 0, log
    assert took < DEADLINE, (took, log)
    assert [(m.type, m.data) for m in closes] == [(aiohttp.WSMsgType.CLOSE, 1001)] * 3
    answered = [mid for mid, status in results if status == 200]
    failed = [(mid, status) for mid, status in results if isinstance(status, int)
              and status != 200]
    assert len(answered) > 20 and failed == [], failed
    # Every message that got its 200 is stored: nothing in flight was dropped.
    async with sessions() as session:
        stored = set(await session.scalars(
            select(Message.external_id).where(Message.external_id.in_(answered))))
        total = await session.scalar(select(func.count()).select_from(Message)
                                     .where(Message.direction == "in"))
    assert stored == set(answered)
    assert total is not None and total >= len(answered)
    assert "shutting down" in log and "stopped in" in log, log
    assert "Traceback" not in log, log
