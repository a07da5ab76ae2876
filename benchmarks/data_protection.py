"""Data protection at size: erasing a customer with 1,000 conversations, and the retention
job's throughput on a database of a million messages.

    .venv/bin/python benchmarks/data_protection.py [--messages 1000000]
        [--erase-conversations 1000] [--retention-days 90]
        [--database-url postgresql+asyncpg://…/carebot_privacybench]

SQLite (a temp file) by default; with --database-url, that PostgreSQL database's `public`
schema is DROPPED and recreated — use a dedicated database.

The history is generated with bulk inserts (seeded): 180 days of conversations, ten messages
each (five from the customer, five answers), one touchpoint per message (every fifth message
a button press with its payload, one conversation in ten a handoff with the typed question),
an outbox row per answer, a survey per conversation (one in five with a comment), five
conversations per customer. Then one more customer with `--erase-conversations`
conversations of the same shape (a few still open, a few answers not sent yet) is erased
(`carebot.routing.erasure`, one transaction, timed with its commit; then the WAL truncation on
SQLite; then again, which changes nothing). Last, one retention pass erases everything older
than `--retention-days` (about half the history) in batches of 1,000 rows, timed to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._service import fresh_database
from carebot.agents import audit
from carebot.db import bulk
from carebot.db.checkpoint import truncate_wal
from carebot.db.engine import make_engine, make_write_sessionmaker
from carebot.db.models import Base
from carebot.domain.events import Effects
from carebot.routing import erasure, retention
from carebot.routing.decision import ConvState
from carebot.routing.policy import Policy
from carebot.settings import Settings

T = Base.metadata.tables
NOW = datetime(2026, 7, 1, tzinfo=UTC)
DAYS = 180
PER_CONVERSATION = 10
CONVERSATIONS_PER_CUSTOMER = 5
CHUNK_CONVERSATIONS = 2000
QUESTIONS = ["where is my order", "how do I return this", "my parcel never came",
             "can I pay by invoice", "the courier was rude", "refund please"]


class Ids:
    """The next id of each table (explicit ids keep the bulk inserts simple)."""

    def __init__(self) -> None:
        self.next = {t: 1 for t in ("customers", "contacts", "conversations", "messages",
                                    "touchpoints", "outbox", "surveys")}

    def take(self, table: str) -> int:
        value = self.next[table]
        self.next[table] += 1
        return value


def conversation_rows(
    rng: random.Random, ids: Ids, customer: int, contact: int, external: str, opened: datetime,
    rows: dict[str, list[dict[str, Any]]], *, still_open: bool = False, unsent: bool = False,
) -> None:
    """One conversation's rows, appended to `rows` by table."""
    cid = ids.take("conversations")
    gap = rng.random() < 0.1
    status = "queued" if still_open else "resolved"
    conv = ConvState.fresh(customer, contact, "http", opened)
    conv.id, conv.status = cid, status
    conv.updated_at = opened + timedelta(minutes=9)
    conv.last_customer_message_at = opened + timedelta(minutes=8)
    conv.resolved_at = None if still_open else opened + timedelta(minutes=10)
    conv.resolved_by = None if still_open else "bot"
    conv.customer_messages = conv.bot_answers = conv.effort_score = 5
    conv.handoffs = 1 if gap or still_open else 0
    conv.queued_at = opened if still_open else None
    conv.first_bot_response_ms = 0
    rows["conversations"].append(conv.to_row())
    for i in range(PER_CONVERSATION):
        at = opened + timedelta(minutes=i)
        mid = ids.take("messages")
        inbound = i % 2 == 0
        press = inbound and i % 10 == 4
        rows["messages"].append({
            "id": mid, "conversation_id": cid, "channel": "http",
            "external_id": f"{external}-{mid}" if inbound else None,
            "direction": "in" if inbound else "out", "sender": "customer" if inbound else "bot",
            "text": f"{rng.choice(QUESTIONS)} #{mid}" if inbound else f"Here is how, {mid}.",
            "payload": "yes:order-status" if press else None, "created_at": at,
            "agent_id": None, "buttons": None, "in_reply_to": None,
            "status_after": status if inbound else None,
        })
        details: dict[str, Any] | None = None
        kind = "message_in" if inbound else "faq_answer"
        if press:
            details = {"payload": "yes:order-status"}
        if gap and i == 1:
            kind, details = "handoff", {"reason": "no_match", "text": f"odd question {mid}"}
        rows["touchpoints"].append({
            "id": ids.take("touchpoints"), "conversation_id": cid, "customer_id": customer,
            "kind": kind, "actor": "customer" if inbound else "bot", "channel": "http",
            "agent_id": None, "faq_id": None, "score": None, "wait_ms": None,
            "message_id": mid, "effort": 1 if inbound else 0, "outcome": status,
            "details": details, "created_at": at,
        })
        if not inbound:
            pending = unsent and i == PER_CONVERSATION - 1
            rows["outbox"].append({
                "id": ids.take("outbox"), "message_id": mid, "conversation_id": cid,
                "channel": "http", "recipient": external, "text": f"Here is how, {mid}.",
                "status": "pending" if pending else "sent", "attempts": 0 if pending else 1,
                "next_attempt_at": at, "created_at": at, "sent_at": None if pending else at,
                "buttons": None, "claimed_until": None, "claim_token": None,
                "last_error": None, "external_message_id": None,
            })
    rows["surveys"].append({
        "id": ids.take("surveys"), "conversation_id": cid, "customer_id": customer,
        "channel": "http", "kind": "csat", "scale": 5, "status": "answered",
        "awaiting": None, "agent_id": None, "expires_at": opened + timedelta(days=3),
        "resolved_by": "bot", "due_at": opened, "sent_at": opened + timedelta(minutes=10),
        "answered_at": opened + timedelta(minutes=11), "score": rng.randint(1, 5),
        "comment": f"comment {cid}" if rng.random() < 0.2 else None,
        "created_at": opened + timedelta(minutes=10),
    })


async def flush(engine: AsyncEngine, rows: dict[str, list[dict[str, Any]]]) -> None:
    def write(conn: Connection) -> None:
        for table in ("customers", "contacts", "conversations", "messages", "touchpoints",
                      "outbox", "surveys"):
            chunk = rows.get(table, [])
            for i in range(0, len(chunk), 20_000):
                bulk.insert(conn, T[table], chunk[i:i + 20_000])
            chunk.clear()

    async with engine.begin() as conn:
        await conn.run_sync(write)


def new_rows() -> dict[str, list[dict[str, Any]]]:
    return {t: [] for t in ("customers", "contacts", "conversations", "messages",
                            "touchpoints", "outbox", "surveys")}


async def generate(engine: AsyncEngine, messages: int, erase_conversations: int,
                   seed: int) -> tuple[int, Ids]:
    """The history and the customer to erase; returns that customer's id."""
    rng = random.Random(seed)
    ids = Ids()
    conversations = max(1, messages // PER_CONVERSATION)
    rows = new_rows()
    step = timedelta(days=DAYS) / conversations
    customer = contact = 0
    started = time.perf_counter()
    for n in range(conversations):
        if n % CONVERSATIONS_PER_CUSTOMER == 0:
            customer, contact = ids.take("customers"), ids.take("contacts")
            rows["customers"].append({"id": customer, "display_name": f"Customer {customer}",
                                      "created_at": NOW - timedelta(days=DAYS)})
            rows["contacts"].append({"id": contact, "customer_id": customer, "channel": "http",
                                     "external_id": f"user-{contact}", "display_name": "",
                                     "created_at": NOW - timedelta(days=DAYS)})
        conversation_rows(rng, ids, customer, contact, f"user-{contact}",
                          NOW - timedelta(days=DAYS) + step * n, rows)
        if len(rows["conversations"]) >= CHUNK_CONVERSATIONS:
            await flush(engine, rows)
            print(f"\r  generated {n + 1:,} of {conversations:,} conversations "
                  f"({time.perf_counter() - started:.0f} s)", end="", file=sys.stderr)
    target, contact = ids.take("customers"), ids.take("contacts")
    rows["customers"].append({"id": target, "display_name": "Erika Mustermann",
                              "created_at": NOW - timedelta(days=DAYS)})
    rows["contacts"].append({"id": contact, "customer_id": target, "channel": "http",
                             "external_id": "erika-m", "display_name": "Erika M.",
                             "created_at": NOW - timedelta(days=DAYS)})
    step = timedelta(days=DAYS) / erase_conversations
    for n in range(erase_conversations):
        conversation_rows(rng, ids, target, contact, "erika-m",
                          NOW - timedelta(days=DAYS) + step * n, rows,
                          still_open=n >= erase_conversations - 5,
                          unsent=n >= erase_conversations - 3)
        if len(rows["conversations"]) >= CHUNK_CONVERSATIONS:
            await flush(engine, rows)
    await flush(engine, rows)
    print(file=sys.stderr)
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for table in ids.next:
                await conn.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"))
            await conn.execute(text("ANALYZE"))
        else:
            await conn.execute(text("ANALYZE"))
    return target, ids


async def run(url: str, messages: int, erase_conversations: int, days: float,
              seed: int) -> None:
    engine = make_engine(url, timeout=None)
    writes = make_write_sessionmaker(engine)
    policy = Policy.from_settings(Settings())
    kind = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    started = time.perf_counter()
    target, ids = await generate(engine, messages, erase_conversations, seed)
    total = {t: n - 1 for t, n in ids.next.items()}
    print(f"{kind}: generated in {time.perf_counter() - started:.0f} s: "
          + ", ".join(f"{n:,} {t}" for t, n in total.items()))

    for attempt in ("first", "again"):
        started = time.perf_counter()
        async with writes.begin() as session:
            report = await erasure.erase(session, target, NOW, audit.SYSTEM, Effects(), policy)
        took = time.perf_counter() - started
        started = time.perf_counter()
        await truncate_wal(engine)
        wal = time.perf_counter() - started
        print(f"erase ({attempt}): {took:.2f} s for {report.conversations:,} conversations "
              f"({report.closed} closed), {report.messages:,} messages, "
              f"{report.touchpoints:,} touchpoints, {report.outbox:,} outbox rows, "
              f"{report.surveys:,} comments"
              + (f"; WAL truncated in {wal:.2f} s" if kind == "SQLite" else ""))

    started = time.perf_counter()
    result = await retention.run_pass(writes, NOW, days, budget_seconds=None)
    took = time.perf_counter() - started
    scanned, changed = result.scanned, result.changed
    rows = sum(scanned.values())
    print(f"retention ({days:g} days): {took:.1f} s, {rows:,} rows in {result.batches:,} "
          f"transactions ({rows / took:,.0f} rows/s, {took / result.batches * 1000:.1f} ms "
          "per transaction on average)")
    for table in retention.TABLES:
        spent = result.seconds[table]
        print(f"  {table:<12} {scanned[table]:>9,} rows in {spent:6.1f} s "
              f"({scanned[table] / max(spent, 1e-9):>9,.0f} rows/s), {changed[table]:,} changed")
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--erase-conversations", type=int, default=1000)
    parser.add_argument("--retention-days", type=float, default=90)
    parser.add_argument("--database-url", help="a PostgreSQL database to WIPE and use")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    url = fresh_database(args.database_url)
    asyncio.run(run(url, args.messages, args.erase_conversations, args.retention_days,
                    args.seed))


if __name__ == "__main__":
    main()
