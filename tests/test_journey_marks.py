"""What the service keeps as it writes touchpoints (the journey marks, each conversation's
last steps) is what the migrations build from the touchpoint log: a small history written
through the public paths (HTTP customers, the console API, the survey buttons) is read back,
thrown away and rebuilt with the `backfill` the migrations use, and both must be the same.
SQLite and, with CAREBOT_TEST_DATABASE_URL, PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db import journey_marks as marks_module
from carebot.db import last_steps
from carebot.db.models import Conversation, journey_marks
from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from carebot.web.timers import tick
from tests.helpers import Customer, button_payloads, create_app, make_agent
from tests.test_stats import Person, survey_buttons

Client = TestClient[Any, Any]
J = journey_marks.c


def at(hour: int, minute: int = 0) -> datetime:
    """A UTC instant on 2026-03-03."""
    return datetime(2026, 3, 3, hour, minute, tzinfo=UTC)


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    # The thresholds of tests/test_dashboard_api.py, under which "my customer account" gets
    # suggestions.
    app = create_app(replace(settings, run_timers=False, presence_grace_seconds=0,
                             answer_threshold=0.7, suggest_threshold=0.1), clock)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> dict[int, dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(select(journey_marks).order_by(J.conversation_id))
        return {row["conversation_id"]: dict(row) for row in result.mappings()}


async def test_marks_written_with_the_touchpoints_equal_those_rebuilt_from_the_log(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    """ann is answered, says it helped and gives CSAT 5; ben asks for a person, alice takes
    him, resolves, he asks for a person again (reopened) and she resolves again; cal gets
    suggestions and asks for a person; dan is answered, says it did not help and is handed
    off."""
    alice_id, alice_token = await make_agent(sessions, "alice", "agent")
    boss_id, boss_token = await make_agent(sessions, "boss", "manager")
    alice, boss = Person(client, alice_id, alice_token), Person(client, boss_id, boss_token)

    clock.now = at(8)
    ann = Customer(client, "ann")
    ann_id = (await ann.say("where is my order"))["conversation_id"]
    clock.now = at(8, 1)
    await ann.press("yes:order-status")
    clock.now = at(8, 2)
    await ann.press((await survey_buttons(boss, ann_id))[4])

    clock.now = at(9)
    ben = Customer(client, "ben")
    ben_id = (await ben.say("/human"))["conversation_id"]
    clock.now = at(9, 5)
    await alice.status("online")
    clock.now = at(9, 10)
    await alice.act(ben_id, "resolve", {"code": "answered"})
    clock.now = at(9, 20)
    assert (await ben.say("/human"))["conversation_id"] == ben_id
    clock.now = at(9, 30)
    await alice.act(ben_id, "resolve", {"code": "answered"})

    clock.now = at(10)
    cal = Customer(client, "cal")
    vague = await cal.say("my customer account")
    cal_id = vague["conversation_id"]
    assert "handoff" in button_payloads(vague["replies"][-1])
    clock.now = at(10, 1)
    await cal.press("handoff")

    clock.now = at(11)
    dan = Customer(client, "dan")
    dan_id = (await dan.say("how do I reset my password"))["conversation_id"]
    clock.now = at(11, 1)
    await dan.press("no:password-reset")

    written = await _rows(sessions)
    async with sessions() as session:
        conversations = {c.id: c for c in await session.scalars(select(Conversation))}
    assert set(written) == set(conversations) == {ann_id, ben_id, cal_id, dan_id}

    ann_row, ben_row = written[ann_id], written[ben_id]
    # ann: message, answer, "yes" (which resolves it), the CSAT question, her 5, in that
    # order; no suggestions, "no", handoff or agent.
    assert (ann_row["msg_seq"] < ann_row["ans_seq"] < ann_row["yes_seq"] < ann_row["res_seq"]
            < ann_row["sent_seq"] < ann_row["sat_seq"])
    assert (ann_row["ans_at"], ann_row["res_at"], ann_row["sat_at"]) == (at(8), at(8, 1),
                                                                          at(8, 2))
    assert all(ann_row[f"{m}_seq"] is None for m in ("sug", "no", "hand", "asg"))
    # ben: the mark of his resolution follows the last one (09:30), after his survey.
    assert ben_row["res_at"] == at(9, 30)
    assert ben_row["res_seq"] > ben_row["sent_seq"] > ben_row["asg_seq"] > ben_row["hand_seq"]
    assert ben_row["res_effort"] == conversations[ben_id].effort_score
    assert written[cal_id]["sug_seq"] is not None and written[cal_id]["hand_seq"] is not None
    assert written[dan_id]["no_seq"] is not None and written[dan_id]["yes_seq"] is None

    async with sessions.begin() as session:
        await session.execute(delete(journey_marks))
        conn = await session.connection()
        assert await conn.run_sync(marks_module.backfill) == 4
    assert await _rows(sessions) == written


async def test_last_steps_kept_with_the_steps_equal_those_rebuilt_from_the_log(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    """eve is answered and goes silent (the timer closes her: the step before is the
    answer); fin asks for a person, alice replies and resolves; gil only says /start."""
    alice_id, alice_token = await make_agent(sessions, "alice", "agent")
    alice = Person(client, alice_id, alice_token)
    clock.now = at(8)
    eve_id = (await Customer(client, "eve").say("where is my order"))["conversation_id"]
    await alice.status("online")
    fin_id = (await Customer(client, "fin").say("/human"))["conversation_id"]
    clock.now = at(8, 1)
    await alice.act(fin_id, "reply", {"text": "Hello"}, 201)
    clock.now = at(8, 2)
    await alice.act(fin_id, "resolve", {"code": "answered"})
    gil_id = (await Customer(client, "gil").say("/start"))["conversation_id"]
    clock.now = at(9)
    await tick(client.server.app)

    async def kinds() -> dict[int, tuple[str | None, str | None]]:
        async with sessions() as session:
            rows = await session.execute(select(
                Conversation.id, Conversation.last_step_kind, Conversation.resolved_after_kind))
            return {cid: (last, before) for cid, last, before in rows}

    written = await kinds()
    assert written[eve_id] == ("resolved", "faq_answer")
    assert written[fin_id] == ("resolved", "agent_reply")
    assert written[gil_id][1] == "message_in"  # /start, then the timer
    async with sessions.begin() as session:
        await session.execute(update(Conversation).values(last_step_kind=None,
                                                          resolved_after_kind=None))
        conn = await session.connection()
        assert await conn.run_sync(last_steps.backfill) == 3
    rebuilt = await kinds()
    assert rebuilt == written, (rebuilt, written)
