"""Contention: agents transferring, replying and resolving while customers keep writing.

    .venv/bin/python benchmarks/contention.py [--seconds 10] [--agents 4] [--customers 24]
        [--involved 12] [--agent-pause 0.1] [--agents-alone]
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
would show here), per phase the CPU the service, its PostgreSQL backends and this client
used against the whole machine's, and on PostgreSQL what the backends were doing (lock waits
or waiting for the service). `--agents-alone` runs a third phase with the agent load alone:
its CPU per agent action, and how much of the drop that CPU explains. Then it checks the
database: every message answered 200 is stored exactly
once, and every conversation's `effort_score` equals the sum of its touchpoints' effort
(a lost update in a counter shows as a drift).
"""

from __future__ import annotations

import argparse
import asyncio
import os
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

from benchmarks._service import fresh_database, serve_process, wait_ready
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
        self.involved = 0
        self.actions = 0
        self.statuses: Counter[int] = Counter()
        self.accepted: set[str] = set()
        self.cpu: dict[str, float] = {}
        self.machine = (0.0, 0.0)
        self.waits: Counter[str] = Counter()
        self.wait_samples = 0


def _ticks(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine, every process of every user included."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), idle / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                text=True).stdout.split():
        found += _descendants(int(child))
    return found


class Meter:
    """CPU seconds of the service's processes, the database's backends and this client; and,
    on PostgreSQL, what the backends were doing (pg_stat_activity) every 50 ms.

    Is the contended phase slower because transactions wait for each other's locks, or
    because the agents' work takes CPU from everything else on a small machine? Backends
    waiting on a lock show as `Lock:…`; `idle in transaction` is a backend waiting for its
    client (the service) to send the next statement."""

    def __init__(self, service_pid: int, url: str) -> None:
        self.service_pid = service_pid
        self.pg_dsn = (url.replace("postgresql+asyncpg://", "postgresql://")
                       if url.startswith("postgresql") else None)
        self.conn: Any = None
        self.start: dict[str, float] = {}
        self.seen: dict[int, float] = {}
        self.machine = self.machine_start = (0.0, 0.0)

    async def _backends(self) -> list[int]:
        if self.conn is None:
            return []
        rows = await self.conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        return [int(r["pid"]) for r in rows]

    async def _cpu(self) -> dict[str, float]:
        backends = await self._backends()
        for pid in backends:  # a backend first seen mid-phase counts from its start
            self.seen.setdefault(pid, 0.0)
        self.machine = _machine()
        per_process = [_ticks(p) for p in _descendants(self.service_pid)]
        return {"service": sum(per_process),
                "postgres": sum(max(0.0, _ticks(p) - t) for p, t in self.seen.items()),
                "client": time.process_time()}

    async def begin(self) -> None:
        if self.pg_dsn is not None and self.conn is None:
            import asyncpg
            self.conn = await asyncpg.connect(self.pg_dsn)
        self.seen = {p: _ticks(p) for p in await self._backends()}
        self.start = await self._cpu()
        self.machine_start = self.machine

    async def end(self, tally: Tally) -> None:
        now = await self._cpu()
        tally.cpu = {k: now[k] - self.start[k] for k in now}
        tally.machine = (self.machine[0] - self.machine_start[0],
                         self.machine[1] - self.machine_start[1])

    async def sample_waits(self, tally: Tally, stop: float) -> None:
        if self.conn is None:
            return
        while time.monotonic() < stop:
            rows = await self.conn.fetch(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'")
            tally.wait_samples += 1
            for r in rows:
                if r["state"] == "active":
                    what = (f"{r['wait_event_type']}:{r['wait_event']}"
                            if r["wait_event_type"] else "active on CPU")
                else:
                    what = str(r["state"])
                tally.waits[what] += 1
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


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
                if involved:
                    tally.involved += 1
                else:
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
            tally.actions += 1
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
                tag: str, meter: Meter, *, customers: bool, agents: bool
                ) -> tuple[Tally, float]:
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        await meter.begin()
        stop = time.monotonic() + args.seconds
        tasks = [customer(http, base, f"{tag}-u{i}", stop, tally, involved=False)
                 for i in range(args.customers if customers else 0)]
        if agents:
            tasks += [customer(http, base, f"{tag}-i{i}", stop, tally, involved=True)
                      for i in range(args.involved)]
            tasks += [agent_loop(http, base, t, agent_ids, stop, tally, args.agent_pause)
                      for t in tokens]
        start = time.monotonic()
        await asyncio.gather(*tasks, meter.sample_waits(tally, stop))
        took = time.monotonic() - start
        await meter.end(tally)
        return tally, took


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


def report_cpu(phases: list[tuple[str, Tally, float]]) -> None:
    """Where the CPU went in each phase; with the agents-alone phase, how much of the drop
    the agent load's own CPU explains."""
    cores = os.cpu_count() or 1
    for name, tally, secs in phases:
        total = sum(tally.cpu.values())
        print(f"cpu {name:<16} service {tally.cpu['service'] / secs:4.2f}  postgres "
              f"{tally.cpu['postgres'] / secs:4.2f}  client {tally.cpu['client'] / secs:4.2f}"
              f"  = {total / secs:4.2f} of {cores} cores (whole machine busy "
              f"{tally.machine[0] / secs:4.2f}, idle {tally.machine[1] / secs:4.2f}); "
              f"{tally.uninvolved / secs:.0f} uninvolved + {tally.involved / secs:.0f} "
              f"involved msg/s, {tally.actions / secs:.0f} agent actions/s")
        if tally.wait_samples:
            busy = {k: n / tally.wait_samples for k, n in tally.waits.most_common()
                    if k != "idle"}
            print("    postgres backends on average: " + ", ".join(
                f"{k} {v:.2f}" for k, v in busy.items()))
    if len(phases) < 3:
        return
    (_, bt, _), (_, lt, ls), (_, at, _) = phases
    per_msg = sum(bt.cpu.values()) / max(1, bt.uninvolved)
    per_action = {k: v / max(1, at.actions) for k, v in at.cpu.items()}
    agent_cpu = lt.actions * sum(per_action.values()) / ls  # cores it took when contended
    left = sum(lt.cpu.values()) / ls - agent_cpu
    print(f"cpu per uninvolved message {per_msg * 1e3:.2f} ms; per agent action (with its "
          f"involved customers' messages and live events) "
          f"{sum(per_action.values()) * 1e3:.1f} ms: " + ", ".join(
              f"{k} {v * 1e3:.1f}" for k, v in per_action.items()))
    # Bound by CPU, the uninvolved customers get what the agent load leaves of the CPU the
    # run got, at the baseline's CPU per message; time lost waiting would leave them below.
    print(f"with agent load: the agent load took {agent_cpu:.2f} cores, leaving {left:.2f} "
          f"for {left / per_msg:.0f} uninvolved msg/s at the baseline's cost; measured "
          f"{lt.uninvolved / ls:.0f} ({lt.uninvolved / ls / (left / per_msg):.0%} of that)")


async def drive(url: str, base: str, args: argparse.Namespace, service_pid: int) -> None:
    tokens = await make_agents(url, args.agents)
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        from carebot.db.models import Agent
        agent_ids = list(await session.scalars(select(Agent.id).order_by(Agent.id)))
    await engine.dispose()
    meter = Meter(service_pid, url)
    try:
        base_tally, base_s = await phase(base, args, tokens, agent_ids, "a", meter,
                                         customers=True, agents=False)
        load_tally, load_s = await phase(base, args, tokens, agent_ids, "b", meter,
                                         customers=True, agents=True)
        phases = [("no agent load", base_tally, base_s), ("with agent load", load_tally, load_s)]
        if args.agents_alone:
            alone, alone_s = await phase(base, args, tokens, agent_ids, "c", meter,
                                         customers=False, agents=True)
            phases.append(("agent load alone", alone, alone_s))
    finally:
        await meter.close()
    before = base_tally.uninvolved / base_s
    after = load_tally.uninvolved / load_s
    print(f"uninvolved customers, no agent load   {before:8.0f} msg/s")
    print(f"uninvolved customers, with agent load {after:8.0f} msg/s   "
          f"ratio {after / before:.0%} (target >= 80%)")
    statuses = sum((t.statuses for _, t, _ in phases), Counter[int]())
    errors = {s: n for s, n in statuses.items() if s >= 500}
    print(f"responses {dict(sorted(statuses.items()))}; 5xx: {sum(errors.values())}")
    report_cpu(phases)
    accepted = set().union(*(t.accepted for _, t, _ in phases))
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
    parser.add_argument("--agents-alone", action="store_true",
                        help="a third phase with the agent load alone, to measure its CPU")
    parser.add_argument("--database-url")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    url = fresh_database(args.database_url)
    with serve_process(url, {"CAREBOT_RUN_TIMERS": "false"},
                       workers=args.workers) as (base, service):
        asyncio.run(wait_ready(base))
        print(f"carebot on {url.split(':')[0]}, {args.workers} process(es); "
              f"{args.customers} uninvolved customers, {args.involved} involved, "
              f"{args.agents} agents; {args.seconds:.0f} s per phase")
        asyncio.run(drive(url, base, args, service.pid))


if __name__ == "__main__":
    main()
