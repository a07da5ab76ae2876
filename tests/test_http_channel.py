"""The generic HTTP channel end to end: real app, real database, the shipped knowledge base."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import Conversation, Message, OutboxMessage, Touchpoint
from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from tests.helpers import (
    MESSAGES,
    Customer,
    bearer,
    button_payloads,
    create_app,
    make_agent,
    touchpoint_kinds,
)

Client = TestClient[Any, Any]


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    return await aiohttp_client(create_app(settings, clock))  # type: ignore[no-any-return]


async def count(sessions: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_where_is_my_order_gets_the_faq_answer_and_yes_resolves(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    anna = Customer(client, "u-anna", "Anna")
    data = await anna.say("where is my order")
    assert data["status"] == "bot"
    [reply] = data["replies"]
    assert "Did this help?" in reply["text"]
    assert button_payloads(reply) == ["yes:order-status", "no:order-status"]

    done = await anna.press("yes:order-status")
    assert done["status"] == "resolved"
    thanks, survey = done["replies"]
    assert thanks["text"].startswith("Glad I could help")
    assert survey["text"] == "How satisfied are you with the help you got?"
    async with sessions() as session:
        conv = await session.get(Conversation, data["conversation_id"])
        assert conv is not None
        assert (conv.resolved_by, conv.bot_answers, conv.handoffs) == ("bot", 1, 0)
        assert conv.first_bot_response_ms is not None
    assert await touchpoint_kinds(sessions, data["conversation_id"]) == [
        "message_in", "faq_answer", "message_in", "faq_feedback", "resolved", "survey_sent",
    ]


async def test_asking_for_a_person_hands_off_to_the_queue(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ben = Customer(client, "u-ben")
    data = await ben.say("I want to speak to a person")
    assert data["status"] == "queued"
    assert "number 1 in the queue" in data["replies"][0]["text"]
    # While a person has the conversation, the bot stays silent.
    later = await ben.say("where is my order")
    assert later["status"] == "queued"
    assert later["replies"] == []
    kinds = await touchpoint_kinds(sessions, data["conversation_id"])
    assert kinds == ["message_in", "handoff", "message_in"]
    async with sessions() as session:
        tp = await session.scalar(select(Touchpoint).where(Touchpoint.kind == "handoff"))
        assert tp is not None and tp.details == {"reason": "requested"}
        assert tp.effort == 2 and tp.outcome == "queued"


async def test_duplicate_delivery_returns_first_result_and_stores_nothing(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cleo = Customer(client, "u-cleo")
    first = await cleo.say("where is my order", message_id="m-1")
    tables = [Message, Touchpoint, OutboxMessage, Conversation]
    before = [await count(sessions, t) for t in tables]
    again = await cleo.say("where is my order", message_id="m-1")
    assert again["duplicate"] is True
    assert {k: v for k, v in again.items() if k != "duplicate"} == {
        k: v for k, v in first.items() if k != "duplicate"
    }
    assert [await count(sessions, t) for t in tables] == before


async def test_no_after_an_answer_hands_off(client: Client) -> None:
    dan = Customer(client, "u-dan")
    await dan.say("how do I reset my password")
    data = await dan.press("no:password-reset")
    assert data["status"] == "queued"


async def test_out_of_scope_question_goes_to_a_person(client: Client) -> None:
    data = await Customer(client, "u-eve").say("what's the weather like tomorrow in Paris")
    assert data["status"] == "queued"


async def test_reopen_within_window_and_new_conversation_after(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    fay = Customer(client, "u-fay")
    first = await fay.say("where is my order")
    survey = (await fay.press("yes:order-status"))["replies"][-1]
    comment = (await fay.press(button_payloads(survey)[4]))["replies"][-1]
    await fay.press(button_payloads(comment)[0])  # Skip: no survey question is pending
    clock.advance(hours=2)
    again = await fay.say("how do I return an item")
    assert again["conversation_id"] == first["conversation_id"]
    async with sessions() as session:
        conv = await session.get(Conversation, first["conversation_id"])
        assert conv is not None and conv.reopen_count == 1
    await fay.press("yes:return-how")
    clock.advance(hours=25)
    fresh = await fay.say("where is my order")
    assert fresh["conversation_id"] != first["conversation_id"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"message_id": "1", "text": "hi"}, 400, "'user_id' is required"),
        ({"user_id": "u", "text": "hi"}, 400, "'message_id' is required"),
        ({"user_id": "u", "message_id": "1"}, 400, "either 'text'"),
        ({"user_id": 5, "message_id": "1", "text": "hi"}, 400, "'user_id' is required"),
        ({"user_id": "u", "message_id": "1", "text": "x" * 4097}, 413, "longer than 4096"),
        ({"user_id": "u", "message_id": "1", "text": "   "}, 400, "'text' is empty"),
        ({"user_id": "u", "message_id": "1", "text": 3}, 400, "'text' must be a string"),
    ],
)
async def test_bad_input_gets_a_clear_error_and_stores_nothing(
    client: Client, sessions: async_sessionmaker[AsyncSession],
    body: dict[str, Any], status: int, message: str,
) -> None:
    resp = await client.post(MESSAGES, json=body)
    assert resp.status == status
    error = (await resp.json())["error"]
    assert message in error["message"]
    assert await count(sessions, Message) == 0


async def test_malformed_json_and_oversized_body(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    resp = await client.post(
        MESSAGES, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert "not valid JSON" in (await resp.json())["error"]["message"]
    resp = await client.post(MESSAGES, data=b"[1, 2]")
    assert resp.status == 400
    resp = await client.post(MESSAGES, data=b"x" * (70 * 1024))
    assert resp.status == 413
    assert "too large" in (await resp.json())["error"]["message"]
    assert await count(sessions, Message) == 0


async def test_same_message_id_from_another_user_is_a_conflict(client: Client) -> None:
    await Customer(client, "u-gil").say("hello", message_id="shared")
    resp = await client.post(MESSAGES, json={"user_id": "u-hal", "message_id": "shared",
                                             "text": "hi"})
    assert resp.status == 409


async def test_secret_header_is_required_when_configured(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> None:
    secret_settings = replace(settings, http_channel_secret="s3cret")
    client = await aiohttp_client(create_app(secret_settings, clock))
    body = {"user_id": "u", "message_id": "1", "text": "where is my order"}
    assert (await client.post(MESSAGES, json=body)).status == 403
    wrong = await client.post(MESSAGES, json=body, headers={"X-Carebot-Secret": "nope"})
    assert wrong.status == 403
    ok = await client.post(MESSAGES, json=body, headers={"X-Carebot-Secret": "s3cret"})
    assert ok.status == 200


async def test_healthz(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    data = await resp.json()
    assert data["status"] == "ok" and data["faq_entries"] >= 40


async def test_greetings_and_thanks_get_a_short_reply_never_a_handoff(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cust = Customer(client, "u-hi")
    hello = await cust.say("Hello!")
    assert hello["status"] == "bot"
    assert hello["replies"][0]["text"].startswith("Hi! How can I help you today?")
    thanks = await cust.say("thanks")
    assert thanks["status"] == "bot" and thanks["replies"][0]["text"].startswith("You're welcome")
    kinds = await touchpoint_kinds(sessions, hello["conversation_id"])
    assert kinds == ["message_in", "small_talk", "message_in", "small_talk"]


async def test_a_forged_yes_is_not_a_bot_resolution(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cust = Customer(client, "u-forge")
    forged = await cust.press("yes:order-status")  # never offered in this conversation
    assert forged["status"] == "bot"
    assert forged["replies"][0]["text"].startswith("That button is no longer active")
    assert await touchpoint_kinds(sessions, forged["conversation_id"]) == [
        "message_in", "unknown_button"]
    # After a real answer, only its own Yes counts.
    answer = await cust.say("where is my order")
    stale = await cust.press("yes:return-how")
    assert stale["status"] == "bot"
    real = await cust.press(button_payloads(answer["replies"][0])[0])
    assert real["status"] == "resolved"


async def test_a_waiting_customer_hears_their_position_and_who_joins(
    client: Client, clock: ManualClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cust = Customer(client, "u-wait")
    queued = await cust.say("/human")
    assert queued["status"] == "queued"
    assert (await cust.say("hello? is anyone there"))["replies"] == []  # just told
    clock.advance(minutes=4)
    nudge = await cust.say("Hallo? Ist jemand da?")
    assert nudge["replies"][0]["text"] == (
        "You're still in the queue (number 1). A person will reply here soon.")
    assert (await cust.say("/help"))["replies"][0]["text"].startswith("Just type your question")
    agent_id, token = await make_agent(sessions, "Alex")
    resp = await client.post(f"/api/v1/conversations/{queued['conversation_id']}/claim",
                             headers=bearer(token))
    assert resp.status == 200
    async with sessions() as session:
        sent = list(await session.scalars(
            select(OutboxMessage.text).order_by(OutboxMessage.id)))
    assert sent[-1] == "Alex has joined the conversation."
    assert agent_id


async def misses(client: Client) -> int:
    return int((await (await client.get("/healthz")).json())["match_cache"]["misses"])


async def test_messages_to_a_person_are_not_matched_and_the_bot_answers_again_after(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # While a person has the conversation the bot stays quiet: matching each new text the
    # customer types cost CPU for nothing (it was most of an agent load's cost on PostgreSQL).
    ben = Customer(client, "u-ben", "Ben")
    conv_id = (await ben.say("/human"))["conversation_id"]
    before = await misses(client)
    for n in range(3):
        data = await ben.say(f"hello? are you there, it has been {n} minutes")
        assert (data["status"], data["replies"]) == ("queued", [])
    assert await misses(client) == before
    # An agent resolves it elsewhere; the next question is matched when it is decided.
    _, token = await make_agent(sessions, "Boss", "manager", status="online")
    resp = await client.post(f"/api/v1/conversations/{conv_id}/resolve",
                             json={"code": "duplicate"}, headers=bearer(token))
    assert resp.status == 200
    data = await ben.say("how do I return an item")
    assert data["status"] == "bot"
    assert "Did this help?" in data["replies"][-1]["text"]
