"""Retention: message texts and survey comments older than `CAREBOT_RETENTION_DAYS` are erased.

What goes: the text and payload of every message, the text of every outbox row (one not sent
by then never will be: it is marked failed), survey comments, and the touchpoint details that
hold what a customer typed (`carebot.routing.erasure.PERSONAL_DETAIL_KEYS`). What stays is what
the statistics count — conversations, touchpoints with their kinds, efforts and waits, surveys
with their scores — so every metric of a past period keeps its value, as with an erasure.

**Bounded batches.** Rows are taken in id order, `BATCH` at a time, each batch its own short
transaction. Ids grow with time, so how far a table is done is one number
(`retention_progress.last_id`): a pass continues from there with a primary-key range and stops
at the first row that is not old enough yet, never searching the whole table for old texts.

**No waiting.** A pass locks its table's progress row `FOR UPDATE SKIP LOCKED` (a pass in
another process has that table now: this one skips it) and the rows of a batch
`FOR UPDATE SKIP LOCKED`; a row someone else holds (an erasure, the outbox worker, a timer)
ends the batch before it, and the next pass starts there. On SQLite each batch holds the
write lock for a few milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.agents import audit
from carebot.db.models import Base, Message, OutboxMessage, RetentionProgress, Survey, Touchpoint
from carebot.routing.erasure import PERSONAL_DETAIL_KEYS, strip_details

log = logging.getLogger(__name__)

BATCH = 1000
EXPIRED = "not sent within the retention period"
TABLES = ("messages", "touchpoints", "surveys", "outbox")


@dataclass
class RetentionReport:
    """What one pass did: rows looked at and rows changed, per table."""

    scanned: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    changed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TABLES, 0.0))
    batches: int = 0
    caught_up: bool = True

    @property
    def total_changed(self) -> int:
        """Rows changed in all tables."""
        return sum(self.changed.values())


@dataclass(frozen=True)
class _Batch:
    scanned: int
    changed: int
    done: bool  # no more old rows (or the rest is held by someone else): stop for this pass


Step = Callable[[AsyncSession, datetime, datetime, int], Awaitable[_Batch]]


async def run_pass(
    writes: async_sessionmaker[AsyncSession], now: datetime, days: float, *,
    batch: int = BATCH, budget_seconds: float | None = 2.0,
) -> RetentionReport:
    """Erase texts older than `days` in bounded batches, for at most `budget_seconds` (None:
    until caught up); the rest waits for the next pass."""
    cutoff = now - timedelta(days=days)
    report = RetentionReport()
    started = time.monotonic()
    steps: Sequence[tuple[str, Step]] = (
        ("messages", _messages), ("touchpoints", _touchpoints), ("surveys", _surveys),
        ("outbox", _outbox))
    for name, step in steps:
        while True:
            if budget_seconds is not None and time.monotonic() - started > budget_seconds:
                report.caught_up = False
                break
            begun = time.monotonic()
            async with writes.begin() as session:
                done = await step(session, cutoff, now, batch)
            report.seconds[name] += time.monotonic() - begun
            report.batches += 1
            report.scanned[name] += done.scanned
            report.changed[name] += done.changed
            if done.done:
                break
            await asyncio.sleep(0)  # let requests in between batches
    if report.total_changed:
        async with writes.begin() as session:
            audit.record(session, audit.SYSTEM, "retention.applied", None, None, {
                "days": days, "before": cutoff.isoformat(),
                **{f"{t}_changed": n for t, n in report.changed.items()},
            }, at=now)
        log.info("retention: texts older than %s erased in %s", cutoff.isoformat(),
                 ", ".join(f"{n} {t}" for t, n in report.changed.items() if n))
    return report


async def _progress(session: AsyncSession, name: str, now: datetime) -> RetentionProgress | None:
    """The table's progress row, locked; None while another process's pass has it."""
    row = await session.scalar(
        select(RetentionProgress).where(RetentionProgress.name == name)
        .with_for_update(skip_locked=True)
    )
    if row is not None:
        return row
    if await session.scalar(select(RetentionProgress.name).where(RetentionProgress.name == name)):
        return None
    row = RetentionProgress(name=name, last_id=0, updated_at=now)
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None  # another process created it this moment
    return row


async def _claim(
    session: AsyncSession, table: Any, ids: list[int]
) -> list[int]:
    """The leading run of `ids` this transaction could lock (SKIP LOCKED): a row someone else
    holds ends the batch there."""
    if not ids:
        return []
    if (await session.connection()).dialect.name == "sqlite":
        return ids  # one writer, and this transaction is it: nobody else holds a row
    locked = set(await session.scalars(
        select(table.c.id).where(table.c.id.in_(ids)).with_for_update(skip_locked=True)))
    run = []
    for i in ids:
        if i not in locked:
            break
        run.append(i)
    return run


async def _next_rows(
    session: AsyncSession, table: Any, after: int, batch: int, *columns: Any
) -> list[Any]:
    return list((await session.execute(
        select(table.c.id, *columns).where(table.c.id > after).order_by(table.c.id).limit(batch)
    )).all())


def _old_prefix(rows: list[Any], is_old: Callable[[Any], bool]) -> list[Any]:
    prefix = []
    for r in rows:
        if not is_old(r):
            break
        prefix.append(r)
    return prefix


async def _range_step(
    session: AsyncSession, name: str, now: datetime, batch: int, columns: Sequence[Any],
    is_old: Callable[[Any], bool], change: Callable[[int, int], Any],
) -> _Batch:
    """One batch of a table whose old rows are changed by one UPDATE over an id range."""
    table = Base.metadata.tables[name]
    progress = await _progress(session, name, now)
    if progress is None:
        return _Batch(0, 0, True)
    rows = await _next_rows(session, table, progress.last_id, batch, *columns)
    old = _old_prefix(rows, is_old)
    ids = await _claim(session, table, [r.id for r in old])
    if not ids:
        return _Batch(0, 0, True)
    result = await session.execute(change(progress.last_id, ids[-1]))
    progress.last_id, progress.updated_at = ids[-1], now
    complete = len(ids) == len(rows) == batch
    return _Batch(len(ids), int(getattr(result, "rowcount", 0) or 0), not complete)


def _in_range(column: Any, after: int, last: int) -> ColumnElement[bool]:
    return and_(column > after, column <= last)


async def _messages(session: AsyncSession, cutoff: datetime, now: datetime, batch: int) -> _Batch:
    return await _range_step(
        session, "messages", now, batch, [Message.created_at],
        lambda r: r.created_at < cutoff,
        lambda after, last: update(Message).where(
            _in_range(Message.id, after, last),
            (Message.text != "") | Message.payload.is_not(None),
        ).values(text="", payload=None).execution_options(synchronize_session=False),
    )


async def _surveys(session: AsyncSession, cutoff: datetime, now: datetime, batch: int) -> _Batch:
    # A survey is done once closed; its comment is its last word.
    def old(r: Any) -> bool:
        last = r.answered_at or r.sent_at or r.created_at
        return r.status not in ("scheduled", "sent") and last < cutoff

    return await _range_step(
        session, "surveys", now, batch,
        [Survey.created_at, Survey.sent_at, Survey.answered_at, Survey.status], old,
        lambda after, last: update(Survey).where(
            _in_range(Survey.id, after, last), Survey.comment.is_not(None),
        ).values(comment=None).execution_options(synchronize_session=False),
    )


async def _outbox(session: AsyncSession, cutoff: datetime, now: datetime, batch: int) -> _Batch:
    table = Base.metadata.tables["outbox"]
    progress = await _progress(session, "outbox", now)
    if progress is None:
        return _Batch(0, 0, True)
    rows = await _next_rows(session, table, progress.last_id, batch, OutboxMessage.created_at)
    ids = await _claim(session, table, [r.id for r in _old_prefix(
        rows, lambda r: r.created_at < cutoff)])
    if not ids:
        return _Batch(0, 0, True)
    # Not sent in all that time (no sender for its channel, say): it never will be.
    await session.execute(update(OutboxMessage).where(
        _in_range(OutboxMessage.id, progress.last_id, ids[-1]),
        OutboxMessage.status.in_(("pending", "sending")),
    ).values(status="failed", last_error=EXPIRED, claim_token=None, claimed_until=None)
     .execution_options(synchronize_session=False))
    result = await session.execute(update(OutboxMessage).where(
        _in_range(OutboxMessage.id, progress.last_id, ids[-1]), OutboxMessage.text != "",
    ).values(text="").execution_options(synchronize_session=False))
    progress.last_id, progress.updated_at = ids[-1], now
    return _Batch(len(ids), int(getattr(result, "rowcount", 0) or 0),
                  not len(ids) == len(rows) == batch)


async def _touchpoints(
    session: AsyncSession, cutoff: datetime, now: datetime, batch: int
) -> _Batch:
    table = Base.metadata.tables["touchpoints"]
    progress = await _progress(session, "touchpoints", now)
    if progress is None:
        return _Batch(0, 0, True)
    rows = await _next_rows(session, table, progress.last_id, batch, Touchpoint.created_at,
                            Touchpoint.details)
    old = _old_prefix(rows, lambda r: r.created_at < cutoff)
    if not old:
        return _Batch(0, 0, True)
    personal = [r for r in old if r.details and PERSONAL_DETAIL_KEYS & set(r.details)]
    claimed = set(await _claim(session, table, [r.id for r in personal]))
    held = [r.id for r in personal if r.id not in claimed]
    if held:  # someone holds one: stop just before it
        old = [r for r in old if r.id < held[0]]
        personal = [r for r in personal if r.id < held[0]]
        if not old:
            return _Batch(0, 0, True)
    if personal:
        await session.execute(
            update(table).where(table.c.id == bindparam("b_id"))
            .values(details=bindparam("b_details")),
            [{"b_id": r.id, "b_details": strip_details(r.details)} for r in personal],
        )
    progress.last_id, progress.updated_at = old[-1].id, now
    return _Batch(len(old), len(personal), not len(old) == len(rows) == batch)
