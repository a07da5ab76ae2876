"""How many outbox messages per second one worker delivers to a (fake) Telegram Bot API.

    .venv/bin/python benchmarks/outbox_throughput.py [--messages 2000] [--chats 200]
                                                      [--database-url URL]

SQLite (a temp file) by default; pass a PostgreSQL URL to measure it there (the database is
wiped). The outbox is filled with N pending rows spread round-robin over the chats, some with
"Did this help?" buttons; then one `OutboxWorker` with the real python-telegram-bot sender
delivers them to `tests.fakes.bot_api.FakeBotAPI` on 127.0.0.1, and the time until every row is
marked `sent` is measured. The fake runs in the same process and event loop, so the figure
includes its work too; Telegram itself allows about 30 messages a second per bot, so this
measures carebot's headroom, not Telegram's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._service import fresh_database
from carebot.channels.telegram import TelegramSender, build_application, quiet_http_logs
from carebot.db.engine import make_engine, make_sessionmaker
from carebot.db.models import OutboxMessage
from carebot.delivery.outbox import OutboxWorker
from carebot.domain.clock import system_clock
from carebot.settings import Settings
from carebot.web.workers import delivery_policy
from tests.fakes.bot_api import FakeBotAPI

BUTTONS = [{"title": "Yes", "payload": "yes:order-status"},
           {"title": "No, talk to a person", "payload": "no:order-status"}]


async def fill(url: str, messages: int, chats: int) -> None:
    engine = make_engine(url)
    now = system_clock()
    rows = [
        {"channel": "telegram", "recipient": str(100000 + i % chats),
         "text": f"Reply {i}: you can follow your order under Account → Orders.",
         "buttons": BUTTONS if i % 2 else None, "status": "pending", "attempts": 0,
         "next_attempt_at": now, "created_at": now}
        for i in range(messages)
    ]
    async with engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            await conn.execute(insert(OutboxMessage), rows[start:start + 1000])
    await engine.dispose()


async def run(url: str, messages: int, chats: int) -> tuple[float, float]:
    await fill(url, messages, chats)
    async with FakeBotAPI() as api:
        settings = Settings.from_env(
            {}, database_url=url, telegram_token=api.token, telegram_base_url=api.base_url,
        )
        quiet_http_logs()
        bot = build_application(settings).bot
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        async with bot:
            worker = OutboxWorker(sessions, {"telegram": TelegramSender(bot)}, system_clock,
                                  delivery_policy(settings))
            started, cpu = time.perf_counter(), time.process_time()
            await worker.drain()
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        async with sessions() as session:
            sent = await session.scalar(
                select(func.count()).select_from(OutboxMessage)
                .where(OutboxMessage.status == "sent")
            )
        await engine.dispose()
        assert sent == messages == len(api.sent), (sent, messages, len(api.sent))
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--database-url", help="PostgreSQL URL (wiped); default: temp SQLite")
    args = parser.parse_args()
    url = fresh_database(args.database_url)
    elapsed, cpu = asyncio.run(run(url, args.messages, args.chats))
    kind = "postgresql" if args.database_url else "sqlite"
    policy = delivery_policy(Settings())
    print(f"{kind}: {args.messages} messages to {args.chats} chats delivered in {elapsed:.2f} s "
          f"= {args.messages / elapsed:.0f} messages/s (one worker, batch {policy.batch_size}, "
          f"{policy.concurrency} sends in flight; {1000 * cpu / args.messages:.1f} ms of this "
          "process's CPU per message, the fake Bot API's included)")


if __name__ == "__main__":
    main()
