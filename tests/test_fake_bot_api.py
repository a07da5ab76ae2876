"""The fake Telegram Bot API, driven by the real python-telegram-bot client.

No database and no real network: PTB talks HTTP to FakeBotAPI on 127.0.0.1, and the
network guard makes sure nothing reaches api.telegram.org.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import socket
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)

from tests.fakes.bot_api import BOT_USERNAME, DEFAULT_TOKEN, FakeBotAPI
from tests.fakes.fixtures import fixture_names, load_update
from tests.fakes.network_guard import NetworkBlockedError, NetworkGuard, is_local_host

# The guard is an autouse fixture of the tests.fakes.network_guard plugin. Importing it here
# as well keeps this module guarded even if the conftest does not register the plugin.
from tests.fakes.network_guard import network_guard as network_guard

USER_ID = 111111111
KEYBOARD = InlineKeyboardMarkup(
    [
        [
            InlineKeyboardButton("👍 Yes", callback_data="csat:yes"),
            InlineKeyboardButton("👎 No", callback_data="csat:no"),
        ]
    ]
)
KEYBOARD_JSON = {
    "inline_keyboard": [
        [
            {"text": "👍 Yes", "callback_data": "csat:yes"},
            {"text": "👎 No", "callback_data": "csat:no"},
        ]
    ]
}


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    async with Bot(api.token, base_url=api.base_url, base_file_url=api.base_file_url) as b:
        yield b


def seconds(value: int | dtm.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


# --------------------------------------------------------------------------- basics


async def test_get_me(api: FakeBotAPI, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.is_bot
    assert me.username == BOT_USERNAME == bot.username
    assert me.id == int(DEFAULT_TOKEN.split(":")[0])
    # Bot.initialize() (the `async with`) already called getMe once.
    assert [name for name, _ in api.calls] == ["getMe", "getMe"]


async def test_base_url_is_joined_with_token_and_method(api: FakeBotAPI, bot: Bot) -> None:
    assert api.base_url == f"{api.url}/bot"
    assert bot.base_url == f"{api.url}/bot{api.token}"
    # PTB posts to base_url + token + "/" + method; the fake answers the same path directly.
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{api.base_url}{api.token}/getMe")
        body = await resp.json()
    assert resp.status == 200
    assert body["ok"] is True
    assert body["result"]["username"] == BOT_USERNAME


async def test_start_stop_lifecycle() -> None:
    api = FakeBotAPI()
    with pytest.raises(RuntimeError):
        _ = api.url
    await api.start()
    assert api.url.startswith("http://127.0.0.1:")
    await api.stop()
    await api.stop()  # idempotent


# --------------------------------------------------------------------------- sendMessage


async def test_send_message_with_inline_keyboard_is_recorded(api: FakeBotAPI, bot: Bot) -> None:
    message = await bot.send_message(USER_ID, "Did this answer help you?", reply_markup=KEYBOARD)

    assert message.chat.id == USER_ID
    assert message.chat.type == "private"
    assert message.text == "Did this answer help you?"
    assert message.from_user is not None and message.from_user.username == BOT_USERNAME
    assert message.reply_markup == KEYBOARD
    assert abs(message.date.timestamp() - time.time()) < 60

    assert len(api.sent) == 1
    sent = api.sent[0]
    assert sent["chat_id"] == USER_ID and isinstance(sent["chat_id"], int)
    assert sent["text"] == "Did this answer help you?"
    assert sent["reply_markup"] == KEYBOARD_JSON
    assert sent["message_id"] == message.message_id


async def test_send_message_ids_increase_and_text_stays_a_string(api: FakeBotAPI, bot: Bot) -> None:
    first = await bot.send_message(USER_ID, "42")
    second = await bot.send_message(USER_ID, "true")
    assert second.message_id > first.message_id
    assert [s["text"] for s in api.sent] == ["42", "true"]
    assert [s["reply_markup"] for s in api.sent] == [None, None]


async def test_send_message_to_known_group_uses_its_chat(api: FakeBotAPI, bot: Bot) -> None:
    api.push_update(load_update("group_text"))
    message = await bot.send_message(-987654321, "On it!")
    assert message.chat.type == "group"
    assert message.chat.title == "Carebot Test Group"


async def test_send_message_validation_errors_are_bad_requests(api: FakeBotAPI, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(USER_ID, " ")
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(USER_ID, "x" * 4097)
    assert api.sent == []


async def test_json_and_form_bodies_are_both_accepted(api: FakeBotAPI) -> None:
    url = f"{api.base_url}{api.token}/sendMessage"
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            url, json={"chat_id": "111111111", "text": "json body", "reply_markup": KEYBOARD_JSON}
        )
        assert resp.status == 200, await resp.text()
        resp = await http.post(url, data={"chat_id": "-987654321", "text": "form body"})
        assert resp.status == 200, await resp.text()
    assert [(s["chat_id"], s["text"]) for s in api.sent] == [
        (111111111, "json body"),
        (-987654321, "form body"),
    ]
    assert api.sent[0]["reply_markup"] == KEYBOARD_JSON


async def test_unknown_method_is_404(api: FakeBotAPI, bot: Bot) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{api.base_url}{api.token}/sendPigeon", data={"chat_id": "1"})
        body = await resp.json()
    assert resp.status == 404
    assert body == {"ok": False, "error_code": 404, "description": "Not Found"}
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendPigeon", api_kwargs={"chat_id": 1})
    assert api.calls[-1] == ("sendPigeon", {"chat_id": 1})


async def test_required_token_rejects_other_tokens() -> None:
    async with FakeBotAPI(token="1:right") as api:
        async with Bot("1:right", base_url=api.base_url) as ok:
            assert ok.username == BOT_USERNAME
        with pytest.raises(InvalidToken):
            await Bot("1:wrong", base_url=api.base_url).initialize()


# --------------------------------------------------------------------------- updates


def _check_update(name: str, update: Update) -> None:
    checks: dict[str, Callable[[Update], bool]] = {
        "private_text": lambda u: (
            u.message is not None
            and u.message.chat.type == "private"
            and u.message.chat.id == USER_ID
            and bool(u.message.text)
        ),
        "start_command": lambda u: u.message is not None and u.message.text == "/start",
        "human_command": lambda u: u.message is not None and u.message.text == "/human",
        "help_command": lambda u: u.message is not None and u.message.text == "/help",
        "callback_query": lambda u: (
            u.callback_query is not None
            and u.callback_query.data == "csat:yes"
            and u.callback_query.message is not None
            and u.callback_query.message.reply_markup is not None
        ),
        "group_text": lambda u: (
            u.message is not None and u.message.chat.type == "group" and u.message.chat.id < 0
        ),
        "channel_post": lambda u: (
            u.channel_post is not None and u.channel_post.chat.type == "channel"
        ),
        "edited_message": lambda u: (
            u.edited_message is not None and u.edited_message.edit_date is not None
        ),
        "sticker": lambda u: u.message is not None and u.message.sticker is not None,
        "photo": lambda u: u.message is not None and len(u.message.photo) == 3,
        "voice": lambda u: u.message is not None and u.message.voice is not None,
    }
    assert checks[name](update), f"{name}: {update}"
    if name.endswith("_command"):
        assert update.message is not None
        entity = update.message.entities[0]
        assert (entity.type, entity.offset, entity.length) == (
            "bot_command",
            0,
            len(update.message.text or ""),
        )
    if update.effective_user is not None:
        assert update.effective_user.id == USER_ID


def test_every_fixture_is_listed() -> None:
    assert fixture_names() == sorted(
        [
            "callback_query",
            "channel_post",
            "edited_message",
            "group_text",
            "help_command",
            "human_command",
            "photo",
            "private_text",
            "start_command",
            "sticker",
            "voice",
        ]
    )


@pytest.mark.parametrize("name", fixture_names())
async def test_fixture_parses_with_de_json(name: str, bot: Bot) -> None:
    data = load_update(name)
    update = Update.de_json(data, bot)
    assert update.update_id == data["update_id"]
    assert update.api_kwargs == {}
    _check_update(name, update)


@pytest.mark.parametrize("name", fixture_names())
async def test_get_updates_returns_pushed_fixture(name: str, api: FakeBotAPI, bot: Bot) -> None:
    queued = api.push_update(load_update(name))
    updates = await bot.get_updates(timeout=0)
    assert len(updates) == 1
    assert updates[0].update_id == queued["update_id"]
    _check_update(name, updates[0])


async def test_get_updates_honours_offset(api: FakeBotAPI, bot: Bot) -> None:
    ids = [
        api.push_update(load_update("private_text", update_id=None))["update_id"] for _ in range(3)
    ]
    assert ids == sorted(ids) and len(set(ids)) == 3

    assert [u.update_id for u in await bot.get_updates()] == ids
    assert [u.update_id for u in await bot.get_updates(offset=ids[1])] == ids[1:]
    assert [u.update_id for u in await bot.get_updates(limit=1)] == ids[1:2]  # 1st confirmed
    assert await bot.get_updates(offset=ids[-1] + 1) == ()
    assert api.pending_updates == []


async def test_push_update_keeps_ids_increasing(api: FakeBotAPI) -> None:
    a = api.push_update(load_update("callback_query"))  # 100000005
    b = api.push_update(load_update("private_text"))  # 100000001: too small, renumbered
    c = api.push_update({"update_id": 500000000, **load_update("help_command", update_id=None)})
    assert a["update_id"] == 100000005
    assert b["update_id"] == 100000006
    assert c["update_id"] == 500000000


async def test_get_updates_long_poll_returns_as_soon_as_an_update_arrives(
    api: FakeBotAPI, bot: Bot
) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.2)
    assert not poll.done()
    api.push_update(load_update("private_text"))
    updates = await asyncio.wait_for(poll, 5)
    assert len(updates) == 1
    assert time.monotonic() - started < 3


async def test_get_updates_long_poll_times_out_empty(api: FakeBotAPI, bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 <= time.monotonic() - started < 3


async def test_stop_releases_a_pending_long_poll() -> None:
    api = await FakeBotAPI().start()
    async with Bot(api.token, base_url=api.base_url) as b:
        poll = asyncio.create_task(b.get_updates(timeout=30))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await api.stop()
        assert time.monotonic() - started < 2
        await asyncio.wait_for(asyncio.gather(poll, return_exceptions=True), 5)


def test_load_update_returns_deep_copies_with_overrides() -> None:
    a = load_update("private_text")
    a["message"]["chat"]["id"] = 1
    assert load_update("private_text")["message"]["chat"]["id"] == USER_ID

    assert "update_id" not in load_update("private_text", update_id=None)
    assert load_update("private_text", update_id=7)["update_id"] == 7
    assert load_update("callback_query", data="csat:no")["callback_query"]["data"] == "csat:no"

    start = load_update("start_command", text="/start ref_42")["message"]
    assert start["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]
    assert "entities" not in load_update("start_command", text="hi")["message"]
    human = load_update("private_text", text="/human please")["message"]
    assert human["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]
    group = load_update("group_text", text="@carebot_test_bot refund?")["message"]
    assert group["entities"] == [{"offset": 0, "length": 17, "type": "mention"}]

    other = load_update("private_text", user_id=222)["message"]
    assert other["from"]["id"] == other["chat"]["id"] == 222
    cb = load_update("callback_query", user_id=222)["callback_query"]
    assert cb["from"]["id"] == cb["message"]["chat"]["id"] == 222
    assert load_update("group_text", chat_id=-5)["message"]["chat"]["id"] == -5
    assert (
        load_update("private_text", from__first_name="Bob")["message"]["from"]["first_name"]
        == "Bob"
    )
    with pytest.raises(FileNotFoundError):
        load_update("nope")


# --------------------------------------------------------------------------- other methods


async def test_callback_answer_and_edits(api: FakeBotAPI, bot: Bot) -> None:
    api.push_update(load_update("callback_query"))
    (update,) = await bot.get_updates()
    query = update.callback_query
    assert query is not None and query.message is not None

    assert await query.answer("Thanks!") is True
    assert api.callback_answers == [{"callback_query_id": query.id, "text": "Thanks!"}]

    edited = await query.edit_message_reply_markup(None)
    assert not isinstance(edited, bool) and edited.reply_markup is None
    with pytest.raises(BadRequest, match="not modified"):  # what Telegram says, too
        await query.edit_message_reply_markup(None)

    edited = await query.edit_message_text("Thanks for your feedback!")
    assert not isinstance(edited, bool)
    assert edited.text == "Thanks for your feedback!"
    assert edited.edit_date is not None
    assert [e["method"] for e in api.edits] == ["editMessageReplyMarkup", "editMessageText"]
    assert api.edits[1]["chat_id"] == USER_ID
    assert api.edits[1]["message_id"] == query.message.message_id

    # Editing a message the fake has not seen still works.
    msg = await bot.edit_message_text(
        "changed", chat_id=USER_ID, message_id=4242, reply_markup=KEYBOARD
    )
    assert not isinstance(msg, bool) and msg.reply_markup == KEYBOARD


async def test_webhook_methods(api: FakeBotAPI, bot: Bot) -> None:
    info = await bot.get_webhook_info()
    assert info.url == ""

    assert await bot.set_webhook(
        "https://carebot.example.com/telegram/webhook",
        secret_token="s3cret-token_1",
        allowed_updates=["message", "callback_query"],
    )
    assert api.webhook is not None
    assert api.webhook["url"] == "https://carebot.example.com/telegram/webhook"
    assert api.webhook["secret_token"] == "s3cret-token_1"
    assert api.webhook["allowed_updates"] == ["message", "callback_query"]

    info = await bot.get_webhook_info()
    assert info.url == "https://carebot.example.com/telegram/webhook"
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()

    with pytest.raises(BadRequest, match=r"(?i)https url"):
        await bot.set_webhook("http://carebot.example.com/hook")

    assert await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.get_updates() == ()
    assert api.webhook["url"] == "https://carebot.example.com/telegram/webhook"  # last set


async def test_set_my_commands(api: FakeBotAPI, bot: Bot) -> None:
    assert await bot.set_my_commands([("start", "Start"), ("help", "Help"), ("human", "Agent")])
    assert api.commands == [
        {"command": "start", "description": "Start"},
        {"command": "help", "description": "Help"},
        {"command": "human", "description": "Agent"},
    ]
    assert [c.command for c in await bot.get_my_commands()] == ["start", "help", "human"]


async def test_get_file_and_download(api: FakeBotAPI, bot: Bot) -> None:
    voice = load_update("voice")["message"]["voice"]
    api.add_file(voice["file_id"], b"OggS fake voice", file_path="voice/file_1.oga")
    file = await bot.get_file(voice["file_id"])
    assert file.file_path == f"{api.base_file_url}{api.token}/voice/file_1.oga"
    assert bytes(await file.download_as_bytearray()) == b"OggS fake voice"


async def test_custom_handler(api: FakeBotAPI, bot: Bot) -> None:
    api.set_handler(
        "sendPhoto",
        lambda params: {
            "message_id": 1,
            "date": 0,
            "chat": {"id": params["chat_id"], "type": "private"},
        },
    )
    msg = await bot.send_photo(USER_ID, "AgACAgIAAxkBAAIBZmdBpF9waG90b194X2ZpbGVfaWQAAgI")
    assert msg.chat.id == USER_ID
    assert api.calls_to("sendPhoto")[0]["photo"].startswith("AgAC")


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("kind", "kw", "exc_type", "message"),
    [
        ("429", {"retry_after": 7}, RetryAfter, "Flood control exceeded. Retry in 7"),
        ("500", {}, NetworkError, "Internal Server Error"),
        ("403", {}, Forbidden, "Forbidden: bot was blocked by the user"),
        ("400", {}, BadRequest, "Chat not found"),
    ],
)
async def test_failure_kinds_raise_real_ptb_exceptions(
    api: FakeBotAPI,
    bot: Bot,
    kind: str,
    kw: dict[str, Any],
    exc_type: type[Exception],
    message: str,
) -> None:
    api.fail_next("sendMessage", kind, **kw)
    with pytest.raises(exc_type) as info:
        await bot.send_message(USER_ID, "hello")
    assert type(info.value) is exc_type  # not a subclass (BadRequest/TimedOut are NetworkErrors)
    assert message in str(info.value)
    if isinstance(info.value, RetryAfter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PTB 22 deprecates the int form
            assert seconds(info.value.retry_after) == 7

    # The failed call is recorded in calls, not in sent; the next call succeeds.
    assert api.calls_to("sendMessage") == [{"chat_id": USER_ID, "text": "hello"}]
    assert api.sent == []
    await bot.send_message(USER_ID, "hello again")
    assert [s["text"] for s in api.sent] == ["hello again"]


async def test_error_bodies_look_like_telegram(api: FakeBotAPI) -> None:
    api.fail_next("sendMessage", "429", retry_after=3)
    api.fail_next("sendMessage", "500")
    api.fail_next("sendMessage", "403")
    api.fail_next("sendMessage", "400")
    url = f"{api.base_url}{api.token}/sendMessage"
    bodies = []
    async with aiohttp.ClientSession() as http:
        for _ in range(4):
            resp = await http.post(url, data={"chat_id": "1", "text": "x"})
            bodies.append((resp.status, await resp.json()))
    assert bodies == [
        (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 3",
                "parameters": {"retry_after": 3},
            },
        ),
        (500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}),
        (
            403,
            {
                "ok": False,
                "error_code": 403,
                "description": "Forbidden: bot was blocked by the user",
            },
        ),
        (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}),
    ]


async def test_timeout_kind_makes_the_client_time_out(api: FakeBotAPI, bot: Bot) -> None:
    api.fail_next("sendMessage", "timeout", delay=1.0)
    with pytest.raises(TimedOut):
        await bot.send_message(USER_ID, "slow", read_timeout=0.2)
    # Like Telegram, the server still delivers the message after the delay: a client that
    # retries on TimedOut can send it twice.
    await api.wait_for_sent(1, within=5)
    assert api.sent[0]["text"] == "slow"


async def test_failures_apply_in_fifo_order_and_per_method(api: FakeBotAPI, bot: Bot) -> None:
    api.fail_next("sendMessage", "429", retry_after=2)
    api.fail_next("sendMessage", "500", times=2)
    api.fail_next("answerCallbackQuery", "400", description="Bad Request: query is too old")

    await bot.get_me()  # other methods are unaffected
    with pytest.raises(RetryAfter):
        await bot.send_message(USER_ID, "1")
    for _ in range(2):
        with pytest.raises(NetworkError) as info:
            await bot.send_message(USER_ID, "2")
        assert type(info.value) is NetworkError
    await bot.send_message(USER_ID, "3")
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query("123")
    assert await bot.answer_callback_query("123")
    assert [s["text"] for s in api.sent] == ["3"]
    assert len(api.calls_to("sendMessage")) == 4


def test_fail_next_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError):
        FakeBotAPI().fail_next("sendMessage", "418")


# --------------------------------------------------------------------------- PTB Application


async def _start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text("Welcome!", reply_markup=KEYBOARD)


async def _button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.callback_query is not None
    await update.callback_query.answer("Noted")


def _application(api: FakeBotAPI, *, polling: bool) -> Application[Any, Any, Any, Any, Any, Any]:
    builder = (
        ApplicationBuilder()
        .token(api.token)
        .base_url(api.base_url)
        .base_file_url(api.base_file_url)
    )
    if not polling:
        builder = builder.updater(None)  # webhook mode: updates are fed by our own web app
    app = builder.build()
    app.add_handler(CommandHandler("start", _start))
    app.add_handler(CallbackQueryHandler(_button))
    return app


async def test_application_without_updater_processes_updates(api: FakeBotAPI) -> None:
    app = _application(api, polling=False)
    async with app:  # initialize() calls getMe
        assert app.updater is None
        assert api.calls_to("getMe")
        await app.process_update(Update.de_json(load_update("start_command"), app.bot))
        await app.process_update(Update.de_json(load_update("callback_query"), app.bot))
    assert api.sent[0]["chat_id"] == USER_ID
    assert api.sent[0]["text"] == "Welcome!"
    assert api.sent[0]["reply_markup"] == KEYBOARD_JSON
    assert api.callback_answers[0]["text"] == "Noted"


async def test_application_polling_end_to_end(api: FakeBotAPI) -> None:
    app = _application(api, polling=True)
    assert app.updater is not None
    async with app:
        await app.start()
        await app.updater.start_polling(timeout=1, poll_interval=0)
        api.push_update(load_update("start_command"))
        await api.wait_for_sent(1)
        await app.updater.stop()
        await app.stop()
    assert api.sent[0]["text"] == "Welcome!"
    assert api.calls_to("deleteWebhook")  # start_polling's bootstrap
    assert api.pending_updates == []  # the final getUpdates confirmed it


# --------------------------------------------------------------------------- network guard


async def test_guard_blocks_real_bot_from_reaching_telegram(network_guard: NetworkGuard) -> None:
    bot = Bot(DEFAULT_TOKEN)  # default base_url: https://api.telegram.org/bot
    assert bot.base_url.startswith("https://api.telegram.org/")
    with network_guard.expect_blocked(), pytest.raises(NetworkError) as info:
        await bot.get_me()
    assert isinstance(info.value.__cause__, NetworkBlockedError)
    assert "test tried to reach the real network" in str(info.value)
    assert "api.telegram.org" in str(info.value)
    assert any("api.telegram.org" in v for v in network_guard.violations)


async def test_guard_blocks_literal_ip_connect(network_guard: NetworkGuard) -> None:
    bot = Bot(DEFAULT_TOKEN, base_url="https://149.154.167.220/bot")
    with network_guard.expect_blocked(), pytest.raises(NetworkError) as info:
        await bot.get_me()
    assert "149.154.167.220" in str(info.value)


def test_guard_blocks_plain_sockets(network_guard: NetworkGuard) -> None:
    with network_guard.expect_blocked():
        with pytest.raises(NetworkBlockedError, match=r"api\.telegram\.org"):
            socket.create_connection(("api.telegram.org", 443), timeout=1)
        with pytest.raises(NetworkBlockedError):
            socket.gethostbyname("example.com")
        with socket.socket() as s, pytest.raises(RuntimeError, match="real network"):
            s.connect(("8.8.8.8", 53))
    assert len(network_guard.violations) == 3
    assert network_guard.unexpected == []


def test_guard_allows_loopback_and_unix_sockets(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("localhost", port), timeout=1):
            pass
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("0.0.0.0", True),
        (None, True),
        (b"localhost", True),
        ("api.telegram.org", False),
        ("149.154.167.220", False),
        ("10.0.0.5", False),
        ("2001:67c:4e8:f004::9", False),
    ],
)
def test_is_local_host(host: Any, local: bool) -> None:
    assert is_local_host(host) is local


def test_guard_reports_unacknowledged_attempts() -> None:
    guard = NetworkGuard()
    guard._record("getaddrinfo('api.telegram.org', 443)")
    assert guard.unexpected == ["getaddrinfo('api.telegram.org', 443)"]
    with pytest.raises(AssertionError, match="saw none"), guard.expect_blocked():
        pass
