"""Database faults for real: a throwaway PostgreSQL this script starts, hangs and stops.

    .venv/bin/python benchmarks/faults.py [--phase-seconds 5]

Needs PostgreSQL's server binaries (Debian's postgresql package) and root (the server runs as
the `postgres` user). It never touches the machine's own server: it runs `initdb` into a temp
directory and starts `postgres` there on a free loopback port. Then it runs `carebot serve`
(with `CAREBOT_DB_TIMEOUT_SECONDS=2`) against it, keeps customers writing and polls /healthz,
and in turn: runs normally, freezes the server (SIGSTOP), thaws it, stops it (fast shutdown),
starts it again. It prints per phase the answers the customers got, the slowest of them (a
message is in flight when the server freezes: it is answered within the database timeout)
and /healthz's slowest answer, the time the service took to serve again after the restart,
the service's outage log lines, and checks that every message answered 200 is stored exactly
once and every message answered 503, sent again afterwards, is stored once too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._service import ROOT, free_port, fresh_database
from carebot.db.engine import make_engine, make_sessionmaker
from carebot.db.models import Message

MESSAGES = "/api/v1/channels/http/messages"


def pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise SystemExit(f"{name} not found: install Debian's postgresql package")
    return str(found[-1])


class ThrowawayPostgres:
    """A PostgreSQL server of this script's own, in a temp directory."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="carebot-faults-"))
        shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        subprocess.run(["runuser", "-u", "postgres", "--", pg_bin("initdb"), "-D",
                        str(self.dir / "data"), "-A", "trust", "-U", "postgres"],
                       check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", pg_bin("postgres"), "-D",
             str(self.dir / "data"), "-p", str(self.port), "-k", str(self.dir),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run([pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                              stdout=subprocess.DEVNULL).returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit("the throwaway PostgreSQL did not start")

    def postmaster(self) -> int:
        pid_line = (self.dir / "data" / "postmaster.pid").read_text().splitlines()[0]
        return int(pid_line)

    def freeze(self, on: bool) -> None:
        """SIGSTOP/SIGCONT the server and all its backends: a hung database."""
        main = self.postmaster()
        children = subprocess.run(["pgrep", "-P", str(main)], capture_output=True,
                                  text=True).stdout.split()
        for pid in [main, *map(int, children)]:
            os.kill(pid, signal.SIGSTOP if on else signal.SIGCONT)

    def stop(self) -> None:
        """Fast shutdown: every connection is cut, as when the server goes down."""
        subprocess.run(["runuser", "-u", "postgres", "--", pg_bin("pg_ctl"), "stop", "-m",
                        "fast", "-D", str(self.dir / "data")], check=True,
                       stdout=subprocess.DEVNULL)
        if self.proc is not None:  # pg_ctl waited for the server; runuser may linger
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def remove(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.freeze(False)
                self.stop()
            except (OSError, subprocess.SubprocessError):
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Traffic:
    """Customers writing without pause; every answer recorded."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.phase = "normal"
        self.answers: dict[str, Counter[int]] = {}
        self.health_worst: dict[str, float] = {}
        self.answer_worst: dict[str, float] = {}
        self.accepted: set[str] = set()
        self.refused: list[dict[str, str]] = []
        self.n = 0

    async def customer(self, http: aiohttp.ClientSession, user: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.n += 1
            body = {"user_id": user, "message_id": f"{user}-{self.n}", "text": "where is my order"}
            start, phase = time.monotonic(), self.phase
            try:
                async with http.post(self.base + MESSAGES, json=body,
                                     timeout=aiohttp.ClientTimeout(total=30)) as resp:
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            self.answer_worst[phase] = max(self.answer_worst.get(phase, 0),
                                           time.monotonic() - start)
            self.answers.setdefault(self.phase, Counter())[status] += 1
            if status == 200:
                self.accepted.add(body["message_id"])
            else:
                self.refused.append(body)
                await asyncio.sleep(0.05)

    async def health(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            start = time.monotonic()
            try:
                async with http.get(self.base + "/healthz",
                                    timeout=aiohttp.ClientTimeout(total=30)) as resp:
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                pass
            took = time.monotonic() - start
            self.health_worst[self.phase] = max(self.health_worst.get(self.phase, 0), took)
            await asyncio.sleep(0.25)


async def wait_serving(base: str, limit: float) -> float:
    start = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() - start < limit:
            try:
                async with http.get(base + "/healthz") as resp:
                    if resp.status == 200:
                        return time.monotonic() - start
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("carebot did not serve again")


async def run(pg: ThrowawayPostgres, url: str, base: str, seconds: float) -> None:
    traffic = Traffic(base)
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(traffic.customer(http, f"f{i}", stop)) for i in range(8)]
        tasks.append(asyncio.create_task(traffic.health(http, stop)))
        await asyncio.sleep(seconds)
        traffic.phase = "hung"
        pg.freeze(True)
        await asyncio.sleep(seconds)
        traffic.phase = "thawed"
        pg.freeze(False)
        await asyncio.sleep(seconds)
        traffic.phase = "stopped"
        pg.stop()
        await asyncio.sleep(seconds)
        traffic.phase = "restarted"
        pg.start()
        back = await wait_serving(base, 60)
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        # What got a 503 was not stored: the customer's bridge sends it again.
        for body in traffic.refused:
            async with http.post(base + MESSAGES, json=body) as resp:
                if resp.status == 200:
                    traffic.accepted.add(body["message_id"])
    for phase in ("normal", "hung", "thawed", "stopped", "restarted"):
        print(f"{phase:<10} answers {dict(sorted(traffic.answers.get(phase, {}).items()))}   "
              f"slowest answer {traffic.answer_worst.get(phase, 0):.2f} s, "
              f"slowest /healthz {traffic.health_worst.get(phase, 0):.2f} s")
    print(f"serving again {back:.1f} s after PostgreSQL restarted")
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        stored = dict((await session.execute(
            select(Message.external_id, func.count()).where(Message.direction == "in")
            .group_by(Message.external_id))).all())
    await engine.dispose()
    lost = [m for m in traffic.accepted if stored.get(m) != 1]
    doubled = [m for m, n in stored.items() if n > 1]
    print(f"verify    accepted {len(traffic.accepted)} (incl. {len(traffic.refused)} sent again "
          f"after a 503), lost {len(lost)}, doubled {len(doubled)}: "
          f"{'OK' if not lost and not doubled else 'FAILED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase-seconds", type=float, default=5.0)
    args = parser.parse_args()
    pg = ThrowawayPostgres()
    service: subprocess.Popen[bytes] | None = None
    log_path = pg.dir / "carebot.log"
    try:
        pg.start()
        subprocess.run([pg_bin("psql"), "-h", "127.0.0.1",
                        "-p", str(pg.port), "-U", "postgres", "-c", "CREATE DATABASE carebot"],
                       check=True, stdout=subprocess.DEVNULL)
        url = fresh_database(f"postgresql+asyncpg://postgres@127.0.0.1:{pg.port}/carebot")
        port = free_port()
        env = {**os.environ, "CAREBOT_DATABASE_URL": url, "CAREBOT_DB_TIMEOUT_SECONDS": "2",
               "CAREBOT_KNOWLEDGE_DIR": str(ROOT / "knowledge"), "CAREBOT_RUN_TIMERS": "false"}
        with open(log_path, "wb") as log:
            service = subprocess.Popen([sys.executable, "-m", "carebot", "serve", "--no-migrate",
                                        "--port", str(port)], env=env, cwd=ROOT, stdout=log,
                                       stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{port}"
            asyncio.run(wait_serving(base, 120))
            print(f"carebot on a throwaway PostgreSQL (port {pg.port}); "
                  f"{args.phase_seconds:.0f} s per phase")
            asyncio.run(run(pg, url, base, args.phase_seconds))
    finally:
        if service is not None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(30)
            except subprocess.TimeoutExpired:
                service.kill()
        outage = [line for line in log_path.read_text(errors="replace").splitlines()
                  if "carebot.database" in line] if log_path.exists() else []
        errors = [line for line in log_path.read_text(errors="replace").splitlines()
                  if " ERROR " in line and "carebot.database" not in line] \
            if log_path.exists() else []
        print(f"log       {len(outage)} outage line(s), {len(errors)} other ERROR line(s)")
        for line in outage:
            print(f"          {line[:140]}")
        pg.remove()


if __name__ == "__main__":
    main()
