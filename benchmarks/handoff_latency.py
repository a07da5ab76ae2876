"""How long from a customer's handoff request to the agent's WebSocket `assigned` event.

    .venv/bin/python benchmarks/handoff_latency.py [--handoffs 1000] [--database-url URL]

SQLite (a temp file) by default; pass a PostgreSQL URL to measure LISTEN/NOTIFY fan-out
(the database is wiped). Each handoff is a new customer sending "/human" over the HTTP
channel; the clock starts before the request is sent and stops when the event arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._service import fresh_database, running_service, summary
from carebot.agents.accounts import create_agent
from carebot.db.engine import make_engine, make_sessionmaker
from carebot.domain.clock import system_clock
from carebot.settings import Settings


async def make_online_agent(url: str, capacity: int) -> str:
    engine = make_engine(url)
    async with make_sessionmaker(engine).begin() as session:
        agent, token = await create_agent(session, "bench", "agent", capacity, system_clock())
        agent.status = "online"
    await engine.dispose()
    return token


async def run(url: str, handoffs: int) -> list[float]:
    token = await make_online_agent(url, capacity=min(handoffs, 1000))
    settings = Settings.from_env({}, database_url=url, run_timers=False, log_level="WARNING")
    latencies: list[float] = []
    async with running_service(settings) as (_app, base), aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.ws_connect(f"{base}/api/v1/events", headers=headers) as ws:
            assert (await ws.receive_json())["kind"] == "hello"
            for i in range(handoffs):
                started = time.perf_counter()
                async with http.post(
                    f"{base}/api/v1/channels/http/messages",
                    json={"user_id": f"bench-{i}", "message_id": f"m-{i}", "text": "/human"},
                ) as resp:
                    body = await resp.json()
                    assert body["status"] == "assigned", body
                while True:
                    event = await ws.receive_json(timeout=10)
                    if event["kind"] == "assigned" and event["conversation_id"] == body[
                        "conversation_id"
                    ]:
                        break
                latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--handoffs", type=int, default=1000)
    parser.add_argument("--database-url", help="PostgreSQL URL (wiped!); default temp SQLite")
    args = parser.parse_args()
    if args.handoffs > 1000:
        parser.error("--handoffs is at most 1000 (one agent's maximum capacity)")
    url = fresh_database(args.database_url)
    latencies = asyncio.run(run(url, args.handoffs))
    kind = "postgresql" if args.database_url else "sqlite"
    print(f"handoff -> agent WebSocket 'assigned' event, {len(latencies)} handoffs on {kind}: "
          f"{summary(latencies)}")


if __name__ == "__main__":
    main()
