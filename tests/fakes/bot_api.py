"""A fake Telegram Bot API server for tests.

`FakeBotAPI` is a small aiohttp app bound to 127.0.0.1 on a random port. The REAL
python-telegram-bot client is pointed at it with ``base_url``, so the code under test
makes real HTTP requests and parses real responses, and nothing goes to api.telegram.org.

    async with FakeBotAPI() as api:
        app = (
            ApplicationBuilder()
            .token(api.token)
            .base_url(api.base_url)            # "http://127.0.0.1:PORT/bot"
            .base_file_url(api.base_file_url)  # "http://127.0.0.1:PORT/file/bot"
            .updater(None)
            .build()
        )
        await app.initialize()                 # calls getMe
        ...
        assert api.sent[0]["text"] == "Hello"

PTB joins the URL as ``base_url + token + "/" + method``, e.g.
``http://127.0.0.1:PORT/bot<TOKEN>/sendMessage``. It POSTs
``application/x-www-form-urlencoded`` bodies (``multipart/form-data`` when uploading
files). String values are sent as-is, and every other value (ints, bools, lists, dicts) is
sent as its JSON encoding. The fake also accepts JSON bodies and query strings (GET), like
the real Bot API.

Error responses are shaped like Telegram's, so PTB raises its real exceptions:

    429 + parameters.retry_after -> telegram.error.RetryAfter
    500                          -> telegram.error.NetworkError
    403                          -> telegram.error.Forbidden
    400                          -> telegram.error.BadRequest
    401 / 404                    -> telegram.error.InvalidToken
    409                          -> telegram.error.Conflict
    slow answer (kind "timeout") -> telegram.error.TimedOut  (client read timeout)
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "BOT_ID",
    "BOT_USERNAME",
    "DEFAULT_TOKEN",
    "FAILURE_KINDS",
    "BotAPIError",
    "FakeBotAPI",
]

BOT_ID = 900000001
BOT_USERNAME = "carebot_test_bot"
BOT_FIRST_NAME = "Carebot Test"
DEFAULT_TOKEN = f"{BOT_ID}:AAFakeCarebotTestToken_0123456789abcdefgh"

FAILURE_KINDS = ("429", "500", "403", "400", "timeout")

MAX_MESSAGE_LENGTH = 4096

# Form-encoded parameters are strings. PTB JSON-encodes every non-string value, so the fake
# JSON-decodes form values, except for parameters that are always strings in the Bot API
# (otherwise a message text like "42" or "true" would turn into a number or a bool).
_STRING_PARAMS = frozenset(
    {
        "action",
        "address",
        "business_connection_id",
        "callback_query_id",
        "caption",
        "currency",
        "custom_title",
        "description",
        "emoji",
        "file_id",
        "first_name",
        "game_short_name",
        "inline_message_id",
        "inline_query_id",
        "ip_address",
        "language_code",
        "last_name",
        "message_effect_id",
        "name",
        "parse_mode",
        "payload",
        "phone_number",
        "provider_token",
        "question",
        "secret_token",
        "short_name",
        "text",
        "title",
        "url",
        "vcard",
    }
)
# Integer parameters that may arrive as numeric strings (e.g. in a JSON body).
_INT_PARAMS = frozenset(
    {"chat_id", "from_chat_id", "user_id", "message_id", "offset", "limit", "timeout"}
)
_SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


class BotAPIError(Exception):
    """Raise from a custom handler (see `FakeBotAPI.set_handler`) to answer with an error."""

    def __init__(
        self,
        error_code: int,
        description: str,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{error_code}: {description}")
        self.error_code = error_code
        self.description = description
        self.parameters = dict(parameters) if parameters else None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


@dataclass
class _Failure:
    method: str  # lower-cased method name, or "*" for any method
    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Result:
    value: Any
    description: str | None = None


Handler = Callable[[dict[str, Any]], Any | Awaitable[Any]]


class FakeBotAPI:
    """In-process fake of the Telegram Bot API (https://core.telegram.org/bots/api).

    Args:
        token: if given, requests with another token get 401 Unauthorized (PTB raises
            InvalidToken). If None, any token is accepted. ``api.token`` is the token to use.
        host: interface to bind; keep it on loopback.
        shutdown_timeout: how long ``stop()`` waits for in-flight requests.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        host: str = "127.0.0.1",
        bot_username: str = BOT_USERNAME,
        bot_first_name: str = BOT_FIRST_NAME,
        shutdown_timeout: float = 2.0,
    ) -> None:
        self.token: str = token or DEFAULT_TOKEN
        self._required_token = token
        self._host = host
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

        bot_id = _bot_id_from_token(self.token)
        self.bot_user: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

        # Records. All are plain lists/dicts so tests can inspect them directly.
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sent: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.chat_actions: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] | None = None  # params of the last setWebhook call
        self.webhook_url: str = ""  # currently active webhook ("" = none)
        self.commands: list[dict[str, Any]] = []  # last setMyCommands commands
        self.chats: dict[int | str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, Any]] = {}  # file_id -> {"file_path", "content"}

        self._updates: list[dict[str, Any]] = []
        self._last_update_id = 0
        self._next_message_id = 1000
        self._messages: dict[tuple[int | str, int], dict[str, Any]] = {}
        self._failures: list[_Failure] = []
        self._custom: dict[str, Handler] = {}
        self._wakeup: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None

        self._methods: dict[str, tuple[str, Callable[[dict[str, Any]], Awaitable[Any]]]] = {}
        for name, func in (
            ("getMe", self._get_me),
            ("getUpdates", self._get_updates),
            ("sendMessage", self._send_message),
            ("answerCallbackQuery", self._answer_callback_query),
            ("editMessageText", self._edit_message_text),
            ("editMessageReplyMarkup", self._edit_message_reply_markup),
            ("setWebhook", self._set_webhook),
            ("deleteWebhook", self._delete_webhook),
            ("getWebhookInfo", self._get_webhook_info),
            ("setMyCommands", self._set_my_commands),
            ("getMyCommands", self._get_my_commands),
            ("deleteMyCommands", self._delete_my_commands),
            ("sendChatAction", self._send_chat_action),
            ("getFile", self._get_file),
        ):
            self._methods[name.lower()] = (name, func)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeBotAPI:
        if self._runner is not None:
            raise RuntimeError("FakeBotAPI already started")
        self._wakeup = asyncio.Event()
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{file_path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_not_found)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        site = web.TCPSite(runner, self._host, 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        assert self._closing is not None and self._wakeup is not None
        self._closing.set()
        self._wakeup.set()  # release long-polling getUpdates
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> FakeBotAPI:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``"""
        if self._port is None:
            raise RuntimeError("FakeBotAPI is not started")
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """Pass to ``Bot(base_url=...)`` / ``ApplicationBuilder().base_url(...)``.

        PTB appends the token, then ``/<method>``.
        """
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """Pass to ``Bot(base_file_url=...)`` / ``ApplicationBuilder().base_file_url(...)``."""
        return f"{self.url}/file/bot"

    # ------------------------------------------------------------------ test controls

    def push_update(self, update: Mapping[str, Any] | Any) -> dict[str, Any]:
        """Queue an Update for getUpdates and return the queued copy.

        Accepts a dict (or an object with ``to_dict()``, e.g. ``telegram.Update``).
        ``update_id`` is assigned (last + 1) when it is missing or not greater than the
        last queued one, because Telegram's update ids always increase.
        """
        data = update.to_dict() if hasattr(update, "to_dict") else update
        data = copy.deepcopy(dict(data))
        update_id = data.get("update_id")
        if not isinstance(update_id, int) or update_id <= self._last_update_id:
            update_id = self._last_update_id + 1
        data["update_id"] = update_id
        self._last_update_id = update_id
        self._remember(data)
        self._updates.append(data)
        if self._wakeup is not None:
            self._wakeup.set()
        return data

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Queued updates not yet confirmed by a getUpdates offset."""
        return list(self._updates)

    def fail_next(self, method: str, kind: str, times: int = 1, **kw: Any) -> None:
        """Make the next ``times`` calls of ``method`` fail (FIFO with other failures).

        kind:
          "429"     -> HTTP 429, parameters.retry_after = kw ``retry_after`` (default 1)
          "500"     -> HTTP 500 Internal Server Error
          "403"     -> HTTP 403 "Forbidden: bot was blocked by the user"
          "400"     -> HTTP 400 "Bad Request: chat not found"
          "timeout" -> sleep kw ``delay`` seconds (default 10), then answer normally
        kw ``description`` overrides the error description. ``method`` may be "*" (any).
        """
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; expected one of {FAILURE_KINDS}")
        if times < 1:
            raise ValueError("times must be >= 1")
        key = "*" if method == "*" else method.lower()
        for _ in range(times):
            self._failures.append(_Failure(key, kind, dict(kw)))

    def set_handler(self, method: str, handler: Handler) -> None:
        """Serve ``method`` with ``handler(params) -> result`` (sync or async).

        Overrides a built-in method or adds one. Raise `BotAPIError` for an error answer.
        """
        self._custom[method.lower()] = handler

    def remove_handler(self, method: str) -> None:
        """Serve ``method`` with the built-in behaviour again (undoes `set_handler`)."""
        self._custom.pop(method.lower(), None)

    def hold(self, method: str) -> asyncio.Event:
        """Make calls of ``method`` wait, unanswered, until the returned event is set; then
        they are served normally. Simulates a request that reached the server and hangs."""
        release = asyncio.Event()
        builtin = self._methods[method.lower()][1]

        async def held(params: dict[str, Any]) -> Any:
            await release.wait()
            return await builtin(params)

        self.set_handler(method, held)
        return release

    def add_file(
        self, file_id: str, content: bytes, *, file_path: str | None = None
    ) -> dict[str, Any]:
        """Make ``file_id`` downloadable through getFile + the file URL."""
        entry = {
            "file_id": file_id,
            "file_unique_id": f"AgAD{file_id[-8:]}",
            "file_size": len(content),
            "file_path": file_path or f"documents/{file_id}",
            "content": content,
        }
        self.files[file_id] = entry
        return entry

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        """Params of every call of ``method`` (case-insensitive), in order."""
        key = method.lower()
        return [params for name, params in self.calls if name.lower() == key]

    async def wait_for_sent(self, count: int = 1, *, within: float = 5.0) -> list[dict[str, Any]]:
        """Wait up to ``within`` seconds until ``count`` messages were sent; return ``sent``."""
        await self._wait_until(
            lambda: len(self.sent) >= count,
            within,
            lambda: f"expected {count} sendMessage call(s), got {len(self.sent)}: {self.sent}",
        )
        return self.sent

    async def wait_for_calls(
        self, method: str, count: int = 1, *, within: float = 5.0
    ) -> list[dict[str, Any]]:
        """Wait up to ``within`` seconds for ``count`` calls of ``method``; return their params."""
        await self._wait_until(
            lambda: len(self.calls_to(method)) >= count,
            within,
            lambda: f"expected {count} {method} call(s); calls so far: {self.calls}",
        )
        return self.calls_to(method)

    def clear(self) -> None:
        """Forget recorded calls (not queued updates, webhook state or pending failures)."""
        self.calls.clear()
        self.sent.clear()
        self.edits.clear()
        self.callback_answers.clear()
        self.chat_actions.clear()

    # ------------------------------------------------------------------ HTTP plumbing

    async def _handle_method(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        method = request.match_info["method"]
        try:
            params = await _read_params(request)
        except ValueError as exc:
            self.calls.append((method, {}))
            return _error(BotAPIError(400, f"Bad Request: {exc}"))
        key = method.lower()
        canonical = self._methods[key][0] if key in self._methods else method
        self.calls.append((canonical, params))

        if self._required_token is not None and token != self._required_token:
            return _error(BotAPIError(401, "Unauthorized"))

        failure = self._take_failure(key)
        if failure is not None:
            if failure.kind != "timeout":
                return _error(_failure_error(failure))
            if not await self._sleep(float(failure.kwargs.get("delay", 10.0))):
                return _error(BotAPIError(500, "Internal Server Error"))  # server stopping

        try:
            if key in self._custom:
                result = self._custom[key](params)
                if inspect.isawaitable(result):
                    result = await result
            elif key in self._methods:
                result = await self._methods[key][1](params)
            else:
                return _error(BotAPIError(404, "Not Found"))
        except BotAPIError as exc:
            return _error(exc)

        body: dict[str, Any] = {"ok": True}
        if isinstance(result, _Result):
            body["result"] = result.value
            if result.description:
                body["description"] = result.description
        else:
            body["result"] = result
        return web.json_response(body)

    async def _handle_file(self, request: web.Request) -> web.Response:
        file_path = request.match_info["file_path"]
        for entry in self.files.values():
            if entry["file_path"] == file_path:
                return web.Response(body=entry["content"])
        return _error(BotAPIError(404, "Not Found"))

    async def _handle_not_found(self, request: web.Request) -> web.Response:
        return _error(BotAPIError(404, "Not Found"))

    def _take_failure(self, key: str) -> _Failure | None:
        for i, failure in enumerate(self._failures):
            if failure.method in ("*", key):
                return self._failures.pop(i)
        return None

    async def _sleep(self, seconds: float) -> bool:
        """Sleep; return False if interrupted because the server is stopping."""
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    async def _wait_until(
        self, predicate: Callable[[], bool], within: float, describe: Callable[[], str]
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate():
            if loop.time() >= deadline:
                raise AssertionError(f"timed out after {within}s: {describe()}")
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ state helpers

    def _remember(self, value: Any) -> None:
        """Register chats and messages seen in pushed updates (for realistic replies)."""
        if isinstance(value, dict):
            chat = value.get("chat")
            if isinstance(chat, dict) and "id" in chat and "type" in chat:
                self.chats[chat["id"]] = copy.deepcopy(chat)
                if isinstance(value.get("message_id"), int):
                    self._messages[(chat["id"], value["message_id"])] = copy.deepcopy(value)
            for item in value.values():
                self._remember(item)
        elif isinstance(value, list):
            for item in value:
                self._remember(item)

    def _chat(self, chat_id: int | str) -> dict[str, Any]:
        if chat_id in self.chats:
            return copy.deepcopy(self.chats[chat_id])
        if isinstance(chat_id, str):  # "@channelusername"
            return {
                "id": -1009999999999,
                "title": chat_id.lstrip("@"),
                "type": "channel",
                "username": chat_id.lstrip("@"),
            }
        if chat_id > 0:
            return {"id": chat_id, "first_name": "Test", "type": "private"}
        if str(chat_id).startswith("-100"):
            return {"id": chat_id, "title": "Test Supergroup", "type": "supergroup"}
        return {"id": chat_id, "title": "Test Group", "type": "group"}

    def _bot_sender(self) -> dict[str, Any]:
        return {k: self.bot_user[k] for k in ("id", "is_bot", "first_name", "username")}

    def _find_message(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The message an edit targets; None for inline messages. Unknown ids are synthesized."""
        if params.get("inline_message_id"):
            return None
        chat_id = params.get("chat_id")
        message_id = params.get("message_id")
        if chat_id in (None, "") or not isinstance(message_id, int):
            raise BotAPIError(400, "Bad Request: message identifier is not specified")
        message = self._messages.get((chat_id, message_id))
        if message is None:
            message = {
                "message_id": message_id,
                "from": self._bot_sender(),
                "chat": self._chat(chat_id),
                "date": int(time.time()),
            }
            self._messages[(chat_id, message_id)] = message
        return message

    # ------------------------------------------------------------------ Bot API methods

    async def _get_me(self, params: dict[str, Any]) -> Any:
        return copy.deepcopy(self.bot_user)

    async def _get_updates(self, params: dict[str, Any]) -> Any:
        assert self._wakeup is not None and self._closing is not None
        if self.webhook_url:
            raise BotAPIError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)

        # Confirm / forget updates as Telegram does.
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._wakeup.clear()
            available = [u for u in self._updates if u["update_id"] >= offset][:limit]
            if available or self._closing.is_set():
                return copy.deepcopy(available)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
            except TimeoutError:
                return []

    async def _send_message(self, params: dict[str, Any]) -> Any:
        chat_id = params.get("chat_id")
        text = params.get("text")
        if chat_id in (None, ""):
            raise BotAPIError(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            raise BotAPIError(400, "Bad Request: message text is empty")
        if len(text) > MAX_MESSAGE_LENGTH:
            raise BotAPIError(400, "Bad Request: message is too long")
        reply_markup = params.get("reply_markup")
        if reply_markup is not None and not isinstance(reply_markup, dict):
            raise BotAPIError(400, "Bad Request: can't parse reply keyboard markup JSON object")

        message: dict[str, Any] = {
            "message_id": self._next_message_id,
            "from": self._bot_sender(),
            "chat": self._chat(chat_id),
            "date": int(time.time()),
            "text": text,
        }
        self._next_message_id += 1
        # Telegram echoes only inline keyboards back in the Message.
        if reply_markup and "inline_keyboard" in reply_markup:
            message["reply_markup"] = reply_markup
        self._messages[(chat_id, message["message_id"])] = message
        self.sent.append(
            {
                **params,
                "chat_id": chat_id,
                "text": text,
                "reply_markup": reply_markup,
                "message_id": message["message_id"],
            }
        )
        return copy.deepcopy(message)

    async def _answer_callback_query(self, params: dict[str, Any]) -> Any:
        if not params.get("callback_query_id"):
            raise BotAPIError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        self.callback_answers.append(dict(params))
        return True

    async def _edit_message_text(self, params: dict[str, Any]) -> Any:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BotAPIError(400, "Bad Request: message text is empty")
        if len(text) > MAX_MESSAGE_LENGTH:
            raise BotAPIError(400, "Bad Request: MESSAGE_TOO_LONG")
        message = self._find_message(params)
        new_markup = params.get("reply_markup")
        if message is not None:
            if message.get("text") == text and message.get("reply_markup") == new_markup:
                raise BotAPIError(400, _NOT_MODIFIED)
            message["text"] = text
            message.pop("entities", None)
            _set_markup(message, new_markup)
            message["edit_date"] = int(time.time())
        self.edits.append({"method": "editMessageText", **params})
        return True if message is None else copy.deepcopy(message)

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> Any:
        message = self._find_message(params)
        new_markup = params.get("reply_markup")
        if message is not None:
            if message.get("reply_markup") == new_markup:
                raise BotAPIError(400, _NOT_MODIFIED)
            _set_markup(message, new_markup)
            message["edit_date"] = int(time.time())
        self.edits.append({"method": "editMessageReplyMarkup", **params})
        return True if message is None else copy.deepcopy(message)

    async def _set_webhook(self, params: dict[str, Any]) -> Any:
        url = params.get("url")
        if url is None:
            raise BotAPIError(400, 'Bad Request: parameter "url" is required')
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_TOKEN_RE.match(str(secret)):
            raise BotAPIError(400, "Bad Request: secret token contains unallowed characters")
        if url and not str(url).startswith("https://"):
            raise BotAPIError(
                400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
            )
        self.webhook = dict(params)
        if params.get("drop_pending_updates"):
            self._updates.clear()
        if not url:
            was_set, self.webhook_url = bool(self.webhook_url), ""
            return _Result(True, "Webhook was deleted" if was_set else "Webhook is already deleted")
        self.webhook_url = str(url)
        return _Result(True, "Webhook was set")

    async def _delete_webhook(self, params: dict[str, Any]) -> Any:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        was_set, self.webhook_url = bool(self.webhook_url), ""
        return _Result(True, "Webhook was deleted" if was_set else "Webhook is already deleted")

    async def _get_webhook_info(self, params: dict[str, Any]) -> Any:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook_url and self.webhook:
            info["max_connections"] = self.webhook.get("max_connections", 40)
            info["ip_address"] = self.webhook.get("ip_address", "127.0.0.1")
            if self.webhook.get("allowed_updates"):
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    async def _set_my_commands(self, params: dict[str, Any]) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list) or not all(
            isinstance(c, dict) and c.get("command") and c.get("description") for c in commands
        ):
            raise BotAPIError(400, "Bad Request: can't parse commands JSON object")
        self.commands = copy.deepcopy(commands)
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> Any:
        return copy.deepcopy(self.commands)

    async def _delete_my_commands(self, params: dict[str, Any]) -> Any:
        self.commands = []
        return True

    async def _send_chat_action(self, params: dict[str, Any]) -> Any:
        if params.get("chat_id") in (None, ""):
            raise BotAPIError(400, "Bad Request: chat_id is empty")
        self.chat_actions.append(dict(params))
        return True

    async def _get_file(self, params: dict[str, Any]) -> Any:
        entry = self.files.get(str(params.get("file_id")))
        if entry is None:
            raise BotAPIError(400, "Bad Request: invalid file_id")
        return {k: entry[k] for k in ("file_id", "file_unique_id", "file_size", "file_path")}


# ---------------------------------------------------------------------- module helpers


def _bot_id_from_token(token: str) -> int:
    prefix = token.split(":", 1)[0]
    return int(prefix) if prefix.isdigit() else BOT_ID


def _set_markup(message: dict[str, Any], markup: Any) -> None:
    if isinstance(markup, dict) and "inline_keyboard" in markup:
        message["reply_markup"] = markup
    else:
        message.pop("reply_markup", None)


def _error(exc: BotAPIError) -> web.Response:
    return web.json_response(exc.body(), status=exc.error_code)


def _failure_error(failure: _Failure) -> BotAPIError:
    kw = failure.kwargs
    if failure.kind == "429":
        retry_after = int(kw.get("retry_after", 1))
        return BotAPIError(
            429,
            kw.get("description", f"Too Many Requests: retry after {retry_after}"),
            {"retry_after": retry_after},
        )
    defaults = {
        "500": (500, "Internal Server Error"),
        "403": (403, "Forbidden: bot was blocked by the user"),
        "400": (400, "Bad Request: chat not found"),
    }
    code, description = defaults[failure.kind]
    return BotAPIError(code, kw.get("description", description))


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Merge query string and body (JSON, urlencoded or multipart) into typed params."""
    params: dict[str, Any] = {
        key: _decode_form_value(key, value) for key, value in request.query.items()
    }
    if not request.can_read_body:
        return params
    if request.content_type == "application/json":
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise ValueError("can't parse JSON body") from exc
            if not isinstance(body, dict):
                raise ValueError("JSON body must be an object")
            for key, value in body.items():
                params[key] = _normalize(key, value)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                params[key] = {
                    "filename": value.filename,
                    "content_type": value.content_type,
                    "content": value.file.read(),
                }
            else:
                params[key] = _decode_form_value(key, str(value))
    return params


def _decode_form_value(key: str, value: str) -> Any:
    if key not in _STRING_PARAMS:
        try:
            return _normalize(key, json.loads(value))
        except ValueError:
            pass
    return _normalize(key, value)


def _normalize(key: str, value: Any) -> Any:
    if key in _INT_PARAMS and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return value
