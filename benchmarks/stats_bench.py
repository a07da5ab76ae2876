"""How long the statistics take on a large history: the summary and the CSV export.

    .venv/bin/python benchmarks/stats_bench.py [--conversations 100000]
        [--touchpoints 1000000] [--database-url postgresql+asyncpg://…/carebot_statsbench]

SQLite (a temp file) by default; with --database-url, that PostgreSQL database's `public`
schema is DROPPED and recreated — use a dedicated database (createdb carebot_statsbench).

The history is generated (seeded, so runs are comparable) with SQLAlchemy Core bulk inserts:
customers on two channels, 20 agents, conversations over 90 days in a realistic mix — bot
answers confirmed with Yes, timeouts, handoffs with queue waits, SLA breaches, transfers,
reopens, questions the bot could not match, still-open conversations — with consistent running
summaries, about ten touchpoints each (padded with customer/agent chatter to the requested
total), and CSAT/CES surveys. Then ANALYZE (VACUUM ANALYZE on PostgreSQL, as autovacuum
would), and each statistic is timed over the whole 90 days (Europe/Berlin): the summary
three times (the first run reads from a cold cache), the time series, per-agent, per-FAQ
and knowledge-gap queries once, and the CSV export by streaming every row and counting
the bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._service import fresh_database
from carebot.db import journey_marks, last_steps
from carebot.db.engine import make_engine, make_sessionmaker
from carebot.db.models import Base
from carebot.db.touchpoints import EFFORT
from carebot.stats import breakdowns
from carebot.stats import metrics as stats
from carebot.stats.csv_export import export_csv
from carebot.stats.knowledge_gaps import knowledge_gaps
from carebot.stats.period import parse_period
from carebot.stats.scope import StatsQuery

T = Base.metadata.tables
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 90
AGENTS = 20
CHUNK = 10_000
FAQS = ["order-status", "password-reset", "delivery-time", "return-how", "refund-status",
        "payment-methods", "delivery-cost", "order-cancel", "login-problem", "voucher-how-to-use"]
GAP_TOPICS = ["my blender exploded", "can I pay in bitcoin", "do you ship to mars",
              "my dog ate the parcel", "the app shows chinese text", "invoice in latin please",
              "courier was rude to me", "package smells strange", "can I visit the warehouse",
              "my discount vanished at checkout", "wrong colour of the sofa",
              "need a receipt for taxes from 2019"]
GAP_SUFFIX = ["", " please help", " again", " what now", " urgent", " today"]


@dataclass
class Conv:
    """One generated conversation: its row and its touchpoints."""

    row: dict[str, Any]
    tps: list[dict[str, Any]] = field(default_factory=list)
    surveys: list[dict[str, Any]] = field(default_factory=list)

    def tp(self, kind: str, at: datetime, actor: str, **kw: Any) -> None:
        effort = EFFORT.get(kind, 0)
        self.row["effort_score"] += effort
        self.tps.append({
            "conversation_id": self.row["id"], "customer_id": self.row["customer_id"],
            "kind": kind, "actor": actor, "channel": self.row["channel"],
            "agent_id": kw.get("agent_id"), "message_id": None, "faq_id": kw.get("faq_id"),
            "score": kw.get("score"), "effort": effort, "wait_ms": kw.get("wait_ms"),
            "outcome": kw.get("outcome"), "details": kw.get("details"), "created_at": at,
        })


def _ms(a: datetime, b: datetime) -> int:
    return int((b - a).total_seconds() * 1000)


def make_conversation(rng: random.Random, cid: int, customer: int, channel: str,
                      chatter: int, share: float | None = None) -> Conv:
    """A conversation of a random type with consistent summaries and touchpoints; `share`
    (0-1) places its opening along the 90 days, so ids follow opening order as they do in
    a real database (random when None)."""
    span = DAYS * 86400 - 7200
    offset = rng.uniform(0, span) if share is None else share * span + rng.uniform(0, 30)
    opened = START + timedelta(seconds=min(offset, span))
    row: dict[str, Any] = {
        "id": cid, "customer_id": customer, "contact_id": customer, "channel": channel,
        "status": "bot", "opened_at": opened, "updated_at": opened,
        "last_customer_message_at": opened, "last_bot_answer_at": None, "queued_at": None,
        "assigned_agent_id": None, "assigned_at": None, "resolved_at": None,
        "resolved_by": None, "resolution_code": None, "pending_faq_id": None,
        "failed_bot_turns": 0, "customer_messages": 0, "bot_answers": 0, "agent_messages": 0,
        "handoffs": 0, "transfers": 0, "reopen_count": 0, "effort_score": 0,
        "first_bot_response_ms": None, "first_human_response_ms": None,
        "handed_off_at": None, "first_bot_response_us": None,
    }
    c = Conv(row)
    t = opened
    faq = rng.choice(FAQS)

    def customer_says(at: datetime) -> None:
        row["customer_messages"] += 1
        row["last_customer_message_at"] = at
        c.tp("message_in", at, "customer")

    def bot_answers(at: datetime) -> datetime:
        wait = rng.randint(40, 900)
        done = at + timedelta(milliseconds=wait)
        row["bot_answers"] += 1
        if row["first_bot_response_ms"] is None:
            row["first_bot_response_ms"] = wait
            row["first_bot_response_us"] = wait * 1000 + rng.randint(0, 999)
        c.tp("faq_answer", at, "bot", faq_id=faq, score=round(rng.uniform(0.6, 1), 3),
             wait_ms=wait)
        return done

    def resolve(at: datetime, by: str, agent: int | None = None) -> None:
        row.update(status="resolved", resolved_at=at, resolved_by=by, updated_at=at,
                   resolution_code={"agent": "answered", "timeout": "timeout"}.get(by))
        c.tp("resolved", at, "system" if by == "timeout" else "customer", agent_id=agent,
             details={"resolved_by": by})

    def survey(at: datetime, agent: int | None) -> None:
        if rng.random() < 0.3:
            return  # cooldown or channel without surveys
        answered = rng.random() < 0.6
        score = rng.choices([1, 2, 3, 4, 5], [5, 5, 10, 30, 50])[0]
        c.tp("survey_sent", at, "system", details={"kind": "csat"})
        c.surveys.append({
            "conversation_id": cid, "customer_id": customer, "channel": channel,
            "kind": "csat", "scale": 5, "status": "answered" if answered else "expired",
            "awaiting": None, "resolved_by": row["resolved_by"], "agent_id": agent,
            "due_at": at, "sent_at": at, "expires_at": at + timedelta(hours=72),
            "answered_at": at + timedelta(minutes=2) if answered else None,
            "score": score if answered else None, "comment": None, "created_at": at,
        })
        if answered:
            c.tp("survey_answered", at + timedelta(minutes=2), "customer", score=float(score))
            if rng.random() < 0.3:
                ces = rng.randint(1, 7)
                c.surveys.append({**c.surveys[-1], "kind": "ces", "scale": 7, "score": ces})

    def human(at: datetime, reason: str, text: str | None) -> datetime:
        row.update(status="queued", queued_at=at)
        if row["handed_off_at"] is None:
            row["handed_off_at"] = at
        row["handoffs"] += 1
        details: dict[str, Any] = {"reason": reason}
        if text is not None:
            details.update(text=text, top_faq_id=faq, top_score=round(rng.random() / 5, 4))
        c.tp("handoff", at, "bot", details=details)
        wait = rng.choice([0, 0, 0, rng.randint(1, 120), rng.randint(60, 900)])
        if wait > 300:
            c.tp("sla_breached", at + timedelta(seconds=300), "system", wait_ms=300_000)
        at += timedelta(seconds=wait)
        agent = rng.randint(1, AGENTS)
        row.update(status="assigned", assigned_agent_id=agent, assigned_at=at)
        c.tp("assigned", at, "system", agent_id=agent, wait_ms=wait * 1000)
        at += timedelta(seconds=rng.randint(20, 400))
        if row["first_human_response_ms"] is None:
            row["first_human_response_ms"] = _ms(row["handed_off_at"], at)
        for _ in range(1 + chatter):
            row["agent_messages"] += 1
            c.tp("agent_reply", at, "agent", agent_id=agent)
            at += timedelta(seconds=rng.randint(20, 300))
            customer_says(at)
            at += timedelta(seconds=rng.randint(20, 300))
        if rng.random() < 0.1:
            other = agent % AGENTS + 1
            row["transfers"] += 1
            c.tp("transfer", at, "agent", agent_id=agent,
                 details={"from_agent_id": agent, "to_agent_id": other})
            c.tp("assigned", at, "agent", agent_id=other, wait_ms=_ms(row["queued_at"], at))
            row.update(assigned_agent_id=other, assigned_at=at)
            agent = other
            at += timedelta(seconds=rng.randint(60, 600))
            row["agent_messages"] += 1
            c.tp("agent_reply", at, "agent", agent_id=agent)
        at += timedelta(seconds=rng.randint(30, 600))
        resolve(at, "agent", agent)
        survey(at, agent)
        return at

    kind = rng.random()
    customer_says(t)
    if kind < 0.40:  # confirmed by the customer
        t = bot_answers(t)
        for _ in range(chatter):
            t += timedelta(seconds=rng.randint(10, 120))
            customer_says(t)
            t = bot_answers(t)
        t += timedelta(seconds=rng.randint(10, 300))
        customer_says(t)
        c.tp("faq_feedback", t, "customer", faq_id=faq, details={"helpful": True})
        resolve(t, "bot")
        survey(t, None)
    elif kind < 0.60:  # the customer went silent
        t = bot_answers(t)
        for _ in range(chatter):
            t += timedelta(seconds=rng.randint(10, 120))
            customer_says(t)
            t = bot_answers(t)
        resolve(t + timedelta(minutes=31), "timeout")
    elif kind < 0.95:  # handed to a person
        if rng.random() < 0.5:
            t = bot_answers(t)
            t += timedelta(seconds=rng.randint(10, 120))
            customer_says(t)
            c.tp("faq_feedback", t, "customer", faq_id=faq, details={"helpful": False})
            t = human(t, "not_helpful", None)
        elif rng.random() < 0.5:
            gap = rng.choice(GAP_TOPICS) + rng.choice(GAP_SUFFIX)
            t = human(t, "no_match", gap)
        else:
            t = human(t, "requested", None)
        if rng.random() < 0.05:  # came back within the reopen window
            t += timedelta(hours=rng.randint(1, 20))
            row.update(status="bot", resolved_at=None, resolved_by=None, resolution_code=None,
                       assigned_agent_id=None)
            row["reopen_count"] += 1
            c.tp("reopened", t, "customer")
            customer_says(t)
            human(t, "requested", None)
    else:  # still waiting in the queue
        row.update(status="queued", queued_at=t, handed_off_at=t)
        row["handoffs"] += 1
        c.tp("handoff", t, "bot", details={
            "reason": "no_match", "text": rng.choice(GAP_TOPICS), "top_faq_id": None})
    row["updated_at"] = max(tp["created_at"] for tp in c.tps)
    return c


async def insert_chunks(engine: AsyncEngine, table: Table, rows: list[dict[str, Any]]) -> None:
    """executemany in chunks, one transaction each."""
    for i in range(0, len(rows), CHUNK):
        async with engine.begin() as conn:
            await conn.execute(insert(table), rows[i:i + CHUNK])


async def generate(url: str, conversations: int, touchpoints: int, seed: int) -> int:
    """Fill the database; returns the number of touchpoints written."""
    rng = random.Random(seed)
    engine = make_engine(url)
    customers = max(1, int(conversations * 0.7))
    channels = ["http" if i % 2 else "telegram" for i in range(customers + 1)]
    await insert_chunks(engine, T["customers"], [
        {"id": i, "display_name": f"customer {i}", "created_at": START}
        for i in range(1, customers + 1)])
    await insert_chunks(engine, T["contacts"], [
        {"id": i, "customer_id": i, "channel": channels[i], "external_id": f"c{i}",
         "display_name": "", "created_at": START} for i in range(1, customers + 1)])
    await insert_chunks(engine, T["agents"], [
        {"id": i, "name": f"agent{i}", "role": "agent", "token_hash": f"{i:064x}",
         "capacity": 5, "status": "online", "disabled": False, "created_at": START,
         "idle_since": START} for i in range(1, AGENTS + 1)])
    # A conversation without chatter has about 6.6 touchpoints; extra rounds of messages (2
    # touchpoints each) keep the running total on course for the requested figure.
    written = generated = 0
    batch: list[Conv] = []
    for cid in range(1, conversations + 1):
        customer = rng.randint(1, customers)
        due = touchpoints * cid / conversations - generated
        chatter = max(0, min(20, round((due - 6.6) / 2)))
        conv = make_conversation(rng, cid, customer, channels[customer], chatter,
                                 (cid - 1) / conversations)
        generated += len(conv.tps)
        batch.append(conv)
        if len(batch) == 2000 or cid == conversations:
            async with engine.begin() as conn:
                await conn.execute(insert(T["conversations"]), [c.row for c in batch])
                tps = [tp for c in batch for tp in c.tps]
                for i in range(0, len(tps), CHUNK):
                    await conn.execute(insert(T["touchpoints"]), tps[i:i + CHUNK])
                surveys = [s for c in batch for s in c.surveys]
                if surveys:
                    await conn.execute(insert(T["surveys"]), surveys)
            written += len(tps)
            batch = []
    async with engine.begin() as conn:
        # What the service keeps as it writes (journey marks, each conversation's last
        # steps), built from the log as the migrations that added them do.
        await conn.run_sync(journey_marks.backfill)
        await conn.run_sync(last_steps.backfill)
        if url.startswith("postgresql"):
            for table in ("customers", "contacts", "agents", "conversations"):
                await conn.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"))
        if not url.startswith("postgresql"):
            await conn.execute(text("ANALYZE"))
    if url.startswith("postgresql"):
        # As autovacuum would after a million inserts: besides the planner's statistics, the
        # visibility map, without which no index-only scan is index-only.
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM (ANALYZE)"))
    await engine.dispose()
    return written


async def measure(url: str) -> None:
    """Time each statistic over the generated 90 days."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    period = parse_period("2026-01-01", "2026-03-31", "Europe/Berlin", datetime.now(UTC))
    query = StatsQuery(period)

    async def timed(label: str, work: Any) -> float:
        started = time.perf_counter()
        async with sessions() as session:
            result = await work(session)
        elapsed = time.perf_counter() - started
        print(f"  {label:<28} {elapsed * 1000:9.0f} ms")
        return result if label == "summary (1)" else elapsed

    first = await timed("summary (1)", lambda s: stats.summary(s, query))
    runs = [await timed(f"summary ({n})", lambda s: stats.summary(s, query)) for n in (2, 3)]
    print(f"  -> summary median of warm runs {statistics.median(runs) * 1000:.0f} ms; "
          f"{first['volume']['opened']} conversations opened, "
          f"{first['volume']['resolved']} resolved")
    await timed("timeseries (day)", lambda s: breakdowns.timeseries(s, query, "day"))
    await timed("agents", lambda s: breakdowns.agents(s, query))
    await timed("faqs", lambda s: breakdowns.faqs(s, query))
    await timed("knowledge gaps", lambda s: knowledge_gaps(s, query))
    started = time.perf_counter()
    size = rows = 0
    async for chunk in export_csv(sessions, query):
        size += len(chunk.encode())
        rows += chunk.count("\r\n")
    elapsed = time.perf_counter() - started
    print(f"  {'CSV export':<28} {elapsed * 1000:9.0f} ms  ({rows - 1} rows, "
          f"{size / 1e6:.1f} MB)")
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--touchpoints", type=int, default=1_000_000,
                        help="approximate total (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", help="PostgreSQL URL (its schema is wiped!); "
                                               "default a temp SQLite file")
    args = parser.parse_args()
    url = fresh_database(args.database_url)
    kind = "postgresql" if args.database_url else "sqlite"
    print(f"{kind}: generating {args.conversations:,} conversations ...")
    started = time.perf_counter()
    written = asyncio.run(generate(url, args.conversations, args.touchpoints, args.seed))
    print(f"  generated {written:,} touchpoints in {time.perf_counter() - started:.1f} s "
          f"(bulk inserts + ANALYZE)")
    asyncio.run(measure(url))


if __name__ == "__main__":
    main()
