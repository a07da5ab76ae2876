"""The Telegram channel end to end: the real app and python-telegram-bot against the fake Bot API,
in polling and webhook mode, on the shipped knowledge base."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.channels.telegram import (
    SECRET_HEADER,
    WEBHOOK_PATH,
    TelegramSetupError,
    set_webhook,
)
from carebot.cli import main
from carebot.db.models import Contact, Conversation, Touchpoint
from carebot.domain.clock import ManualClock
from carebot.routing import replies
from carebot.settings import Settings, SettingsError
from carebot.web.keys import FAQ_INDEX, INBOUND
from carebot.web.worker_app import create_worker_app, running
from tests.fakes.bot_api import BOT_USERNAME, FakeBotAPI
from tests.fakes.fixtures import load_update
from tests.helpers import create_app, touchpoint_kinds
from tests.telegram_support import (
    SECRET,
    USER_ID,
    all_sent,
    count,
    counts,
    eventually,
    outbox_rows,
    queue_messages,
    telegram_settings,
)

Client = TestClient[Any, Any]
ROOT = Path(__file__).resolve().parents[1]
YES_NO = {"inline_keyboard": [[
    {"text": "Yes", "callback_data": "yes:order-status"},
    {"text": "No, talk to a person", "callback_data": "no:order-status"},
]]}


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


async def start_service(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, api: FakeBotAPI,
    **overrides: Any,
) -> Client:
    app = create_app(telegram_settings(settings, api, **overrides), clock)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


WEBHOOK_MODE = {"telegram_mode": "webhook", "telegram_webhook_secret": SECRET}

# The services start after `api` (a parameter before `aiohttp_client`), so they stop before it.
# Only tests that need FAQ answers import the knowledge base: building the matcher takes time.


@pytest.fixture
async def polling(
    api: FakeBotAPI, aiohttp_client: Any, settings: Settings, clock: ManualClock
) -> Client:
    """The service polling the fake Bot API, with an empty knowledge base."""
    return await start_service(aiohttp_client, settings, clock, api)


@pytest.fixture
async def faq_polling(
    api: FakeBotAPI, aiohttp_client: Any, settings: Settings, clock: ManualClock,
    starter_kb: None,
) -> Client:
    """The service polling the fake Bot API, with the shipped knowledge base."""
    return await start_service(aiohttp_client, settings, clock, api)


@pytest.fixture
async def webhook(
    api: FakeBotAPI, aiohttp_client: Any, settings: Settings, clock: ManualClock
) -> Client:
    """The service taking updates on its webhook, with an empty knowledge base."""
    return await start_service(aiohttp_client, settings, clock, api, **WEBHOOK_MODE)


@pytest.fixture
async def faq_webhook(
    api: FakeBotAPI, aiohttp_client: Any, settings: Settings, clock: ManualClock,
    starter_kb: None,
) -> Client:
    """The service taking updates on its webhook, with the shipped knowledge base."""
    return await start_service(aiohttp_client, settings, clock, api, **WEBHOOK_MODE)


_update_ids = itertools.count(700000000)


async def post_update(client: Client, update: dict[str, Any], secret: str | None = SECRET) -> int:
    """POST an update to the webhook as Telegram does; returns the HTTP status."""
    update.setdefault("update_id", next(_update_ids))
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    resp = await client.post(WEBHOOK_PATH, json=update, headers=headers)
    return resp.status


def private(text: str, message_id: int, update_id: int | None = None) -> dict[str, Any]:
    """A private text message from Alice (without an update id unless given)."""
    return load_update("private_text", text=text, message_id=message_id, update_id=update_id)


async def conversation(sessions: async_sessionmaker[AsyncSession]) -> Conversation:
    async with sessions() as session:
        conv = await session.scalar(select(Conversation).order_by(Conversation.id.desc()))
        assert conv is not None
        return conv


# --- conversations ----------------------------------------------------------------------------


async def test_faq_conversation_with_the_yes_button(
    faq_polling: Client, api: FakeBotAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    api.push_update(private("where is my order", 301))
    [answer] = await api.wait_for_sent(1)
    assert answer["chat_id"] == USER_ID
    assert answer["text"].endswith("Did this help?")
    assert answer["reply_markup"] == YES_NO

    # Alice presses "Yes" under that very message.
    api.push_update(load_update(
        "callback_query", data="yes:order-status", update_id=None,
        message__message_id=answer["message_id"],
    ))
    [pressed] = await api.wait_for_calls("answerCallbackQuery")  # the spinner stops
    assert pressed["callback_query_id"] == "4776742093289645881"
    sent = await api.wait_for_sent(3)
    assert sent[1]["text"].startswith("Glad I could help")
    assert sent[2]["text"] == "How satisfied are you with the help you got?"
    assert [b["text"] for b in sent[2]["reply_markup"]["inline_keyboard"][0]] == [
        "1 😞", "2", "3 😐", "4", "5 😀"]

    await eventually(lambda: all_sent(sessions), what="every outbox row marked sent")
    conv = await conversation(sessions)
    assert (conv.status, conv.resolved_by, conv.channel) == ("resolved", "bot", "telegram")
    assert await touchpoint_kinds(sessions, conv.id) == [
        "message_in", "faq_answer", "message_in", "faq_feedback", "resolved", "survey_sent",
    ]
    rows = await outbox_rows(sessions)
    assert [r.external_message_id for r in rows] == [str(s["message_id"]) for s in sent]
    async with sessions() as session:
        contact = await session.scalar(select(Contact))
    assert contact is not None
    assert (contact.external_id, contact.display_name) == (str(USER_ID), "Alice Tester")


async def test_human_command_hands_off(
    webhook: Client, api: FakeBotAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    assert await post_update(webhook, load_update("human_command")) == 200
    [sent] = await api.wait_for_sent(1)
    assert "number 1 in the queue" in sent["text"]
    conv = await conversation(sessions)
    assert conv.status == "queued" and conv.handoffs == 1
    # From now on the bot stays silent; the agent sees the messages.
    assert await post_update(webhook, private("are you there?", 302)) == 200
    assert await touchpoint_kinds(sessions, conv.id) == ["message_in", "handoff", "message_in"]
    await asyncio.sleep(0.2)
    assert len(api.sent) == 1


async def test_start_and_help_commands(webhook: Client, api: FakeBotAPI) -> None:
    assert await post_update(webhook, load_update("start_command", text="/start ref_42")) == 200
    assert await post_update(webhook, load_update("help_command")) == 200
    start, help_ = await api.wait_for_sent(2)
    assert start["text"] == replies.GREETING
    assert start["reply_markup"] == {"inline_keyboard": [[
        {"text": "Talk to a person", "callback_data": "handoff"}]]}
    assert help_["text"] == replies.HELP_TEXT


@pytest.mark.parametrize("fixture", ["sticker", "photo", "voice"])
async def test_unsupported_content_gets_a_polite_reply(
    webhook: Client, api: FakeBotAPI, sessions: async_sessionmaker[AsyncSession], fixture: str
) -> None:
    assert await post_update(webhook, load_update(fixture)) == 200
    [sent] = await api.wait_for_sent(1)
    assert sent["text"] == replies.UNSUPPORTED
    conv = await conversation(sessions)
    assert await touchpoint_kinds(sessions, conv.id) == ["message_in", "unsupported"]


# --- groups, channels, edits --------------------------------------------------------------------


async def test_group_mention_gets_a_pointer_to_the_private_chat_once(
    webhook: Client, api: FakeBotAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    group = load_update("group_text")
    assert await post_update(webhook, group) == 200
    [sent] = await api.wait_for_sent(1)
    assert sent["chat_id"] == -987654321
    assert f"https://t.me/{BOT_USERNAME}" in sent["text"]
    async with sessions() as session:
        [tp] = list(await session.scalars(select(Touchpoint)))
    assert (tp.kind, tp.actor, tp.channel, tp.conversation_id) == (
        "ignored", "customer", "telegram", None)
    assert tp.details == {"reason": "group_chat", "chat_type": "group", "replied": True}
    assert await count(sessions, Conversation) == 0, "no support conversation in a group"

    before = await counts(sessions)
    assert await post_update(webhook, group) == 200  # redelivered
    await asyncio.sleep(0.2)
    assert await counts(sessions) == before and len(api.sent) == 1


async def test_group_chatter_and_channel_posts_are_ignored(
    webhook: Client, api: FakeBotAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    chatter = load_update("group_text", text="see you all tomorrow", message_id=202)
    assert await post_update(webhook, chatter) == 200
    assert await post_update(webhook, load_update("channel_post")) == 200
    await asyncio.sleep(0.2)
    assert await counts(sessions) == [0, 0, 0, 0, 0]
    assert api.sent == []


async def test_edited_message_is_noted_once_and_not_answered_again(
    webhook: Client, api: FakeBotAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    assert await post_update(webhook, load_update("human_command", message_id=101)) == 200
    await api.wait_for_sent(1)
    edit = load_update("edited_message")
    assert await post_update(webhook, edit) == 200
    assert await post_update(webhook, edit) == 200  # redelivered
    conv = await conversation(sessions)
    assert await touchpoint_kinds(sessions, conv.id) == ["message_in", "handoff",
                                                         "message_edited"]
    async with sessions() as session:
        tp = await session.scalar(select(Touchpoint).where(Touchpoint.kind == "message_edited"))
    assert tp is not None and tp.details == {
        "message_id": f"{USER_ID}:101", "text": "Hello, I need help with my order #12345"}
    await asyncio.sleep(0.2)
    assert len(api.sent) == 1


# --- idempotency and the webhook ----------------------------------------------------------------


async def test_redelivered_updates_change_nothing(
    faq_webhook: Client, api: FakeBotAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    webhook = faq_webhook
    question = private("where is my order", 303, update_id=500)
    assert await post_update(webhook, question) == 200
    await api.wait_for_sent(1)
    press = load_update("callback_query", data="yes:order-status", update_id=501)
    assert await post_update(webhook, press) == 200
    await api.wait_for_sent(3)
    await eventually(lambda: all_sent(sessions))
    before = await counts(sessions)
    for update in (question, press):  # Telegram retries a webhook delivery
        assert await post_update(webhook, update) == 200
    await asyncio.sleep(0.2)
    assert await counts(sessions) == before
    assert len(api.sent) == 3
    # The repeated press is answered again (the spinner must stop), nothing else happens.
    assert len(api.callback_answers) == 2


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x"])
async def test_webhook_without_the_right_secret_is_refused_and_stores_nothing(
    webhook: Client, api: FakeBotAPI, sessions: async_sessionmaker[AsyncSession],
    secret: str | None,
) -> None:
    resp = await webhook.post(
        WEBHOOK_PATH, json=load_update("private_text"),
        headers={SECRET_HEADER: secret} if secret is not None else {},
    )
    assert resp.status == 403
    assert SECRET_HEADER in (await resp.json())["error"]["message"]
    await asyncio.sleep(0.1)
    assert await counts(sessions) == [0, 0, 0, 0, 0]
    assert api.sent == []


async def test_webhook_rejects_what_is_not_an_update(
    webhook: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    for body in (b"{nope", b'{"nope": 1}', b'{"update_id": 5, "message": "hi"}'):
        resp = await webhook.post(WEBHOOK_PATH, data=body, headers={SECRET_HEADER: SECRET})
        assert resp.status == 400, body
    assert await counts(sessions) == [0, 0, 0, 0, 0]


async def test_no_token_means_the_channel_is_off_and_says_so(
    aiohttp_client: Any, settings: Settings, clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="carebot")
    client = await aiohttp_client(create_app(settings, clock))
    assert "Telegram channel off: CAREBOT_TELEGRAM_TOKEN is not set" in caplog.text
    resp = await client.post(WEBHOOK_PATH, json=load_update("private_text"))
    assert resp.status == 404


def test_webhook_mode_needs_a_secret(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET"):
        dataclasses.replace(settings, telegram_token="1:x", telegram_mode="webhook")
    with pytest.raises(SettingsError, match="polling or webhook"):
        dataclasses.replace(settings, telegram_mode="push")


@contextlib.asynccontextmanager
async def receipts_unavailable(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    """Make storing an edit fail for real (its table is gone) until the block ends."""
    async with sessions.begin() as session:
        await session.execute(text("ALTER TABLE channel_receipts RENAME TO receipts_away"))
    try:
        yield
    finally:
        async with sessions.begin() as session:
            await session.execute(text("ALTER TABLE receipts_away RENAME TO channel_receipts"))


async def test_webhook_answers_500_until_the_update_is_stored_then_drops_a_poison_one(
    webhook: Client, api: FakeBotAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    assert await post_update(webhook, load_update("human_command", message_id=101)) == 200
    edit = load_update("edited_message")
    async with receipts_unavailable(sessions):
        assert await post_update(webhook, edit) == 500  # Telegram will deliver it again
    assert await post_update(webhook, edit) == 200
    conv = await conversation(sessions)
    assert (await touchpoint_kinds(sessions, conv.id)).count("message_edited") == 1

    poison = load_update("edited_message", edit_date=1732350099, update_id=100000099)
    async with receipts_unavailable(sessions):
        statuses = [await post_update(webhook, poison) for _ in range(5)]
    assert statuses == [500, 500, 500, 500, 200]  # the fifth failure: logged and dropped


async def test_polling_fetches_a_failed_update_again_instead_of_losing_it(
    polling: Client, api: FakeBotAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    api.push_update(load_update("human_command", message_id=101, update_id=None))
    await api.wait_for_sent(1)
    async with receipts_unavailable(sessions):
        edit = api.push_update(load_update("edited_message", update_id=None))
        offsets = len(api.calls_to("getUpdates"))
        await api.wait_for_calls("getUpdates", offsets + 2)  # fetched again, not confirmed
        assert edit in api.pending_updates
    conv = await conversation(sessions)

    async def noted() -> bool:
        return "message_edited" in await touchpoint_kinds(sessions, conv.id)

    await eventually(noted, what="the edit to be recorded after all")
    assert (await touchpoint_kinds(sessions, conv.id)).count("message_edited") == 1


# --- delivery through the running service --------------------------------------------------------


async def test_429_then_success_through_the_service(
    polling: Client, api: FakeBotAPI, clock: ManualClock,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    api.fail_next("sendMessage", "429", retry_after=2)
    api.push_update(private("where is my order", 304))
    await api.wait_for_calls("sendMessage", 1)

    async def retry_scheduled() -> bool:
        rows = await outbox_rows(sessions)
        return bool(rows) and rows[0].status == "pending" and rows[0].attempts == 1

    await eventually(retry_scheduled, what="the retry to be scheduled")
    await asyncio.sleep(0.15)  # a few worker polls: nothing before retry_after
    assert api.sent == []
    clock.advance(seconds=3)
    [sent] = await api.wait_for_sent(1)
    assert "queue" in sent["text"]  # no knowledge base here: a person takes over
    await eventually(lambda: all_sent(sessions))
    [row] = await outbox_rows(sessions)
    assert row.attempts == 2 and "rate limit" in (row.last_error or "")


async def test_blocked_by_the_user_fails_without_a_retry_loop(
    polling: Client, api: FakeBotAPI, clock: ManualClock,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    api.fail_next("sendMessage", "403")
    api.push_update(private("where is my order", 305))

    async def failed() -> bool:
        rows = await outbox_rows(sessions)
        return bool(rows) and rows[0].status == "failed"

    await eventually(failed, what="the row to fail")
    clock.advance(hours=2)
    await asyncio.sleep(0.3)
    assert len(api.calls_to("sendMessage")) == 1
    conv = await conversation(sessions)
    assert (await touchpoint_kinds(sessions, conv.id))[-1] == "delivery_failed"


async def test_the_bot_token_never_reaches_the_logs(
    polling: Client, api: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # as if someone debugged the HTTP client
    api.push_update(private("where is my order", 306))
    await api.wait_for_sent(1)

    async def logged() -> bool:  # httpx logs once it has read the fake's response
        return "/sendMessage" in caplog.text

    await eventually(logged, what="httpx to log the sendMessage call")
    assert "/bot<redacted>/sendMessage" in caplog.text  # httpx logged the URL, redacted
    assert api.token.split(":")[1] not in caplog.text


# --- administration ------------------------------------------------------------------------------


async def test_set_webhook_registers_the_secret(api: FakeBotAPI, settings: Settings) -> None:
    tg = telegram_settings(settings, api, telegram_webhook_secret=SECRET)
    summary = await set_webhook(tg, "https://carebot.example.com/telegram/webhook")
    assert summary == (f"@{BOT_USERNAME}: webhook set to "
                       "https://carebot.example.com/telegram/webhook")
    assert api.webhook is not None
    assert api.webhook["secret_token"] == SECRET
    assert api.webhook["allowed_updates"] == ["message", "edited_message", "callback_query"]
    with pytest.raises(TelegramSetupError, match="https"):
        await set_webhook(tg, "http://carebot.example.com/telegram/webhook")
    with pytest.raises(TelegramSetupError, match="WEBHOOK_SECRET"):
        await set_webhook(telegram_settings(settings, api), "https://x.example/telegram/webhook")


def test_cli_set_webhook(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                         ) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    api = asyncio.run_coroutine_threadsafe(FakeBotAPI().start(), loop).result(5)
    try:
        monkeypatch.setenv("CAREBOT_TELEGRAM_TOKEN", api.token)
        monkeypatch.setenv("CAREBOT_TELEGRAM_BASE_URL", api.base_url)
        monkeypatch.setenv("CAREBOT_TELEGRAM_WEBHOOK_SECRET", SECRET)
        assert main(["telegram", "set-webhook", "https://h.example/telegram/webhook"]) == 0
        assert "webhook set to https://h.example/telegram/webhook" in capsys.readouterr().out
        assert api.webhook is not None and api.webhook["secret_token"] == SECRET
        assert main(["telegram", "info"]) == 0
        assert "pending updates: 0" in capsys.readouterr().out
        monkeypatch.delenv("CAREBOT_TELEGRAM_WEBHOOK_SECRET")
        assert main(["telegram", "set-webhook", "https://h.example/telegram/webhook"]) == 2
        assert "CAREBOT_TELEGRAM_WEBHOOK_SECRET" in capsys.readouterr().err
    finally:
        asyncio.run_coroutine_threadsafe(api.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def test_worker_command_polls_and_delivers_without_a_web_server(
    api: FakeBotAPI, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("a subprocess start is slow; the app it runs is tested on PostgreSQL above")
    env = {
        **os.environ,
        "CAREBOT_DATABASE_URL": database_url,
        "CAREBOT_TELEGRAM_TOKEN": api.token,
        "CAREBOT_TELEGRAM_BASE_URL": api.base_url,
        "CAREBOT_RUN_TIMERS": "false",
        "CAREBOT_LOG_LEVEL": "INFO",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "carebot", "worker", env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        api.push_update(private("where is my order", 307))
        [sent] = await api.wait_for_sent(1, within=20)
        assert "queue" in sent["text"]  # an empty knowledge base: a person takes over
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 20)
    log = output.decode()
    assert proc.returncode == 0, log
    assert "carebot worker running: outbox delivery and Telegram polling" in log
    assert api.token not in log


async def test_worker_in_webhook_mode_sends_without_routing(
    api: FakeBotAPI, settings: Settings, clock: ManualClock,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """With a webhook the web processes take Telegram's updates: the worker only sends."""
    await queue_messages(sessions, clock, ["An agent will be with you shortly."])
    app = create_worker_app(telegram_settings(settings, api, **WEBHOOK_MODE), clock)
    async with running(app):
        assert INBOUND not in app and FAQ_INDEX not in app
        [sent] = await api.wait_for_sent(1)
        await eventually(lambda: all_sent(sessions), what="the row marked sent")
    assert sent["chat_id"] == USER_ID and sent["text"] == "An agent will be with you shortly."
    assert not api.calls_to("getUpdates")


@pytest.mark.parametrize("update", [
    {"message": {"message_id": 1, "date": 1732350000, "text": "hi"}},  # no chat
    {"message": {"message_id": 1, "date": 1732350000, "chat": {"type": "private"},
                 "text": "hi"}},  # a chat without an id
    {"callback_query": {"id": "1", "chat_instance": "x", "data": "yes:x"}},  # no sender
])
async def test_a_malformed_update_is_refused_not_a_500(
    webhook: Client, sessions: async_sessionmaker[AsyncSession], update: dict[str, Any]
) -> None:
    status = await post_update(webhook, dict(update))
    assert status in (200, 400)  # refused (400) or ignored (200): Telegram stops resending
    async with sessions() as session:
        assert (await session.scalars(select(Contact))).first() is None


async def test_the_bot_token_never_reaches_the_log_even_at_debug(
    api: FakeBotAPI, aiohttp_client: Any, settings: Settings, clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start_service(aiohttp_client, settings, clock, api)
    api.push_update(private("hello there", 501))
    await api.wait_for_sent(1)
    await client.close()
    token = telegram_settings(settings, api).telegram_token
    messages = [r.getMessage() for r in caplog.records]
    assert any("<redacted>" in m for m in messages)  # python-telegram-bot did log its URL
    assert not [m for m in messages if token in m]


async def test_an_update_with_a_number_for_text_is_refused_and_the_service_keeps_answering(
    webhook: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    odd = private("x", 901)
    odd["message"]["text"] = 12345
    assert await post_update(webhook, odd) == 400
    # The inbound writer is still alive: the next update is routed and answered.
    assert await post_update(webhook, private("/help", 902)) == 200


async def test_nul_and_lone_surrogates_in_telegram_text_are_kept_as_replacement_characters(
    webhook: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from carebot.db.models import Message

    odd = private("x", 903)
    odd["message"]["text"] = "help\x00me \ud800please"
    assert await post_update(webhook, odd) == 200  # stored (on PostgreSQL too), never lost
    async with sessions() as session:
        texts = list(await session.scalars(
            select(Message.text).where(Message.direction == "in")))
    assert texts == ["help\ufffdme \ufffdplease"]
