"""Retention: texts older than CAREBOT_RETENTION_DAYS go in bounded batches; the counts the
statistics need stay, and a row someone holds is waited for by no one."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from carebot.db.engine import make_write_sessionmaker
from carebot.db.models import (
    AuditEntry,
    Message,
    OutboxMessage,
    RetentionProgress,
    Survey,
    Touchpoint,
)
from carebot.domain.clock import ManualClock
from carebot.routing import retention
from carebot.settings import Settings, SettingsError
from carebot.web.timers import retain
from tests.helpers import Customer, bearer, create_app, make_agent
from tests.privacy_support import columns_holding

Client = TestClient[Any, Any]
OLD_DAY = "from=2026-03-02&to=2026-03-02&tz=UTC"


def at(day: int, hour: int = 9, minute: int = 0) -> datetime:
    """A UTC instant in March 2026."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    app = create_app(replace(settings, run_timers=False, run_worker=False, retention_days=30),
                     clock)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def test_old_texts_go_and_the_numbers_stay(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock,
    database_url: str,
) -> None:
    _, admin = await make_agent(sessions, "Ada", "admin")
    _, alex = await make_agent(sessions, "Alex", "agent", status="online")
    # March 2nd: a question nobody can answer (a knowledge gap), an agent's reply that is never
    # delivered (no worker here), a survey with a comment.
    clock.now = at(2)
    old = Customer(client, "u-old")
    first = await old.say("my blender exploded while making soup")
    cid = first["conversation_id"]
    await client.post(f"/api/v1/conversations/{cid}/reply", json={"text": "So sorry, Sam"},
                      headers=bearer(alex))
    clock.now = at(2, 9, 5)
    resp = await client.post(f"/api/v1/conversations/{cid}/resolve", json={"code": "answered"},
                             headers=bearer(alex))
    assert resp.status == 200
    detail = await (await client.get(f"/api/v1/conversations/{cid}",
                                     headers=bearer(admin))).json()
    survey = next(b["payload"] for m in detail["messages"] for b in m["buttons"]
                  if b["payload"].startswith("survey:"))
    await old.press(survey)
    await old.say("the blender smelled of burnt toast")  # the comment
    # April 10th: a recent conversation, which keeps its texts.
    clock.now = at(2).replace(month=4, day=10)
    await Customer(client, "u-new").say("where is my order, it is late")

    async def summary() -> Any:
        resp = await client.get(f"/api/v1/stats/summary?{OLD_DAY}", headers=bearer(admin))
        return await resp.json()

    before = await summary()
    assert before["volume"]["opened"] == 1 and before["bot"]["handoffs_by_reason"] == {
        "no_match": 1}
    report = await retain(client.server.app, budget=None)
    assert report is not None and report.caught_up
    assert report.changed["messages"] > 0 and report.changed["surveys"] == 1
    assert report.changed["touchpoints"] >= 1 and report.changed["outbox"] >= 1
    old_texts = ["blender exploded", "So sorry, Sam", "burnt toast"]
    assert await columns_holding(database_url, old_texts) == []
    assert await summary() == before
    async with sessions() as session:
        recent = await session.scalar(select(Message.text).where(
            Message.text.contains("it is late")))
        handoff = await session.scalar(select(Touchpoint.details).where(
            Touchpoint.kind == "handoff"))
        unsent = list(await session.execute(select(OutboxMessage.status,
                                                   OutboxMessage.last_error).where(
            OutboxMessage.conversation_id == cid, OutboxMessage.status != "sent")))
        score = await session.scalar(select(Survey.score).where(Survey.conversation_id == cid))
        marks = {r.name: r.last_id for r in await session.scalars(select(RetentionProgress))}
        applied = await session.scalar(select(AuditEntry.details).where(
            AuditEntry.action == "retention.applied"))
    assert recent == "where is my order, it is late"
    assert handoff is not None and handoff["reason"] == "no_match" and "text" not in handoff
    assert unsent and {tuple(u) for u in unsent} == {("failed", retention.EXPIRED)}
    assert score is not None
    assert set(marks) == set(retention.TABLES) and all(v > 0 for v in marks.values())
    assert applied is not None and applied["messages_changed"] == report.changed["messages"]
    # Again: nothing left to do, and it says so without scanning the old rows again.
    again = await retain(client.server.app, budget=None)
    assert again is not None and again.total_changed == 0 and sum(again.scanned.values()) == 0


async def test_small_batches_and_a_time_budget_resume_where_they_stopped(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine, clock: ManualClock,
) -> None:
    writes = make_write_sessionmaker(engine)
    await _messages(sessions, 25, clock)
    clock.now = at(2).replace(month=5)
    report = await retention.run_pass(writes, clock(), 30, batch=4, budget_seconds=None)
    assert report.changed["messages"] == 25 and report.scanned["messages"] == 25
    async with sessions() as session:
        assert set(await session.scalars(select(Message.text))) == {""}
    # A budget of zero does one batch of the first table, then stops for this interval.
    await _messages(sessions, 10, clock, day=3)
    clock.now = at(2).replace(month=6)
    short = await retention.run_pass(writes, clock(), 30, batch=4, budget_seconds=0)
    assert (short.scanned["messages"], short.caught_up) == (0, False)


async def test_a_row_someone_holds_is_skipped_not_waited_for(
    database_url: str, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine,
    clock: ManualClock,
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer: nobody holds a row while retention runs")
    writes = make_write_sessionmaker(engine)
    ids = await _messages(sessions, 6, clock)
    clock.now = at(2).replace(month=5)
    async with engine.connect() as holder, holder.begin():
        await holder.execute(text(f"SELECT id FROM messages WHERE id = {ids[3]} FOR UPDATE"))
        report = await asyncio.wait_for(
            retention.run_pass(writes, clock(), 30, batch=100, budget_seconds=None), 5)
        assert report.changed["messages"] == 3  # up to the held row, not past it
    report = await retention.run_pass(writes, clock(), 30, batch=100, budget_seconds=None)
    assert report.changed["messages"] == 3


def test_retention_days_are_checked() -> None:
    assert Settings.from_env({"CAREBOT_RETENTION_DAYS": "90"}).retention_days == 90
    with pytest.raises(SettingsError, match="CAREBOT_RETENTION_DAYS"):
        Settings.from_env({"CAREBOT_RETENTION_DAYS": "0.5"})


async def _messages(
    sessions: async_sessionmaker[AsyncSession], n: int, clock: ManualClock, day: int = 2
) -> list[int]:
    """n customer messages of one conversation on March `day`."""
    from carebot.db.models import Contact, Conversation, Customer

    now = at(day)
    async with sessions.begin() as session:
        customer = Customer(display_name="", created_at=now)
        session.add(customer)
        await session.flush()
        contact = Contact(customer_id=customer.id, channel="http", external_id=f"bulk-{day}",
                          created_at=now)
        session.add(contact)
        await session.flush()
        conv = Conversation(customer_id=customer.id, contact_id=contact.id, channel="http",
                            status="bot", opened_at=now, updated_at=now)
        session.add(conv)
        await session.flush()
        rows = [Message(conversation_id=conv.id, channel="http", external_id=f"b{day}-{i}",
                        direction="in", sender="customer", text=f"text {i}", created_at=now)
                for i in range(n)]
        session.add_all(rows)
        await session.flush()
        return [m.id for m in rows]
