"""Load benchmark: inbound messages/s through the HTTP channel, verified afterwards.

    .venv/bin/python benchmarks/load.py [--seconds 20] [--concurrency 64] [--drivers 1]
        [--unique-fraction 0.5] [--database-url postgresql+asyncpg://…/carebot_load --workers 2]

Starts carebot (`carebot serve`, SQLite in a temp dir by default; the PostgreSQL database
given is wiped) with the starter knowledge base, and a bare aiohttp JSON echo server; drives
each from a separate process with `--concurrency` senders for `--seconds`; prints messages/s,
p50/p99/max latency, errors and the carebot / bare ratio; then checks in the database that
every accepted message is stored exactly once with its touchpoint, and prints the service's
RSS at start, after warm-up (a tenth of the run, at most a minute) and at end, with its
anonymous part (the rest is code and the model weights mapped from their file), and the
anonymous part every tenth of the run (at most every minute), so growth and plateaus show.

Traffic: many customers, each a short session — an FAQ question (from the starter query set,
paraphrased and misspelled), then "Yes", a follow-up question, or a request for a person —
with unique message ids, plus 5% redeliveries of an already-sent message (which must come back
as duplicates and store nothing).

carebot caches match results by normalised question text, and the starter query set is small,
so unchanged questions would all be cache hits after warm-up. `--unique-fraction` (default 0.5)
makes that share of typed questions new to the service: each gets a random order number or a
random typo (and sometimes an extra word or odd casing), so it misses the cache and is matched
for real. The service's cache hit rate is printed (from `/healthz` of every process).

The driver is a minimal HTTP/1.1 keep-alive client (one connection per sender, pre-serialised
request head): aiohttp's client costs several times more CPU per request, which on a small
machine shared by driver and server would cap the measurement itself. `--drivers` splits the
senders over several driver processes.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MESSAGES = "/api/v1/channels/http/messages"


# --- the bare server -------------------------------------------------------------------------


def run_echo(port: int) -> None:
    """A bare aiohttp JSON handler: the ceiling for any aiohttp service on this machine."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"conversation_id": 1, "status": "bot", "echo": body})

    app = web.Application()
    app.router.add_post(MESSAGES, handle)
    # The same event loop carebot serve uses (uvloop when installed), for a fair ratio.
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                loop=_new_loop())


# --- the load driver -------------------------------------------------------------------------


_FILLERS = ("please", "hi", "hello", "urgent", "again", "thanks", "quick question", "btw")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def perturb(text: str, rng: random.Random) -> str:
    """A question as another customer would type it: never seen before by the service (a random
    order number or a random typo), sometimes also with an extra word or different casing."""
    if rng.random() < 0.5:
        text = f"{text.rstrip('?.! ')} order #{rng.randrange(10_000, 10_000_000)}"
    else:
        words = text.split()
        i = rng.randrange(len(words))
        w = words[i]
        j = rng.randrange(len(w) + 1)
        if rng.random() < 0.5 and len(w) > 3:
            w = w[:j] + w[j + 1:]  # a dropped letter
        else:
            w = w[:j] + rng.choice(_LETTERS) + rng.choice(_LETTERS) + w[j:]  # stray letters
        words[i] = w
        text = " ".join(words)
    roll = rng.random()
    if roll < 0.2:
        text = f"{rng.choice(_FILLERS)} {text}"
    elif roll < 0.3:
        text = text.upper()
    elif roll < 0.4:
        text = text.lower()
    return text


def _questions() -> tuple[list[str], list[str]]:
    faq, other = [], []
    with open(ROOT / "tests/data/starter_queries.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            (faq if row["expected"] else other).append(row["text"])
    return faq, other


class _HttpConnection(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive client: one request in flight, Content-Length bodies.

    aiohttp's client costs ~0.4 ms of CPU per request, which on a 2-core machine shared with
    the server caps the measurement itself; this one costs a small fraction of that.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have the same methods.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        length = 0
        at = head.find(b"content-length:")
        if at >= 0:
            eol = head.find(b"\r\n", at)
            length = int(head[at + 15: eol if eol >= 0 else None])
        if len(self.buf) < end + 4 + length:
            return
        status = int(head[9:12])
        body = bytes(self.buf[end + 4: end + 4 + length])
        del self.buf[: end + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(head % len(body) + body)
        return await self.waiter


async def drive(
    url: str, seconds: float, concurrency: int, seed: int, tag: str, unique_fraction: float
) -> dict[str, Any]:
    """Send realistic traffic for `seconds`; return latencies, counts and accepted ids."""
    faq, other = _questions()
    rng = random.Random(seed)

    def question(pool: list[str]) -> str:
        text = rng.choice(pool)
        return perturb(text, rng) if rng.random() < unique_fraction else text

    latencies: list[float] = []
    errors: dict[str, int] = {}
    accepted: list[str] = []
    duplicates_ok = 0
    deadline = time.monotonic() + seconds
    host, port = url.removeprefix("http://").split(":")
    # Pre-serialised request head; only Content-Length and the body change per request.
    head = (f"POST {MESSAGES} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    perf = time.perf_counter

    def count(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    async def sender(n: int) -> None:
        nonlocal duplicates_ok
        conn: _HttpConnection | None = None

        async def post(body: bytes) -> bytes | None:
            nonlocal conn
            if conn is None:
                _, conn = await loop.create_connection(_HttpConnection, host, int(port))
            started = perf()
            try:
                status, data = await conn.post(head, body)
            except OSError as exc:
                count(type(exc).__name__)
                conn = None
                return None
            latencies.append(round((perf() - started) * 1000, 3))
            if status != 200:
                count(str(status))
                return None
            return data

        session_no = 0
        while time.monotonic() < deadline:
            session_no += 1
            user = f"{tag}-u{n}-{session_no}"
            last_body: bytes | None = None
            last_reply: bytes | None = None
            steps = rng.choice([1, 2, 2, 3])
            for step in range(steps):
                if time.monotonic() >= deadline:
                    return
                msg: dict[str, Any] = {"user_id": user, "message_id": f"{user}-m{step}"}
                roll = rng.random()
                buttons: list[dict[str, str]] = []
                if step > 0 and last_reply is not None and roll < 0.5:
                    replies = json.loads(last_reply).get("replies") or []
                    buttons = replies[0].get("buttons") or [] if replies else []
                if buttons:
                    msg["payload"] = buttons[0]["payload"]  # "Yes" or the first suggestion
                elif step > 0 and roll < 0.5:
                    msg["text"] = question(faq)  # a follow-up question
                elif roll < 0.1:
                    msg["text"] = "I want to talk to a person"
                elif roll < 0.15:
                    msg["text"] = question(other)
                else:
                    msg["text"] = question(faq)
                body = dumps(msg).encode()
                reply = await post(body)
                if reply is not None:
                    accepted.append(msg["message_id"])
                    last_body, last_reply = body, reply
                if last_body is not None and rng.random() < 0.05:
                    # A redelivery: the same message again must come back as a duplicate.
                    again = await post(last_body)
                    if again is not None and json.loads(again).get("duplicate", True):
                        duplicates_ok += 1
                    elif again is not None:
                        count("duplicate_not_recognised")
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    started = time.monotonic()
    await asyncio.gather(*(sender(n) for n in range(concurrency)))
    elapsed = time.monotonic() - started
    return {
        "elapsed": elapsed,
        "requests": len(latencies),
        "latencies": latencies,
        "errors": errors,
        "accepted": accepted,
        "duplicates_ok": duplicates_ok,
    }


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_driver(args: argparse.Namespace) -> None:
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        result = runner.run(
            drive(args.url, args.seconds, args.concurrency, args.seed, args.tag,
                  args.unique_fraction)
        )
    Path(args.out).write_text(json.dumps(result))


# --- the orchestration -----------------------------------------------------------------------


def _wait_up(url: str, processes: int = 1, timeout: float = 120) -> None:
    """Wait until `processes` different service processes answer (each serves only once its
    matcher is built): keep-alive senders connecting earlier would all stick to the first."""
    import urllib.request

    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                seen.add(json.load(resp)["process"])
            if len(seen) >= processes:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"service at {url} did not come up ({len(seen)} of {processes} processes)")


def _cache_stats(base_url: str, processes: int) -> dict[str, int]:
    """Match cache counters summed over the service's processes (each has its own cache).

    With several processes sharing the port, each new connection reaches one of them: ask
    until every process has answered."""
    import urllib.request

    seen: dict[int, dict[str, int]] = {}
    for _ in range(200 * processes):
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=5) as resp:
            health = json.load(resp)
        seen[health["process"]] = health["match_cache"]
        if len(seen) >= processes:
            break
    return {k: sum(s[k] for s in seen.values()) for k in ("hits", "misses")} | {
        "processes": len(seen)}


def _rss_mb(pid: int) -> tuple[float, float]:
    """(resident, of which anonymous) MB of the service and its worker processes.

    The rest is file-backed: code, and the model's weights mapped from their file."""
    total = anon = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                elif line.startswith("RssAnon:"):
                    anon += int(line.split()[1])
        except OSError:
            pass
    return total / 1024, anon / 1024


class _RssSampler(threading.Thread):
    """Samples `_rss_mb(pid)` every `interval` seconds (the first after one interval)."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self.samples.append(_rss_mb(self.pid))

    def stop(self) -> list[tuple[float, float]]:
        """Stop sampling; the samples taken."""
        self._done.set()
        self.join()
        return self.samples


def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [int(x) for x in out.split()]


def _drive_subprocess(url: str, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """Run `--drivers` driver processes splitting the senders; merge what they measured."""
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    for d in range(args.drivers):
        out = Path(tempfile.mkstemp(suffix=".json")[1])
        share = args.concurrency // args.drivers + (d < args.concurrency % args.drivers)
        procs.append((subprocess.Popen(
            [sys.executable, __file__, "--role", "drive", "--url", url, "--seconds",
             str(args.seconds), "--concurrency", str(share), "--seed", str(args.seed + d),
             "--tag", f"{tag}{d}", "--out", str(out),
             "--unique-fraction", str(args.unique_fraction)],
        ), out))
    merged: dict[str, Any] = {"elapsed": 0.0, "requests": 0, "latencies": [], "errors": {},
                              "accepted": [], "duplicates_ok": 0}
    for proc, out in procs:
        if proc.wait() != 0:
            raise SystemExit(f"driver exited with {proc.returncode}")
        r = json.loads(out.read_text())
        out.unlink()
        merged["elapsed"] = max(merged["elapsed"], r["elapsed"])
        merged["requests"] += r["requests"]
        merged["latencies"] += r["latencies"]
        merged["accepted"] += r["accepted"]
        merged["duplicates_ok"] += r["duplicates_ok"]
        for k, v in r["errors"].items():
            merged["errors"][k] = merged["errors"].get(k, 0) + v
    return merged


def _report(name: str, r: dict[str, Any]) -> float:
    from benchmarks._service import percentile

    lat = r["latencies"] or [0.0]
    rate = r["requests"] / r["elapsed"]
    print(f"{name:<8} {rate:>9.0f} msg/s   p50 {percentile(lat, 50):6.1f} ms   "
          f"p99 {percentile(lat, 99):6.1f} ms   max {max(lat):7.1f} ms   "
          f"requests {r['requests']}   errors {r['errors'] or 0}")
    return rate


async def _verify(database_url: str, accepted: list[str]) -> None:
    from sqlalchemy import func, select

    from carebot.db.engine import make_engine
    from carebot.db.models import Message, Touchpoint

    engine = make_engine(database_url)
    async with engine.connect() as conn:
        stored = await conn.scalar(
            select(func.count()).select_from(Message).where(Message.direction == "in")
        )
        distinct = await conn.scalar(
            select(func.count(func.distinct(Message.external_id))).where(Message.direction == "in")
        )
        inbound_ids = select(Message.id).where(Message.direction == "in").scalar_subquery()
        logged = await conn.scalar(
            select(func.count(func.distinct(Touchpoint.message_id))).where(
                Touchpoint.message_id.in_(inbound_ids),
                Touchpoint.kind.in_(["message_in", "survey_answered", "survey_comment"]),
            )
        )
    await engine.dispose()
    unique_accepted = len(set(accepted))
    ok = stored == distinct == unique_accepted == logged
    print(f"verify   accepted {unique_accepted}, stored {stored} (distinct ids {distinct}), "
          f"with touchpoint {logged}: {'OK, none lost or doubled' if ok else 'MISMATCH'}")
    if not ok:
        raise SystemExit(1)


def orchestrate(args: argparse.Namespace) -> None:
    from benchmarks._service import free_port, fresh_database

    database_url = fresh_database(args.database_url)
    kind = "postgresql" if args.database_url else "sqlite"
    env = {
        **os.environ,
        "CAREBOT_DATABASE_URL": database_url,
        "CAREBOT_LOG_LEVEL": "WARNING",
        "CAREBOT_RUN_TIMERS": "false",
    }
    echo_port, port = free_port(), free_port()
    echo = subprocess.Popen([sys.executable, __file__, "--role", "echo", "--port", str(echo_port)])
    serve_cmd = [sys.executable, "-m", "carebot", "serve", "--no-migrate", "--port", str(port)]
    if args.workers > 1:
        serve_cmd += ["--workers", str(args.workers)]
    service = subprocess.Popen(serve_cmd, env=env, cwd=ROOT)
    try:
        _wait_up(f"http://127.0.0.1:{port}/healthz", args.workers)
        time.sleep(1)  # the echo server has no health route; it starts in well under this
        rss_start = _rss_mb(service.pid)
        print(f"carebot on {kind}, {args.workers} process(es); {args.concurrency} senders for "
              f"{args.seconds:.0f} s each run")
        bare = None if args.no_bare else _drive_subprocess(
            f"http://127.0.0.1:{echo_port}", args, "echo")
        # Caches and connections fill up in the first seconds; "flat" is judged after that,
        # from RSS sampled every tenth of the run (a minute at most), so a plateau shows.
        sampler = _RssSampler(service.pid, min(60.0, args.seconds / 10))
        sampler.start()
        ours = _drive_subprocess(f"http://127.0.0.1:{port}", args, "load")
        warm = sampler.stop()
        rss_end = _rss_mb(service.pid)
        cache = _cache_stats(f"http://127.0.0.1:{port}", args.workers)
        our_rate = _report("carebot", ours)
        if bare is not None:
            bare_rate = _report("bare", bare)
            print(f"ratio    carebot / bare = {our_rate / bare_rate:.1%}")
        after = f", {warm[0][0]:.0f} MB after warm-up" if warm else ""
        print(f"rss      carebot {rss_start[0]:.0f} MB at start{after}, {rss_end[0]:.0f} MB at "
              f"end; anonymous {rss_start[1]:.0f} → "
              + (f"{warm[0][1]:.0f} → " if warm else "") + f"{rss_end[1]:.0f} MB")
        if len(warm) > 1:
            print(f"rss      anonymous MB every {sampler.interval:.0f} s after warm-up: "
                  + " ".join(f"{a:.0f}" for _, a in warm))
        print(f"dupes    {ours['duplicates_ok']} redeliveries answered as duplicates")
        lookups = cache["hits"] + cache["misses"]
        print(f"cache    unique fraction {args.unique_fraction:.0%}: {cache['hits']} hits, "
              f"{cache['misses']} misses = {cache['hits'] / max(lookups, 1):.1%} hit rate "
              f"(from {cache['processes']} of {args.workers} process(es))")
    finally:
        for proc in (service, echo):
            proc.send_signal(signal.SIGINT)
        for proc in (service, echo):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    asyncio.run(_verify(database_url, ours["accepted"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=["orchestrate", "echo", "drive"], default="orchestrate")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--database-url", help="PostgreSQL URL (its schema is wiped)")
    parser.add_argument("--workers", type=int, default=1, help="carebot processes")
    parser.add_argument("--drivers", type=int, default=1, help="load driver processes")
    parser.add_argument("--unique-fraction", type=float, default=0.5,
                        help="share of typed questions perturbed so they miss the match cache")
    parser.add_argument("--no-bare", action="store_true",
                        help="skip the bare aiohttp run (e.g. for a long memory run)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int)
    parser.add_argument("--url")
    parser.add_argument("--tag", default="load")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.role == "echo":
        run_echo(args.port)
    elif args.role == "drive":
        run_driver(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
