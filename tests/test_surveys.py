"""Post-resolution surveys over the HTTP channel: every rule has a test that fails without it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import Conversation, OutboxMessage, Survey, Touchpoint
from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from carebot.web.timers import tick
from tests.helpers import Customer, bearer, button_payloads, create_app, make_agent

Client = TestClient[Any, Any]
CSAT = "How satisfied are you with the help you got?"


def build(aiohttp_client: Any, settings: Settings, clock: ManualClock, **overrides: Any) -> Any:
    return aiohttp_client(create_app(replace(settings, run_timers=False, **overrides), clock))


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    return await build(aiohttp_client, settings, clock)  # type: ignore[no-any-return]


async def resolved_by_bot(cust: Customer) -> dict[str, Any]:
    """Ask an FAQ, press Yes; return the survey reply."""
    await cust.say("where is my order")
    done = await cust.press("yes:order-status")
    assert done["status"] == "resolved"
    return done["replies"][-1]  # type: ignore[no-any-return]


async def surveys_of(sessions: async_sessionmaker[AsyncSession]) -> list[Survey]:
    async with sessions() as session:
        return list(await session.scalars(select(Survey).order_by(Survey.id)))


THANKS = "Thank you for your feedback! If you need anything else, just write."


async def kinds(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list(await session.scalars(select(Touchpoint.kind).order_by(Touchpoint.id)))


async def test_button_answer_then_comment(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cust = Customer(client, "s1")
    survey = await resolved_by_bot(cust)
    assert survey["text"] == CSAT
    payloads = button_payloads(survey)
    assert len(payloads) == 5
    follow = await cust.press(payloads[3])  # "4"
    assert follow["status"] == "resolved", "a survey answer does not reopen the conversation"
    assert "Anything we could do better?" in follow["replies"][0]["text"]
    skip = button_payloads(follow["replies"][0])
    assert len(skip) == 1 and skip[0].endswith(":skip")
    thanks = await cust.say("The answer could link to the tracking page")
    assert thanks["replies"][0]["text"] == THANKS
    [row] = await surveys_of(sessions)
    assert (row.kind, row.scale, row.status, row.score) == ("csat", 5, "answered", 4)
    assert row.comment == "The answer could link to the tracking page"
    assert row.resolved_by == "bot" and row.sent_at is not None and row.answered_at is not None
    assert (await kinds(sessions))[-3:] == ["survey_sent", "survey_answered", "survey_comment"]


async def test_comment_can_be_skipped(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cust = Customer(client, "s-skip")
    survey = await resolved_by_bot(cust)
    follow = await cust.press(button_payloads(survey)[4])
    done = await cust.press(button_payloads(follow["replies"][0])[0])
    assert done["replies"][0]["text"] == THANKS
    # After skipping, a new message is a new request for help, not a comment.
    later = await cust.say("how do I return an item")
    assert later["status"] == "bot" and "Did this help?" in later["replies"][0]["text"]
    [row] = await surveys_of(sessions)
    assert (row.score, row.comment) == (5, None)


@pytest.mark.parametrize(("typed", "score"), [("5", 5), ("4/5", 4), ("⭐⭐", 2),
                                              ("very satisfied", 5), ("bad", 2)])
async def test_typed_answers_count(
    client: Client, sessions: async_sessionmaker[AsyncSession], typed: str, score: int
) -> None:
    cust = Customer(client, "s-typed")
    await resolved_by_bot(cust)
    reply = await cust.say(typed)
    assert reply["status"] == "resolved"
    [row] = await surveys_of(sessions)
    assert row.score == score


async def test_text_while_the_score_question_waits_is_its_comment_not_a_new_contact(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cust = Customer(client, "s-amb")
    first = await cust.say("where is my order")
    await cust.press("yes:order-status")
    comment = await cust.say("the courier was rude to me")
    assert comment["conversation_id"] == first["conversation_id"]
    assert comment["status"] == "resolved"
    assert comment["replies"][0]["text"].startswith("Thank you for your feedback!")
    [row] = await surveys_of(sessions)
    assert (row.score, row.comment, row.awaiting) == (None, "the courier was rude to me", None)
    async with sessions() as session:
        conv = await session.get(Conversation, first["conversation_id"])
        assert conv is not None
        assert (conv.reopen_count, conv.customer_messages) == (0, 2)  # the comment is no contact
    tail = (await kinds(sessions))[-2:]
    assert tail == ["survey_sent", "survey_comment"]  # no message_in, no handoff, no gap
    # With the question answered, the next message is help again: it reopens.
    again = await cust.say("how do I reset my password")
    assert again["status"] == "bot" and "Did this help?" in again["replies"][0]["text"]


async def test_asking_for_a_person_while_a_survey_waits_reopens(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cust = Customer(client, "s-human")
    first = await cust.say("where is my order")
    await cust.press("yes:order-status")
    again = await cust.say("/human")
    assert (again["conversation_id"], again["status"]) == (first["conversation_id"], "queued")
    [row] = await surveys_of(sessions)
    assert (row.status, row.comment) == ("sent", None)


async def test_expired_survey_answer_is_a_new_message(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cust = Customer(client, "s-exp")
    survey = await resolved_by_bot(cust)
    clock.advance(hours=73)
    late = await cust.press(button_payloads(survey)[4])
    assert late["replies"][0]["text"].startswith("That survey has closed")
    [row] = await surveys_of(sessions)
    assert (row.status, row.score) == ("expired", None)
    assert "survey_expired" in await kinds(sessions)
    typed = await cust.say("5")
    [row] = await surveys_of(sessions)
    assert row.score is None
    # The typed "5" started a new conversation (past the reopen window) as a message.
    async with sessions() as session:
        conv = await session.get(Conversation, typed["conversation_id"])
        assert conv is not None and conv.customer_messages == 1
    assert typed["conversation_id"] != late["conversation_id"]


async def test_cooldown_skips_a_second_survey_within_seven_days(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cust = Customer(client, "s-cool")
    await resolved_by_bot(cust)
    clock.advance(days=2)  # past the reopen window: a new conversation
    await cust.say("where is my order")
    second = await cust.press("yes:order-status")
    assert [r["text"] for r in second["replies"]] == [second["replies"][0]["text"]]
    assert len(second["replies"]) == 1, "no survey inside the cooldown"
    assert "survey_skipped" in await kinds(sessions)
    clock.advance(days=6)  # 8 days after the first survey
    await cust.say("where is my order")
    third = await cust.press("yes:order-status")
    assert third["replies"][-1]["text"] == CSAT
    statuses = [s.status for s in await surveys_of(sessions)]
    assert statuses == ["sent", "cancelled", "sent"]


async def test_reopened_and_re_resolved_is_not_surveyed_again_within_cooldown(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cust = Customer(client, "s-reopen")
    survey = await resolved_by_bot(cust)
    await cust.press(button_payloads(survey)[4])
    await cust.press(f"survey:{(await surveys_of(sessions))[0].id}:skip")
    await cust.say("where is my order")  # reopens
    again = await cust.press("yes:order-status")
    assert len(again["replies"]) == 1
    assert [s.status for s in await surveys_of(sessions)] == ["answered", "cancelled"]


async def test_no_survey_after_timeout(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await Customer(client, "s-timeout").say("where is my order")
    clock.advance(minutes=31)
    assert (await tick(client.server.app))[0] == 1
    assert await surveys_of(sessions) == []


async def test_no_survey_for_spam_but_one_for_an_agent_resolution(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent_id, token = await make_agent(sessions, "Sam", status="online")
    spam = (await Customer(client, "s-spam").say("/human"))["conversation_id"]
    real = (await Customer(client, "s-real").say("/human"))["conversation_id"]
    for cid, code in ((spam, "spam"), (real, "answered")):
        resp = await client.post(f"/api/v1/conversations/{cid}/resolve", json={"code": code},
                                 headers=bearer(token))
        assert resp.status == 200
    [row] = await surveys_of(sessions)
    assert (row.conversation_id, row.resolved_by, row.agent_id) == (real, "agent", agent_id)
    async with sessions() as session:
        out = await session.scalar(select(OutboxMessage).where(OutboxMessage.text == CSAT))
    assert out is not None and out.status == "pending", "agent-resolved survey goes via outbox"


async def test_ces_follows_csat_when_enabled(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await build(aiohttp_client, settings, clock, survey_ces=True)
    cust = Customer(client, "s-ces")
    survey = await resolved_by_bot(cust)
    ces = (await cust.press(button_payloads(survey)[3]))["replies"][0]
    assert ces["text"] == "How easy was it to get your issue resolved?"
    assert len(button_payloads(ces)) == 7
    await cust.say("very easy")
    rows = await surveys_of(sessions)
    assert [(r.kind, r.scale, r.score) for r in rows] == [("csat", 5, 4), ("ces", 7, 7)]


async def test_channel_off_and_delayed_surveys(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    off = await build(aiohttp_client, settings, clock, survey_channels="telegram")
    off_cust = Customer(off, "s-off")
    await off_cust.say("where is my order")
    done = await off_cust.press("yes:order-status")
    assert len(done["replies"]) == 1, "surveys are off for the http channel here"
    assert await surveys_of(sessions) == []

    delayed = await build(aiohttp_client, settings, clock, survey_delay_seconds=600)
    cust = Customer(delayed, "s-later")
    await cust.say("where is my order")
    assert len((await cust.press("yes:order-status"))["replies"]) == 1
    [row] = await surveys_of(sessions)
    assert row.status == "scheduled"
    clock.advance(seconds=599)
    await tick(delayed.server.app)
    assert (await surveys_of(sessions))[0].status == "scheduled"
    clock.advance(seconds=2)
    await tick(delayed.server.app)
    assert (await surveys_of(sessions))[0].status == "sent"
    async with sessions() as session:
        out = await session.scalar(select(OutboxMessage).where(OutboxMessage.text == CSAT))
    assert out is not None and out.recipient == "s-later"


async def test_pressing_an_answered_surveys_button_again(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cust = Customer(client, "s-twice")
    survey = await resolved_by_bot(cust)
    await cust.press(button_payloads(survey)[0])
    again = await cust.press(button_payloads(survey)[4])
    assert again["replies"][0]["text"] == "Thanks! We already have your answer to that survey."
    assert (await surveys_of(sessions))[0].score == 1
