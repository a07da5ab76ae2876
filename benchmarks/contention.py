"""Contention: agents transferring, replying and resolving while customers keep writing.

    .venv/bin/python benchmarks/contention.py [--seconds 10] [--agents 4] [--customers 24]
        [--involved 12] [--agent-pause 0.1]
        [--database-url postgresql+asyncpg://…/carebot_contention --workers 2]

Starts `carebot serve` (SQLite in a temp dir by default; the PostgreSQL database given is
wiped) and drives it over HTTP on loopback in two phases of `--seconds` each:

1. baseline — `--customers` uninvolved customers ask FAQ questions back to back;
2. contended — the same customers again, while `--involved` other customers ask for a person
   and keep writing (every 50 ms), and `--agents` agents, each on the live event stream as
   the console is, claim queued conversations and answer every message of theirs with a
   reply and then a transfer to another agent, a transfer back to the queue or a resolution,
   pausing `--agent-pause` seconds between actions (0.1 s: busier than any person).

It prints the uninvolved customers' messages/s in both phases and their ratio (target: the
contended phase keeps ≥ 80% of the baseline), every 5xx (a deadlock surfaced as an error
would show here), and then checks the database: every message answered 200 is stored exactly
once, and every conversation's `effort_score` equals the sum of its touchpoints' effort
(a lost update in a counter shows as a drift).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._service import ROOT, fresh_database
from carebot.agents.accounts import create_agent
from carebot.db.engine import make_engine, make_sessionmaker
from carebot.db.models import Conversation, Message, Touchpoint
from carebot.domain.clock import system_clock

MESSAGES = "/api/v1/channels/http/messages"
QUESTIONS = ["where is my order", "how do I return an item", "when will my refund arrive",
             "how do I reset my password", "do you ship abroad", "can I change my address"]


class Tally:
    """Outcomes of one phase."""

    def __init__(self) -> None:
        self.uninvolved = 0
        self.statuses: Counter[int] = Counter()
        self.accepted: set[str] = set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def make_agents(url: str, n: int) -> list[str]:
    engine = make_engine(url)
    tokens = []
    async with make_sessionmaker(engine).begin() as session:
        for i in range(n):
            agent, token = await create_agent(session, f"agent{i}", "agent", 1000,
                                              system_clock())
            agent.status = "online"
            tokens.append(token)
    await engine.dispose()
    return tokens


async def customer(http: aiohttp.ClientSession, base: str, name: str, stop: float,
                   tally: Tally, *, involved: bool) -> None:
    n = 0
    while time.monotonic() < stop:
        n += 1
        text = ("/human" if n == 1 else f"hello? still waiting {n}") if involved else (
            random.choice(QUESTIONS))
        mid = f"{name}-{n}"
        async with http.post(base + MESSAGES, json={"user_id": name, "message_id": mid,
                                                    "text": text}) as resp:
            tally.statuses[resp.status] += 1
            await resp.read()
            if resp.status == 200:
                tally.accepted.add(mid)
                if not involved:
                    tally.uninvolved += 1
        if involved:
            await asyncio.sleep(0.05)


async def agent_loop(http: aiohttp.ClientSession, base: str, token: str, others: list[int],
                     stop: float, tally: Tally, pause: float) -> None:
    """An agent working the way a console does: on its live events, not by polling lists."""
    headers = {"Authorization": f"Bearer {token}"}
    me = int((await (await http.get(base + "/api/v1/me", headers=headers)).json())["id"])

    async def call(method: str, path: str, body: Any = None) -> None:
        async with http.request(method, base + path, json=body, headers=headers) as resp:
            tally.statuses[resp.status] += 1
            await resp.read()

    async def work(cid: int) -> None:
        await call("POST", f"/api/v1/conversations/{cid}/reply", {"text": "on it"})
        roll = random.random()
        if roll < 0.4:
            await call("POST", f"/api/v1/conversations/{cid}/transfer",
                       {"agent_id": random.choice([a for a in others if a != me])})
        elif roll < 0.6:
            await call("POST", f"/api/v1/conversations/{cid}/transfer", {"agent_id": None})
        elif roll < 0.8:
            await call("POST", f"/api/v1/conversations/{cid}/resolve", {"code": "answered"})

    async with http.ws_connect(base + "/api/v1/events", headers=headers) as ws:
        while time.monotonic() < stop:
            try:
                event = await ws.receive_json(timeout=max(0.01, stop - time.monotonic()))
            except (TimeoutError, TypeError, ValueError):
                continue
            cid = event.get("conversation_id")
            if event["kind"] == "queued" and cid:
                await call("POST", f"/api/v1/conversations/{cid}/claim")
            elif event["kind"] in ("assigned", "message") and cid and (
                    me in event["agent_ids"]):
                await work(cid)
            else:
                continue
            await asyncio.sleep(pause)


async def phase(base: str, args: argparse.Namespace, tokens: list[str], agent_ids: list[int],
                contended: bool, tag: str) -> tuple[Tally, float]:
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        stop = time.monotonic() + args.seconds
        tasks = [customer(http, base, f"{tag}-u{i}", stop, tally, involved=False)
                 for i in range(args.customers)]
        if contended:
            tasks += [customer(http, base, f"{tag}-i{i}", stop, tally, involved=True)
                      for i in range(args.involved)]
            tasks += [agent_loop(http, base, t, agent_ids, stop, tally, args.agent_pause)
                      for t in tokens]
        start = time.monotonic()
        await asyncio.gather(*tasks)
        return tally, time.monotonic() - start


async def integrity(url: str, accepted: set[str]) -> tuple[int, int, int]:
    """(accepted messages stored exactly once, stored twice or more, conversations whose
    effort_score differs from the sum of their touchpoints' effort)."""
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        counts = dict((await session.execute(
            select(Message.external_id, func.count()).where(Message.direction == "in")
            .group_by(Message.external_id))).all())
        drift = await session.scalar(
            select(func.count()).select_from(
                select(Conversation.id)
                .outerjoin(Touchpoint, Touchpoint.conversation_id == Conversation.id)
                .group_by(Conversation.id, Conversation.effort_score)
                .having(func.coalesce(func.sum(Touchpoint.effort), 0)
                        != Conversation.effort_score)
                .subquery()))
    await engine.dispose()
    once = sum(1 for mid in accepted if counts.get(mid) == 1)
    doubled = sum(1 for n in counts.values() if n > 1)
    return once, doubled, int(drift or 0)


async def drive(url: str, base: str, args: argparse.Namespace) -> None:
    tokens = await make_agents(url, args.agents)
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        from carebot.db.models import Agent
        agent_ids = list(await session.scalars(select(Agent.id).order_by(Agent.id)))
    await engine.dispose()
    base_tally, base_s = await phase(base, args, tokens, agent_ids, False, "a")
    load_tally, load_s = await phase(base, args, tokens, agent_ids, True, "b")
    before = base_tally.uninvolved / base_s
    after = load_tally.uninvolved / load_s
    print(f"uninvolved customers, no agent load   {before:8.0f} msg/s")
    print(f"uninvolved customers, with agent load {after:8.0f} msg/s   "
          f"ratio {after / before:.0%} (target >= 80%)")
    errors = {s: n for s, n in (base_tally.statuses + load_tally.statuses).items() if s >= 500}
    print(f"responses {dict(sorted((base_tally.statuses + load_tally.statuses).items()))}; "
          f"5xx: {sum(errors.values())}")
    accepted = base_tally.accepted | load_tally.accepted
    once, doubled, drift = await integrity(url, accepted)
    verdict = "OK" if once == len(accepted) and not doubled and not drift else "FAILED"
    print(f"verify    accepted {len(accepted)}, stored once {once}, doubled {doubled}, "
          f"effort drift in {drift} conversation(s): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--customers", type=int, default=24)
    parser.add_argument("--involved", type=int, default=12)
    parser.add_argument("--agent-pause", type=float, default=0.1)
    parser.add_argument("--database-url")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    url = fresh_database(args.database_url)
    port = free_port()
    env = {**os.environ, "CAREBOT_DATABASE_URL": url, "CAREBOT_LOG_LEVEL": "WARNING",
           "CAREBOT_KNOWLEDGE_DIR": str(ROOT / "knowledge"), "CAREBOT_RUN_TIMERS": "false"}
    cmd = [sys.executable, "-m", "carebot", "serve", "--no-migrate", "--port", str(port)]
    if args.workers > 1:
        cmd += ["--workers", str(args.workers)]
    service = subprocess.Popen(cmd, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_ready(base))
        print(f"carebot on {url.split(':')[0]}, {args.workers} process(es); "
              f"{args.customers} uninvolved customers, {args.involved} involved, "
              f"{args.agents} agents; {args.seconds:.0f} s per phase")
        asyncio.run(drive(url, base, args))
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()


async def wait_ready(base: str) -> None:
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


if __name__ == "__main__":
    main()
