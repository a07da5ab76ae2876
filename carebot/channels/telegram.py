"""The Telegram channel on python-telegram-bot: updates in (polling or webhook), messages out.

A PTB `Application` (without PTB's Updater) runs inside carebot's event loop. Each update
becomes one domain decision:

* a private-chat text, command or button press is routed like any other channel's message
  (`InboundMessage`, replies go through the outbox); stickers, photos, voice and other media
  are routed with empty text, so the router answers "I can only read text" and records an
  `unsupported` touchpoint;
* an edited private message is noted (`message_edited` touchpoint on the conversation, shown to
  its agent) but not answered again: the bot already answered the original;
* a group message addressed to the bot (a command, an @mention, a reply to the bot) gets one
  pointer to the private chat and an `ignored` touchpoint; other group chatter, channel posts,
  service messages and other update kinds are ignored (logged at debug level only).

Ids that make a redelivered update change nothing: `"{chat_id}:{message_id}"` for messages
(Telegram numbers messages per chat), `"cb:{callback_query_id}"` for button presses and
`"{chat_id}:{message_id}:edit:{edit_date}"` for edits (an edit keeps the message's id).

Polling confirms an update to Telegram (the next getUpdates offset) only after it has been
processed, and webhook requests (taken by web/telegram_webhook.py) answer 200 only after the
commit, so a failure or a crash makes Telegram deliver the update again instead of losing it.
PTB's own Updater confirms updates as soon as it fetched them, which is why it is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    Update,
)
from telegram.constants import ChatType
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import Application, ApplicationBuilder

from carebot.channels.errors import ChannelInputError, require_secret
from carebot.delivery.outbox import (
    OutboxItem,
    PermanentDeliveryError,
    Sender,
    TransientDeliveryError,
)
from carebot.domain.clock import Clock
from carebot.domain.events import Effects
from carebot.domain.language import language_tag
from carebot.domain.messages import Button, InboundMessage, OutboundMessage, RouteResult
from carebot.domain.redaction import CARDS_ONLY, Redactor
from carebot.domain.text import scrub
from carebot.routing import replies
from carebot.routing.unrouted import UnroutedMessage, note_unrouted
from carebot.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "telegram"
WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Everything else (inline queries, chat member changes, …) is never sent to us.
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
MAX_CALLBACK_DATA = 64  # bytes, Telegram's limit
# Long-polling: how long one getUpdates call waits for updates.
POLL_TIMEOUT = 25
# An update that fails this often is logged and skipped, so one bad update cannot stall the chat.
MAX_UPDATE_FAILURES = 5

AnyApplication = Application[Any, Any, Any, Any, Any, Any]
Route = Callable[[InboundMessage], Awaitable[tuple[RouteResult, Effects]]]
Publish = Callable[[Effects], Awaitable[None]]


# --- what an update means -----------------------------------------------------------------------


@dataclass(frozen=True)
class Routed:
    """Route this message; answer the button press `callback_query_id` afterwards."""

    message: InboundMessage
    callback_query_id: str | None = None


@dataclass(frozen=True)
class Noted:
    """Record this without routing it."""

    note: UnroutedMessage


@dataclass(frozen=True)
class Ignored:
    """Nothing to do (the reason is logged at debug level)."""

    reason: str


Decision = Routed | Noted | Ignored


def classify(update: Update, bot_username: str, redact: Redactor = CARDS_ONLY) -> Decision:
    """Turn one Telegram update into what carebot does with it (see the module docstring).

    Texts and names are masked by `redact` (card numbers at least) here, before anything
    stores, shows, matches or logs them."""
    if update.callback_query is not None:
        return _press(update.callback_query, redact)
    if update.message is not None:
        return _message(update.message, bot_username, redact)
    if update.edited_message is not None:
        return _edit(update.edited_message, redact)
    if update.channel_post is not None or update.edited_channel_post is not None:
        return Ignored("channel post")
    return Ignored("update kind carebot does not handle")


def _press(query: CallbackQuery, redact: Redactor) -> Decision:
    chat = query.message.chat if query.message is not None else None
    if chat is not None and chat.type != ChatType.PRIVATE:
        return Ignored("button press outside a private chat")
    if not query.data:
        return Ignored("button press without data")
    chat_id = chat.id if chat is not None else query.from_user.id
    return Routed(
        InboundMessage(
            channel=CHANNEL,
            user_id=str(chat_id),
            message_id=f"cb:{query.id}",
            payload=scrub(query.data),
            display_name=redact(scrub(query.from_user.full_name)).text,
            language=language_tag(query.from_user.language_code),
        ),
        callback_query_id=query.id,
    )


def _message(message: Message, bot_username: str, redact: Redactor) -> Decision:
    chat = message.chat
    if chat.type == ChatType.PRIVATE:
        if message.text is not None:
            text = message.text
        elif message.effective_attachment is not None:
            text = ""  # media: the router answers that it can only read text
        else:
            return Ignored("service message")
        # What Telegram delivers is kept, never refused: PostgreSQL cannot store NUL or lone
        # surrogates, so they become U+FFFD.
        masked = redact(scrub(text))
        name = redact(scrub(message.from_user.full_name) if message.from_user else "")
        return Routed(InboundMessage(
            channel=CHANNEL,
            user_id=str(chat.id),
            message_id=f"{chat.id}:{message.message_id}",
            text=masked.text,
            display_name=name.text,
            sent_at=message.date,
            redacted=masked.kinds | name.kinds,
            # The user's app language: a hint, weaker than the language they write in.
            language=language_tag(message.from_user.language_code) if message.from_user
            else None,
        ))
    if chat.type in (ChatType.GROUP, ChatType.SUPERGROUP) and _addressed_to_bot(
        message, bot_username
    ):
        sender = message.from_user
        return Noted(UnroutedMessage(
            channel=CHANNEL,
            external_id=f"{chat.id}:{message.message_id}",
            kind="ignored",
            user_id=str(sender.id) if sender is not None else None,
            details={"reason": "group_chat", "chat_type": str(chat.type), "replied": True},
            reply=replies.private_only(f"https://t.me/{bot_username}"),
            reply_to=str(chat.id),
            language=language_tag(sender.language_code) if sender is not None else None,
        ))
    return Ignored(f"message in a {chat.type} chat not addressed to the bot")


def _addressed_to_bot(message: Message, bot_username: str) -> bool:
    """A command (for us), an @mention of us or a reply to us: privacy mode lets only these
    through, but with privacy mode off the bot sees all group chatter and must stay quiet."""
    me = bot_username.casefold()
    entities = message.parse_entities([MessageEntity.BOT_COMMAND, MessageEntity.MENTION])
    for entity, text in entities.items():
        text = text.casefold()
        if entity.type == MessageEntity.MENTION and text == f"@{me}":
            return True
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            _, _, target = text.partition("@")
            if not target or target == me:
                return True
    replied = message.reply_to_message
    return bool(
        replied is not None and replied.from_user is not None
        and (replied.from_user.username or "").casefold() == me
    )


def _edit(message: Message, redact: Redactor) -> Decision:
    chat = message.chat
    if chat.type != ChatType.PRIVATE:
        return Ignored(f"edited message in a {chat.type} chat")
    edited = message.edit_date or message.date
    return Noted(UnroutedMessage(
        channel=CHANNEL,
        external_id=f"{chat.id}:{message.message_id}:edit:{int(edited.timestamp())}",
        kind="message_edited",
        user_id=str(chat.id),
        in_conversation=True,
        details={"message_id": f"{chat.id}:{message.message_id}",
                 "text": redact(scrub(message.text or message.caption or "")).text},
    ))


# --- messages out -------------------------------------------------------------------------------


class TelegramSender:
    """The outbox sender for Telegram: one sendMessage per row, buttons as an inline keyboard."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send(self, item: OutboxItem) -> str | None:
        """Send the row; map Telegram's errors to transient (retry) or permanent (give up)."""
        try:
            sent = await self.bot.send_message(
                chat_id=_chat_id(item.recipient), text=item.text,
                reply_markup=keyboard(item.buttons),
            )
        except RetryAfter as exc:
            raise TransientDeliveryError(
                f"Telegram rate limit: {exc.message}", retry_after=retry_after_seconds(exc)
            ) from None
        except Forbidden as exc:  # e.g. the user blocked the bot
            raise PermanentDeliveryError(f"Telegram refused: {exc.message}") from None
        except ChatMigrated as exc:
            raise PermanentDeliveryError(
                f"the group became supergroup {exc.new_chat_id}"
            ) from None
        except BadRequest as exc:  # e.g. chat not found; sending it again cannot help
            raise PermanentDeliveryError(f"Telegram rejected the message: {exc.message}") from None
        except TimedOut:
            raise TransientDeliveryError(
                "Telegram did not answer in time (the message may have arrived)"
            ) from None
        except InvalidToken:
            # A configuration problem, not the message's: keep it until the token is fixed.
            raise TransientDeliveryError(
                "Telegram rejected the bot token (check CAREBOT_TELEGRAM_TOKEN)"
            ) from None
        except NetworkError as exc:  # connection problems and Telegram's 5xx
            raise TransientDeliveryError(f"Telegram unreachable: {exc.message}") from None
        except TelegramError as exc:
            raise TransientDeliveryError(f"Telegram error: {exc.message}") from None
        return str(sent.message_id)


def keyboard(buttons: Sequence[Button]) -> InlineKeyboardMarkup | None:
    """Reply buttons as an inline keyboard whose presses come back as `callback_data`.

    Short labels ("Yes", survey scores) share one row; longer ones (FAQ questions) get a row
    each. A payload over Telegram's 64-byte limit would make it reject the whole message, so
    such a button is left out (and logged).
    """
    usable = []
    for b in buttons:
        if len(b.payload.encode()) > MAX_CALLBACK_DATA:
            log.warning("button %r left out: its payload is over Telegram's %d-byte limit",
                        b.title, MAX_CALLBACK_DATA)
        else:
            usable.append(b)
    if not usable:
        return None
    one_row = len(usable) <= 8 and sum(len(b.title) for b in usable) <= 32
    rows = [usable] if one_row else [[b] for b in usable]
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(b.title, callback_data=b.payload) for b in row] for row in rows]
    )


def retry_after_seconds(exc: RetryAfter) -> float:
    """Telegram's retry_after in seconds (PTB 22 returns an int or a timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PTB deprecates the int form
        value: int | float | timedelta = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _chat_id(recipient: str) -> int | str:
    try:
        return int(recipient)
    except ValueError:
        return recipient  # "@channelname"


# --- the running channel ------------------------------------------------------------------------


def build_application(settings: Settings) -> AnyApplication:
    """The PTB Application for this configuration: no Updater (see the module docstring)."""
    timeout = settings.telegram_timeout_seconds
    builder = ApplicationBuilder().token(settings.telegram_token).updater(None)
    if settings.telegram_base_url:
        builder = builder.base_url(settings.telegram_base_url)
    return (
        builder.connect_timeout(timeout).read_timeout(timeout).write_timeout(timeout)
        .pool_timeout(timeout)
        .get_updates_connect_timeout(timeout).get_updates_read_timeout(timeout)
        .get_updates_write_timeout(timeout).get_updates_pool_timeout(timeout)
        .build()
    )


def quiet_http_logs() -> None:
    """httpx logs every request URL at INFO: keep it at WARNING unless set explicitly (the
    token in Telegram's URLs is masked in every record anyway: `carebot.web.logs`)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


Localize = Callable[[OutboundMessage, str | None], OutboundMessage]


def _as_written(message: OutboundMessage, _language: str | None) -> OutboundMessage:
    return message


class TelegramChannel:
    """Connects the bot, feeds updates to the domain, and lends the outbox its sender.

    `route` is None in a process that only sends (it neither polls nor takes the webhook).
    """

    def __init__(
        self,
        application: AnyApplication,
        *,
        route: Route | None,
        publish: Publish,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        senders: MutableMapping[str, Sender],
        poll: bool,
        redact: Redactor = CARDS_ONLY,
        localize: Localize = _as_written,
    ) -> None:
        self.application = application
        self.redact = redact
        # Says a reply that does not pass the inbound writer (the group-chat pointer) in the
        # sender's language.
        self.localize = localize
        self.route = route
        self.publish = publish
        self.sessions = sessions
        self.clock = clock
        self.senders = senders
        self.poll = poll
        self.ready = asyncio.Event()
        self._failures: dict[int, int] = {}
        self._offset = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def bot(self) -> Bot:
        """The connected bot."""
        bot: Bot = self.application.bot
        return bot

    async def start(self) -> None:
        """Connect now if Telegram answers, else keep trying in the background."""
        quiet_http_logs()
        self._stop.clear()
        if not await self._connect_once(first=True):
            self._task = asyncio.create_task(self._connect_and_run(), name="telegram")
            return
        self._task = asyncio.create_task(self._run(), name="telegram")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop polling after the update in hand (waiting `grace` seconds at most), confirm
        what was processed, disconnect."""
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.senders.pop(CHANNEL, None)
        if self.ready.is_set() and self.poll and self._offset:
            # Tell Telegram what was processed, so a restart does not fetch it again.
            with contextlib.suppress(TelegramError):
                await self.bot.get_updates(offset=self._offset, timeout=0, limit=1)
        self.ready.clear()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()
        await self.bot.shutdown()  # its HTTP clients, also when connecting never succeeded

    async def _connect_once(self, *, first: bool) -> bool:
        try:
            await self.application.initialize()  # getMe: checks the token
        except InvalidToken:
            # PTB's message repeats the token: never log it.
            log.error("Telegram rejected the bot token (CAREBOT_TELEGRAM_TOKEN): the Telegram "
                      "channel is off until it is fixed")
            self._stop.set()
            return True
        except TelegramError as exc:
            if first:
                log.warning("cannot reach the Telegram Bot API (%s); retrying in the background",
                            exc.message)
            return False
        await self.application.start()
        self.senders[CHANNEL] = TelegramSender(self.bot)
        self.ready.set()
        log.info("Telegram channel on: @%s, %s", self.bot.username,
                 "polling for updates" if self.poll else "updates by webhook or another process")
        return True

    async def _connect_and_run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            if await self._connect_once(first=False):
                await self._run()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, 60.0)

    async def _run(self) -> None:
        if self.ready.is_set() and self.poll:
            await self._poll()

    async def _poll(self) -> None:
        delay = 1.0
        conflict_logged = False
        while not self._stop.is_set():
            fetch = asyncio.ensure_future(self.bot.get_updates(
                offset=self._offset, timeout=POLL_TIMEOUT, allowed_updates=ALLOWED_UPDATES,
            ))
            stopping = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not fetch.done():
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)
                return
            try:
                updates = fetch.result()
            except Conflict as exc:
                if not conflict_logged:
                    log.error(
                        "Telegram refuses polling (%s): a webhook is set for this bot or "
                        "another process polls it. Use one poller, or webhook mode "
                        "(`carebot telegram delete-webhook` removes a webhook)", exc.message)
                    conflict_logged = True
                await self._pause(delay)
                delay = min(delay * 2, 60.0)
                continue
            except TelegramError as exc:
                log.warning("getUpdates failed (%s); retrying in %.0fs", exc.message, delay)
                await self._pause(delay)
                delay = min(delay * 2, 60.0)
                continue
            delay, conflict_logged = 1.0, False
            for update in updates:
                try:
                    await self.handle(update)
                except Exception:
                    # Not confirmed: the next getUpdates returns it (and what follows) again.
                    log.warning("update %d failed; fetching it again", update.update_id,
                                exc_info=True)
                    await self._pause(1.0)
                    break
                self._offset = update.update_id + 1

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def handle(self, update: Update) -> None:
        """Process one update; raise if it should be delivered again (until it failed
        MAX_UPDATE_FAILURES times: then it is logged and dropped)."""
        try:
            await self.process(update)
        except Exception:
            failures = self._failures.get(update.update_id, 0) + 1
            if failures < MAX_UPDATE_FAILURES:
                self._failures[update.update_id] = failures
                raise
            self._failures.pop(update.update_id, None)
            log.exception("dropping Telegram update %d after %d failed attempts",
                          update.update_id, failures)
            return
        self._failures.pop(update.update_id, None)

    async def process(self, update: Update) -> Decision:
        """Route, note or ignore one update (committed before this returns)."""
        decision = classify(update, self.bot.username, self.redact)
        if isinstance(decision, Routed):
            if self.route is None:
                raise RuntimeError("this process does not route Telegram updates")
            _result, effects = await self.route(decision.message)
            await self.publish(effects)
            if decision.callback_query_id is not None:
                await self._answer(decision.callback_query_id)
        elif isinstance(decision, Noted):
            note = decision.note
            if note.reply is not None:
                note = dataclasses.replace(note, reply=self.localize(note.reply, note.language))
            _created, effects = await note_unrouted(self.sessions, note, self.clock)
            await self.publish(effects)
        else:
            log.debug("Telegram update %d ignored: %s", update.update_id, decision.reason)
        return decision

    def check_webhook_request(self, given_secret: str, secret: str) -> None:
        """Refuse a webhook request with a ChannelInputError: 403 for a wrong secret token,
        503 while the bot is still connecting (Telegram sends the update again)."""
        require_secret(SECRET_HEADER, given_secret, secret)
        if not self.ready.is_set():
            raise ChannelInputError(503, "the Telegram channel is still connecting")

    def parse_update(self, body: dict[str, Any]) -> Update:
        """A webhook request's JSON body as an Update, or a 400 ChannelInputError."""
        try:
            update = Update.de_json(body, self.bot)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ChannelInputError(400, f"not a Telegram update: {exc!r}") from None
        # de_json takes what Telegram always sends as optional: refuse what routing needs.
        for message in (update.message, update.edited_message, update.channel_post,
                        update.edited_channel_post):
            if message is not None and (message.chat is None or message.chat.id is None):
                raise ChannelInputError(400, "not a Telegram update: a message without a chat")
            if message is not None and not isinstance(message.text, str | None):
                raise ChannelInputError(400, "not a Telegram update: text that is not text")
        if update.callback_query is not None and update.callback_query.from_user is None:
            raise ChannelInputError(400, "not a Telegram update: a button press without a "
                                         "sender")
        return update

    async def _answer(self, callback_query_id: str) -> None:
        # Stops the button's spinner. Best effort: the reply itself goes through the outbox,
        # and a redelivered press is answered again (Telegram may call that one too old).
        try:
            await self.bot.answer_callback_query(callback_query_id)
        except TelegramError as exc:
            log.info("could not answer button press %s: %s", callback_query_id, exc.message)


# --- administration (CLI) -----------------------------------------------------------------------


class TelegramSetupError(Exception):
    """A Telegram administration step failed; the message says what to do."""


@contextlib.asynccontextmanager
async def _admin_bot(settings: Settings) -> AsyncIterator[Bot]:
    """A connected bot for one admin command; Telegram's refusals become readable errors."""
    if not settings.telegram_token:
        raise TelegramSetupError("CAREBOT_TELEGRAM_TOKEN is not set (get a token from @BotFather)")
    quiet_http_logs()
    bot: Bot = build_application(settings).bot
    try:
        async with bot:
            yield bot
    except InvalidToken:
        raise TelegramSetupError("Telegram rejected CAREBOT_TELEGRAM_TOKEN") from None
    except TelegramError as exc:
        raise TelegramSetupError(f"Telegram said: {exc.message}") from None


async def set_webhook(settings: Settings, url: str, *, drop_pending: bool = False) -> str:
    """Register `url` as the bot's webhook with the configured secret token; a summary line."""
    if not settings.telegram_webhook_secret:
        raise TelegramSetupError(
            "set CAREBOT_TELEGRAM_WEBHOOK_SECRET first (the service checks it on every update), "
            "e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if not url.startswith("https://"):
        raise TelegramSetupError(f"Telegram needs an https:// URL, got {url!r}")
    async with _admin_bot(settings) as bot:
        await bot.set_webhook(
            url, secret_token=settings.telegram_webhook_secret,
            allowed_updates=ALLOWED_UPDATES, drop_pending_updates=drop_pending,
        )
        info = await bot.get_webhook_info()
        name = bot.username
    note = "" if url.rstrip("/").endswith(WEBHOOK_PATH) else (
        f" (carebot serves the webhook at {WEBHOOK_PATH}: is the URL right?)"
    )
    return f"@{name}: webhook set to {info.url}{note}"


async def delete_webhook(settings: Settings) -> str:
    """Remove the bot's webhook (polling needs that); a summary line."""
    async with _admin_bot(settings) as bot:
        await bot.delete_webhook()
        name = bot.username
    return f"@{name}: webhook removed; updates can be polled"


async def webhook_info(settings: Settings) -> str:
    """The bot's name and webhook state, for `carebot telegram info`."""
    async with _admin_bot(settings) as bot:
        info = await bot.get_webhook_info()
        name = bot.username
    lines = [f"bot: @{name}", f"webhook: {info.url or '(none: polling)'}",
             f"pending updates: {info.pending_update_count}"]
    if info.last_error_message:
        lines.append(f"last webhook error: {info.last_error_message}")
    return "\n".join(lines)
