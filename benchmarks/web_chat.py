"""Web chat under load: many visitors connected over WebSockets, some of them chatting.

    .venv/bin/python benchmarks/web_chat.py [--visitors 2000] [--chatting 200] [--rate 200]
        [--seconds 30] [--agent-replies 200] [--agent-rate 20]
        [--database-url postgresql+asyncpg://…/carebot_web_bench --workers 2]

Starts `carebot serve` (SQLite in a temp dir by default; a PostgreSQL database given is
wiped), adds a site, and opens `--visitors` widget sockets (hello, ready, history) from this
process. Then:

1. memory: the service's resident memory (all its processes) before and after the sockets
   connected, per idle connection;
2. chat: `--chatting` of them ask FAQ questions at `--rate` messages/s in all for
   `--seconds` (each visitor waits for its answer before asking again); latency is from the
   send to the bot's answer arriving in the socket (one clock);
3. outbox: visitors ask for a person (an online agent with room takes them), and the agent
   sends `--agent-replies` replies through the API at `--agent-rate` per second; latency from
   the API call to the reply arriving in the visitor's socket (through the outbox worker);
4. integrity: every acknowledged message is stored once, every answer and reply reached its
   socket once, and every outbox row of the web channel ended `sent`.

Target (issue 21): 2,000 connected visitors on one process, p99 <= 100 ms at 200 messages/s,
<= 50 KB of memory per idle connection. The load generator shares the machine (and its
cores) with the service, so the figures are conservative.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._service import fresh_database, percentile, serve_process, wait_ready
from carebot.agents.accounts import create_agent
from carebot.channels import web_store
from carebot.cli import raise_file_limit
from carebot.db.engine import make_engine, make_sessionmaker
from carebot.db.models import Message, OutboxMessage
from carebot.domain.clock import system_clock

ORIGIN = "http://shop.bench"
QUESTIONS = [
    "How long does a refund take?", "where is my order", "Can I change my delivery address?",
    "What payment methods do you accept?", "How do I reset my password?",
    "Do you ship abroad?", "How can I return an item?", "When will my parcel arrive?",
]
_CIDS = itertools.count(1)


def rss_kb(root_pid: int) -> int:
    """Resident memory of a process and its children (the --workers processes), in KB."""
    pids = [root_pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(root_pid)], capture_output=True, text=True)
        pids += [int(p) for p in out.stdout.split()]
    except OSError:
        pass
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


class Visitor:
    """One widget: its socket and what it was shown."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.shown: Counter[int] = Counter()
        self.waiting: dict[str, float] = {}  # cid -> sent at
        self.echo: dict[str, int] = {}  # cid -> message id
        self.answer = asyncio.Event()
        self.latencies: list[float] = []
        self.timed: list[tuple[float, float]] = []  # (sent at, latency ms)
        self.acked: set[str] = set()
        self.agent_texts: dict[str, float] = {}  # agent reply text -> arrived at
        self.reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = msg.json()
            now = time.perf_counter()
            if frame["type"] == "ack":
                self.acked.add(frame["cid"])
            for m in frame.get("messages", ()):
                self.shown[m["id"]] += 1
                if m["from"] == "visitor" and m.get("cid") in self.waiting:
                    self.echo[m["cid"]] = m["id"]
                elif m["from"] == "agent":
                    self.agent_texts.setdefault(m["text"], now)
                elif m["from"] != "visitor":
                    for cid, sent in list(self.waiting.items()):
                        if cid in self.echo and m["id"] > self.echo[cid]:
                            self.latencies.append((now - sent) * 1000)
                            self.timed.append((sent, (now - sent) * 1000))
                            del self.waiting[cid]
                            self.answer.set()

    async def ask(self, text: str) -> None:
        cid = f"bench{next(_CIDS):010d}"
        self.answer.clear()
        self.waiting[cid] = time.perf_counter()
        await self.ws.send_json({"type": "message", "cid": cid, "text": text})
        try:
            await asyncio.wait_for(self.answer.wait(), 30)
        except TimeoutError:
            print(f"no answer within 30 s to {cid}")


async def connect(http: aiohttp.ClientSession, base: str, key: str) -> Visitor:
    # Asks for permessage-deflate, as browsers do.
    ws = await http.ws_connect(f"{base}/api/v1/channels/web/socket?site={key}",
                               headers={"Origin": ORIGIN}, heartbeat=None,
                               compress=15)
    await ws.send_json({"type": "hello", "since": 0})
    ready = await ws.receive_json(timeout=60)
    assert ready["type"] == "ready", ready
    assert (await ws.receive_json(timeout=60))["type"] == "history"
    visitor = Visitor(ws)
    visitor.reader = asyncio.create_task(visitor.read())
    return visitor


async def setup(url: str) -> tuple[str, str]:
    engine = make_engine(url)
    async with make_sessionmaker(engine).begin() as session:
        site = await web_store.create_site(session, "Bench shop", [ORIGIN], system_clock())
        agent, token = await create_agent(session, "Bench", "agent", 1000, system_clock())
        agent.status = "online"
        key = site.key
    await engine.dispose()
    return key, token


async def drive(base: str, url: str, key: str, token: str, args: argparse.Namespace,
                service_pid: int) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.sleep(1.0)
        before = rss_kb(service_pid)
        visitors: list[Visitor] = []
        started = time.perf_counter()
        for start in range(0, args.visitors, 100):  # in waves, like page views
            visitors += await asyncio.gather(*(connect(http, base, key) for _ in
                                               range(start, min(args.visitors, start + 100))))
        took = time.perf_counter() - started
        await asyncio.sleep(3.0)
        after = rss_kb(service_pid)
        per = (after - before) / len(visitors)
        print(f"{len(visitors)} visitors connected in {took:.1f} s; service memory "
              f"{before / 1024:.0f} MB -> {after / 1024:.0f} MB: {per:.1f} KB per idle "
              f"connection (target <= 50 KB)")

        # --- chat: FAQ questions at a fixed total rate ------------------------------------
        chatting = visitors[: args.chatting]
        free: asyncio.Queue[Visitor] = asyncio.Queue()
        for v in chatting:
            free.put_nowait(v)
        rng = random.Random(7)
        total = int(args.rate * args.seconds)
        asks: list[asyncio.Task[None]] = []

        async def one(v: Visitor) -> None:
            await v.ask(rng.choice(QUESTIONS))
            free.put_nowait(v)

        t0 = time.perf_counter()
        for n in range(total):
            await asyncio.sleep(max(0.0, t0 + n / args.rate - time.perf_counter()))
            v = await free.get()
            asks.append(asyncio.create_task(one(v)))
        await asyncio.gather(*asks)
        elapsed = time.perf_counter() - t0
        latencies = [x for v in chatting for x in v.latencies]
        print(f"chat: {total} messages in {elapsed:.1f} s = {total / elapsed:.0f} messages/s "
              f"from {len(chatting)} visitors; send -> bot answer in the socket: "
              f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
              f"max {max(latencies):.1f} ms (target p99 <= 100 ms)")
        # The first seconds are every visitor's first message (a new customer, contact and
        # conversation each): shown apart from the steady state.
        split = t0 + min(5.0, args.seconds / 3)
        for label, part in (("first 5 s", [x for v in chatting for t, x in v.timed if t < split]),
                            ("after", [x for v in chatting for t, x in v.timed if t >= split])):
            if part:
                print(f"  {label}: {len(part)} answers, p50 {percentile(part, 50):.1f} ms, "
                      f"p99 {percentile(part, 99):.1f} ms")
        worst = sorted((x, t - t0) for v in chatting for t, x in v.timed)[-5:]
        print("  slowest (ms at s into the run): " + ", ".join(
            f"{x:.0f} at {at:.1f}" for x, at in reversed(worst)))

        # --- outbox: agent replies to visitors with a person ------------------------------
        helped = visitors[-min(args.agent_replies, len(visitors) // 4 or 1):]
        await asyncio.gather(*(v.ask("/human") for v in helped))
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{base}/api/v1/conversations?status=assigned&limit=200",
                            headers=headers) as resp:
            convs = [c["id"] for c in (await resp.json())["items"]]
        by_conv: dict[int, Visitor] = {}
        async with make_engine_session(url) as session:
            rows = (await session.execute(select(Message.id, Message.conversation_id))).all()
        conv_of = dict(rows)
        for v in helped:
            cids = {conv_of[i] for i in v.shown if i in conv_of}
            for c in cids:
                by_conv[c] = v
        sent_at: dict[str, tuple[float, Visitor]] = {}
        targets = [c for c in convs if c in by_conv]

        async def reply(n: int) -> None:
            cid = targets[n % len(targets)]
            text = f"agent reply {n}"
            sent_at[text] = (time.perf_counter(), by_conv[cid])
            async with http.post(f"{base}/api/v1/conversations/{cid}/reply",
                                 json={"text": text}, headers=headers) as resp:
                assert resp.status == 201, await resp.text()

        replies = []
        t0 = time.perf_counter()
        for n in range(args.agent_replies):  # agents type: a steady trickle, not a burst
            await asyncio.sleep(max(0.0, t0 + n / args.agent_rate - time.perf_counter()))
            replies.append(asyncio.create_task(reply(n)))
        await asyncio.gather(*replies)
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline and not all(  # noqa: ASYNC110 - polling sockets
            t in v.agent_texts for t, (_, v) in sent_at.items()
        ):
            await asyncio.sleep(0.1)
        outbox_lat = [(v.agent_texts[t] - s) * 1000 for t, (s, v) in sent_at.items()
                      if t in v.agent_texts]
        print(f"outbox: {len(outbox_lat)} of {len(sent_at)} agent replies reached their "
              f"visitor ({args.agent_rate:g}/s); API call -> socket: "
              f"p50 {percentile(outbox_lat, 50):.1f} ms, p99 {percentile(outbox_lat, 99):.1f} ms")

        # --- integrity --------------------------------------------------------------------
        await asyncio.sleep(2.0)
        acked = sum(len(v.acked) for v in visitors)
        twice = sum(1 for v in visitors for c in v.shown.values() if c > 1)
        async with make_engine_session(url) as session:
            stored = await session.scalar(select(func.count()).select_from(Message).where(
                Message.direction == "in"))
            distinct = await session.scalar(select(func.count(func.distinct(
                Message.external_id))).where(Message.direction == "in"))
            unsent = await session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.channel == "web", OutboxMessage.status != "sent"))
            out_total = await session.scalar(select(func.count()).select_from(Message).where(
                Message.direction == "out"))
        shown_out = sum(1 for v in visitors for i in v.shown if i not in _ins(v))
        print(f"integrity: {acked} messages acknowledged, {stored} stored ({distinct} distinct "
              f"ids); {twice} messages shown twice in a socket; {out_total} messages to "
              f"visitors, {shown_out} shown; {unsent} web outbox rows not sent")
        ok = stored == acked == distinct and twice == 0 and unsent == 0 and (
            shown_out == out_total)
        print("integrity check: " + ("OK" if ok else "FAILED"))
        for v in visitors:
            await v.ws.close()


def _ins(v: Visitor) -> set[int]:
    return set(v.echo.values())


class make_engine_session:
    """A session on its own engine, for the checks."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    async def __aenter__(self) -> Any:
        self.session = make_sessionmaker(self.engine)()
        return self.session

    async def __aexit__(self, *_: object) -> None:
        await self.session.close()
        await self.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visitors", type=int, default=2000)
    parser.add_argument("--chatting", type=int, default=200)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--agent-replies", type=int, default=200)
    parser.add_argument("--agent-rate", type=float, default=20.0,
                        help="agent replies per second (all agents together)")
    parser.add_argument("--database-url")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--profile", metavar="FILE", help="profile the service (cProfile)")
    args = parser.parse_args()
    raise_file_limit()
    try:  # the driver shares the machine: spend as little of it as possible
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    url = fresh_database(args.database_url)
    key, token = asyncio.run(setup(url))
    env = {"CAREBOT_WEB_MESSAGES_PER_MINUTE": "100000",
           "CAREBOT_WEB_IP_MESSAGES_PER_MINUTE": "1000000",
           "CAREBOT_WEB_SOCKETS_PER_IP": str(args.visitors + 100),
           # Every simulated visitor comes from 127.0.0.1, as if behind one proxy.
           "CAREBOT_MAX_CONNECTIONS_PER_IP": "0",
           # The agent answers through the API, with no console open: presence off.
           "CAREBOT_PRESENCE_GRACE_SECONDS": "0",
           "CAREBOT_OUTBOX_POLL_SECONDS": "0.2"}
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    with serve_process(url, env, workers=args.workers,
                       python_args=profile) as (base, service):
        asyncio.run(wait_ready(base))
        print(f"carebot on {url.split(':')[0]}, {args.workers} process(es)")
        asyncio.run(drive(base, url, key, token, args, service.pid))


if __name__ == "__main__":
    main()
