"""The web chat's routes: the widget script, a site's settings, and the visitor's WebSocket.

The widget runs on the site's pages, so everything it asks carebot is cross-origin: the
settings request gets CORS headers for the site's own origins only, and the socket checks
the `Origin` header before it upgrades (browsers always send it; a WebSocket is not subject
to CORS, so this check is the one that counts). Both are checked again against the site's
current settings (cached for a few seconds): a socket whose origin an admin removed is
closed at its next frame.

A visitor's socket speaks JSON frames (docs/web-chat.md has them all):

- the widget opens with `hello` (its stored visitor token, or the site's signed user id, and
  the last message id it has), gets `ready`, then `history` or the `messages` it missed;
- it sends `message` (text or a button's payload, with its own `cid` so a resend after a lost
  connection is stored once), `typing`, `read` and `older`; it gets `ack`, `messages`,
  `typing`, `read`, `presence` and `error` (with a code and a message to show).

Delivery: a widget shows the messages table (`carebot.channels.web_store`). Whenever the
visitor may have something new (their own message committed, the outbox worker's "visitor
X has mail", a fan-out that reconnected) each of their sockets in this process catches up:
the messages after the last id it sent, in id order, and marks their outbox rows `sent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from carebot.channels import web as web_channel
from carebot.channels import web_store as store
from carebot.channels.errors import ChannelInputError
from carebot.channels.web_delivery import WebSender
from carebot.channels.web_labels import widget_labels
from carebot.db.availability import is_unavailable
from carebot.db.engine import QuickReads
from carebot.domain.events import Event
from carebot.domain.messages import Phrase
from carebot.domain.text import text_problem
from carebot.domain.texts import N_
from carebot.routing.batch import DuplicateIdConflict
from carebot.web.errors import ApiError
from carebot.web.events import SOCKETS
from carebot.web.heap import release_socket
from carebot.web.keys import (
    CLOCK,
    ENGINE,
    EVENT_HUB,
    INBOUND,
    OUTBOX_SENDERS,
    POLICY,
    SESSIONS,
    SETTINGS,
    WRITES,
)
from carebot.web.publish import publish_effects
from carebot.web.web_chat_limits import SlidingWindow

# What the widget shows a visitor when something goes wrong, in the page's language.
IDENTITY_REFUSED = N_("We could not verify who you are. Reload the page, or log in again.")
TOO_MANY_WINDOWS = N_("This chat is open in too many windows. Close one and try again.")
TOO_LONG = N_("Your message is too long: at most {max} characters.")
WENT_WRONG = N_("Something went wrong; we're on it.")
NOT_TAKEN = N_("We couldn't take your message just now; retrying…")
SLOW_DOWN_ONE = N_(
    "You're sending messages faster than we can read them. Please wait 1 second and send it "
    "again.")
SLOW_DOWN = N_(
    "You're sending messages faster than we can read them. Please wait {seconds} seconds and "
    "send it again.")
log = logging.getLogger(__name__)

WIDGET = Path(__file__).parent / "static" / "widget.js"
SOCKET_PATH = "/api/v1/channels/web/socket"
SITE_PATH = "/api/v1/channels/web/sites/{key}"
_SITE_KEY = re.compile(r"[A-Za-z0-9_-]{1,32}")
SITE_CACHE_SECONDS = 5.0
HELLO_TIMEOUT_SECONDS = 10.0
# A frame is JSON of one message at most (2,000 characters can be 8 KB of UTF-8, escaped).
MAX_FRAME_BYTES = 32 * 1024
FEED_PAGE = 200
RECENT_IDS = 2000
TYPING_EVERY_SECONDS = 2.0
# Any frame at all, per socket: beyond this the socket is closed (a client gone wrong).
FRAMES_PER_MINUTE = 300
PRESENCE_SECONDS = 2.0
# Marks (visitor seen, rows delivered, read) gathered this long are written in one go.
FLUSH_SECONDS = 0.02
# Wake-ups for other processes gathered this long go out as one NOTIFY statement.
PUBLISH_SECONDS = 0.003
# Close codes the widget understands (4000-4999 are the application's).
CLOSE_REFUSED = 4003  # identity or origin refused: the widget does not reconnect
CLOSE_TOO_MANY = 4008  # too many windows of one visitor
CLOSE_FLOOD = 4029  # too many frames


class SiteCache:
    """Sites by key, each read at most every few seconds per process (every request and
    socket checks its site; an admin's change reaches other processes within that time)."""

    def __init__(self, app: web.Application, seconds: float = SITE_CACHE_SECONDS) -> None:
        self._app = app
        self._seconds = seconds
        self._entries: dict[str, tuple[float, store.SiteView | None]] = {}

    async def get(self, key: str) -> store.SiteView | None:
        """The enabled site with this key, or None."""
        if not _SITE_KEY.fullmatch(key):
            return None
        hit = self._entries.get(key)
        now = time.monotonic()
        if hit is None or now - hit[0] > self._seconds:
            async with self._app[SESSIONS]() as session:
                view = await store.site_by_key(session, key)
            if len(self._entries) > 10_000:
                self._entries.clear()
            hit = self._entries[key] = (now, view)
        view = hit[1]
        return view if view is not None and view.enabled else None

    def forget(self) -> None:
        """Read every site again (this process changed one)."""
        self._entries.clear()


@dataclass(eq=False)
class VisitorSocket:
    """One open widget: who, which site, and how far its feed has gone."""

    ws: web.WebSocketResponse
    site: store.SiteView
    origin: str
    key: str
    ip: str
    name: str = ""
    user_id: str | None = None
    # The page's language from `hello` (a hint to the language rule).
    language: str | None = None
    contact_id: int | None = None
    noted: bool = False
    last_id: int = 0
    recent: deque[int] = field(default_factory=deque)
    recent_set: set[int] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake_queued: bool = False
    typing_at: float = 0.0
    read_up_to: int = 0
    # The browser's anonymous chat, to be joined to this signed-in visitor once both exist.
    anonymous_key: str | None = None
    frames: SlidingWindow = field(default_factory=lambda: SlidingWindow(FRAMES_PER_MINUTE))

    def remember(self, message_id: int) -> None:
        """A message this socket pushed (bounded memory)."""
        if message_id in self.recent_set:
            return
        self.recent.append(message_id)
        self.recent_set.add(message_id)
        while len(self.recent) > RECENT_IDS:
            self.recent_set.discard(self.recent.popleft())


class Visitors:
    """The visitor sockets open in this process: limits, live events, catch-ups."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.by_key: dict[str, set[VisitorSocket]] = {}
        self.per_ip: Counter[str] = Counter()
        settings = app[SETTINGS]
        self.visitor_messages = SlidingWindow(settings.web_messages_per_minute)
        self.ip_messages = SlidingWindow(settings.web_ip_messages_per_minute)
        self._online: tuple[float, bool] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Reads on the hot path (`QuickReads`: on SQLite, off the shared connection).
        self.reads = QuickReads(app[ENGINE])
        # Small writes, gathered and committed together every few milliseconds: who visited
        # (`note`), which outbox rows a widget showed (`delivered`), read marks (`read`).
        self._notes: dict[int, tuple[int, str | None]] = {}
        self._delivered: dict[str, set[int]] = {}
        self._reads: dict[int, int] = {}
        self._flush = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        # Wake-ups for other processes, gathered (see `notify`).
        self._outgoing: dict[str, dict[str, Any]] = {}
        self._sent: list[asyncio.Future[None]] = []
        self._publish = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None

    # --- who is here --------------------------------------------------------------------

    def add(self, s: VisitorSocket) -> bool:
        """Register a socket; False when the visitor already has as many as allowed."""
        mine = self.by_key.setdefault(s.key, set())
        if len(mine) >= self.app[SETTINGS].web_sockets_per_visitor:
            return False
        mine.add(s)
        return True

    def remove(self, s: VisitorSocket) -> None:
        """Forget a closed socket."""
        mine = self.by_key.get(s.key)
        if mine is not None:
            mine.discard(s)
            if not mine:
                del self.by_key[s.key]

    def count(self) -> int:
        """Open visitor sockets in this process."""
        return sum(len(v) for v in self.by_key.values())

    # --- live events --------------------------------------------------------------------

    def tap(self, event: Event) -> None:
        """The event hub's tap: what concerns visitors connected here."""
        if event.kind == "availability":
            self._spawn(self._presence_changed())
            return
        if not event.kind.startswith("visitor."):
            return
        key = event.data.get("key")
        sockets = self.by_key.get(key, ()) if isinstance(key, str) else ()
        if event.kind == "visitor.feed":
            for s in list(sockets):
                if self._needs(s, event.data):
                    self.wake(s)
        elif event.kind == "visitor.typing":
            frame: dict[str, Any] = {"type": "typing",
                                     "name": str(event.data.get("name", ""))}
            for s in list(sockets):
                self._spawn(_send(s, frame))
        elif event.kind == "visitor.read":
            frame = {"type": "read", "up_to": event.data.get("up_to")}
            for s in list(sockets):
                self._spawn(_send(s, frame))

    @staticmethod
    def _needs(s: VisitorSocket, data: dict[str, Any]) -> bool:
        # An outbox row's wake-up always counts: even if this socket already showed the
        # message, its row is marked delivered by the catch-up (else it would wait, and hold
        # back the visitor's later rows). A visitor's own message elsewhere is news only to
        # sockets that have not got that far.
        if isinstance(data.get("message_id"), int):
            return True
        up_to = data.get("up_to")
        return not (isinstance(up_to, int) and s.last_id >= up_to)

    def wake(self, s: VisitorSocket) -> None:
        """Have the socket catch up soon (once, however many wake-ups arrive meanwhile)."""
        if s.wake_queued or s.ws.closed:
            return
        s.wake_queued = True
        self._spawn(self._woken(s))

    def wake_all(self) -> None:
        """Every socket catches up (the fan-out was away and may have missed events)."""
        for sockets in list(self.by_key.values()):
            for s in list(sockets):
                self.wake(s)

    async def _woken(self, s: VisitorSocket) -> None:
        async with s.lock:
            s.wake_queued = False
            await self.catch_up(s)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not is_unavailable(error) and not isinstance(
            error, ConnectionError
        ):
            log.error("web chat task failed", exc_info=error)

    def start(self) -> None:
        """Start the writer of gathered marks."""
        self._flusher = asyncio.create_task(self._flush_loop(), name="web-chat-marks")
        self._publisher = asyncio.create_task(self._publish_loop(), name="web-chat-wakes")

    async def stop(self) -> None:
        """Wait for catch-ups in flight and write what is gathered (the app is stopping)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in (self._flusher, self._publisher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(Exception):
            await self._write_marks()

    # --- gathered writes ----------------------------------------------------------------

    def note(self, s: VisitorSocket) -> None:
        """Record the visitor (site, verified user) and that they were seen now."""
        if s.contact_id is not None and not s.noted:
            s.noted = True
            self._notes[s.contact_id] = (s.site.id, s.user_id)
            self._flush.set()

    def delivered(self, key: str, message_ids: list[int]) -> None:
        """A widget showed these messages: their outbox rows become `sent`."""
        self._delivered.setdefault(key, set()).update(message_ids)
        self._flush.set()

    def read(self, contact_id: int, up_to: int) -> None:
        """The visitor has seen everything up to this message."""
        self._reads[contact_id] = max(up_to, self._reads.get(contact_id, 0))
        self._flush.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._flush.wait()
            await asyncio.sleep(FLUSH_SECONDS)  # gather what arrives meanwhile
            self._flush.clear()
            try:
                await self._write_marks()
            except Exception as exc:
                if not is_unavailable(exc):
                    log.exception("web chat: writing visitor marks failed; retrying")
                await asyncio.sleep(1.0)
                self._flush.set()

    async def _write_marks(self) -> None:
        notes, self._notes = self._notes, {}
        delivered, self._delivered = self._delivered, {}
        reads, self._reads = self._reads, {}
        if not (notes or delivered or reads):
            return
        events: list[Event] = []
        now = self.app[CLOCK]()
        try:
            async with self.app[WRITES].begin() as session:
                for contact_id, (site_id, user_id) in notes.items():
                    await store.note_visitor(session, contact_id, site_id, user_id, now)
                for key, ids in delivered.items():
                    await store.mark_delivered(session, key, sorted(ids), now)
                for contact_id, up_to in reads.items():
                    if not await store.mark_read(session, contact_id, up_to, by_agent=False):
                        continue
                    latest = await session.run_sync(_latest, contact_id)
                    if latest is not None:
                        conv_id, _, agent_id = latest
                        events.append(Event(
                            "customer_read", conv_id,
                            agent_ids=(agent_id,) if agent_id else (), data={"up_to": up_to}))
        except BaseException:
            # Kept for the next try (newer marks win).
            for contact_id, note in notes.items():
                self._notes.setdefault(contact_id, note)
            for key, ids in delivered.items():
                self._delivered.setdefault(key, set()).update(ids)
            for contact_id, up_to in reads.items():
                self._reads[contact_id] = max(up_to, self._reads.get(contact_id, 0))
            raise
        if events:
            await self.app[EVENT_HUB].publish(events)

    # --- delivery -----------------------------------------------------------------------

    async def catch_up(self, s: VisitorSocket, *, outbox: bool = True) -> None:
        """Push what the socket has not sent yet, in id order, and mark it delivered.
        Call with `s.lock` held.

        `outbox=False` (right after the visitor's own message, whose replies were stored as
        delivered) skips the outbox: rows that wait are marked, and any row committed out of
        id order is sent, when the outbox worker's wake-up for them comes."""
        while not s.ws.closed:
            if s.contact_id is None:
                s.contact_id = await self.reads.run(lambda c: store.contact_of(c, s.key))
                if s.contact_id is None:
                    return
                self.note(s)
            waiting, items = await self.reads.run(functools.partial(
                _read_feed, key=s.key, contact_id=s.contact_id, last_id=s.last_id,
                recent=frozenset(s.recent_set) if outbox else frozenset(), outbox=outbox))
            if items:
                await s.ws.send_json({"type": "messages",
                                      "messages": [i.to_dict() for i in items]})
                for item in items:
                    s.remember(item.id)
                s.last_id = max(s.last_id, items[-1].id)
            delivered = sorted(i for i in waiting if i in s.recent_set)
            if delivered:
                self.delivered(s.key, delivered)
            if len(items) < FEED_PAGE:
                return

    async def notify(self, key: str, *, up_to: int | None = None,
                     message_id: int | None = None, besides: VisitorSocket | None = None,
                     wait: bool = True) -> None:
        """Tell the visitor's sockets (in every process) that they have something new.

        Across processes the wake-ups of a few milliseconds go out together, as one NOTIFY
        statement; `wait` returns once it went out."""
        data: dict[str, Any] = {"key": key}
        if up_to is not None:
            data["up_to"] = up_to
        if message_id is not None:
            data["message_id"] = message_id
        if not self.app[EVENT_HUB].spans_processes:
            for s in list(self.by_key.get(key, ())):
                if s is not besides and self._needs(s, data):
                    self.wake(s)
            return
        merged = self._outgoing.setdefault(key, {"key": key})
        if message_id is not None:
            merged["message_id"] = message_id  # wakes every socket of the visitor anyway
        if up_to is not None:
            merged["up_to"] = max(up_to, merged.get("up_to", 0))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sent.append(done)
        self._publish.set()
        if wait:
            await done
        else:
            done.add_done_callback(_consume)

    async def _publish_loop(self) -> None:
        while True:
            await self._publish.wait()
            await asyncio.sleep(PUBLISH_SECONDS)
            self._publish.clear()
            batch, self._outgoing = self._outgoing, {}
            waiting, self._sent = self._sent, []
            try:
                await self.app[EVENT_HUB].publish(
                    [Event("visitor.feed", None, data=d) for d in batch.values()])
            except Exception as exc:
                for done in waiting:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for done in waiting:
                if not done.done():
                    done.set_result(None)

    # --- agents online ------------------------------------------------------------------

    async def agents_online(self) -> bool:
        """Whether an agent is online (read at most every couple of seconds)."""
        now = time.monotonic()
        if self._online is None or now - self._online[0] > PRESENCE_SECONDS:
            self._online = (now, await self.reads.run(store.agents_online))
        return self._online[1]

    async def _presence_changed(self) -> None:
        before = self._online[1] if self._online is not None else None
        self._online = None
        online = await self.agents_online()
        if online != before:
            frame = {"type": "presence", "agents_online": online}
            await asyncio.gather(*(_send(s, frame) for ss in list(self.by_key.values())
                                   for s in list(ss)), return_exceptions=True)


def _consume(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()  # a lost wake-up is caught up by the next one or the next visit


def _latest(session: Session, contact_id: int) -> tuple[int, str, int | None] | None:
    return store.latest_conversation(session.connection(), contact_id)


def _read_feed(
    conn: Connection, *, key: str, contact_id: int, last_id: int, recent: frozenset[int],
    outbox: bool,
) -> tuple[set[int], list[store.FeedItem]]:
    """What a socket at `last_id` has not shown: the messages after it and, with `outbox`,
    those below it whose outbox rows still wait (committed out of id order)."""
    waiting = store.undelivered(conn, key) if outbox else set()
    items = store.after(conn, contact_id, last_id, FEED_PAGE)
    late = sorted(i for i in waiting if i <= last_id and i not in recent)
    if late:
        items = sorted([*items, *store.by_ids(conn, contact_id, late)], key=lambda i: i.id)
    return waiting, items


async def _send(s: VisitorSocket, frame: dict[str, Any]) -> None:
    if not s.ws.closed:
        with contextlib.suppress(ConnectionError):
            await s.ws.send_json(frame)


WEB_VISITORS = web.AppKey("web_visitors", Visitors)
WEB_SITES = web.AppKey("web_sites", SiteCache)


# --- resources ------------------------------------------------------------------------------


async def web_chat_ctx(app: web.Application) -> AsyncIterator[None]:
    """The web chat in this process: the sites cache, the visitors' sockets, and the outbox
    sender that wakes them (in every process that runs the outbox worker)."""
    if OUTBOX_SENDERS not in app:
        app[OUTBOX_SENDERS] = {}
    senders = app[OUTBOX_SENDERS]
    hub = app[EVENT_HUB]
    visitors = Visitors(app)
    visitors.start()
    app[WEB_VISITORS] = visitors
    app[WEB_SITES] = SiteCache(app)
    hub.taps.append(visitors.tap)
    hub.reconnected.append(visitors.wake_all)

    async def notify(key: str, message_id: int | None) -> None:
        await visitors.notify(key, message_id=message_id)

    senders[web_channel.CHANNEL] = WebSender(notify, app[CLOCK])
    yield
    senders.pop(web_channel.CHANNEL, None)
    hub.taps.remove(visitors.tap)
    hub.reconnected.remove(visitors.wake_all)
    await visitors.stop()
    visitors.reads.close()


# --- the widget and the site's settings -----------------------------------------------------


async def widget_js(_request: web.Request) -> web.StreamResponse:
    """GET /widget.js: the script a site embeds (cached briefly; revalidated by ETag)."""
    response = web.FileResponse(WIDGET)
    response.headers["Cache-Control"] = "public, max-age=300"
    response.content_type = "text/javascript"
    # The host page loads it cross-origin.
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


async def _site(request: web.Request) -> tuple[store.SiteView, str]:
    """The site a request names and its allowed Origin, or a 404/403 ApiError."""
    key = request.match_info.get("key") or request.query.get("site", "")
    site = await request.app[WEB_SITES].get(key)
    if site is None:
        raise ApiError(404, "no such chat site (check data-site in the snippet)")
    origin = request.headers.get("Origin")
    if not web_channel.origin_allowed(origin, list(site.origins)):
        where = origin or "a page that sent no Origin"
        raise ApiError(403, f"this chat may not be embedded on {where}")
    return site, str(origin)


R = TypeVar("R", bound=web.StreamResponse)


def _cors(response: R, origin: str) -> R:
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"
    return response


async def site_settings(request: web.Request) -> web.Response:
    """GET /api/v1/channels/web/sites/{key}: the widget's look and whether anyone is online,
    for the site's own origins only (CORS)."""
    site, origin = await _site(request)
    online = await request.app[WEB_VISITORS].agents_online()
    response = web.json_response({**site.public(), "agents_online": online,
                                  "max_text": request.app[SETTINGS].web_max_text_chars})
    return _cors(response, origin)


async def site_preflight(request: web.Request) -> web.Response:
    """OPTIONS on the site's settings: CORS preflight, for the site's own origins only."""
    _, origin = await _site(request)
    response = web.Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
    response.headers["Access-Control-Max-Age"] = "600"
    return _cors(response, origin)


# --- the socket -----------------------------------------------------------------------------


async def visitor_socket(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/channels/web/socket?site=KEY: the visitor's WebSocket."""
    app = request.app
    site, origin = await _site(request)
    visitors = app[WEB_VISITORS]
    ip = client_address(request)
    if visitors.per_ip[ip] >= app[SETTINGS].web_sockets_per_ip:
        raise ApiError(429, "too many chat connections from your network")
    # No permessage-deflate: browsers ask for it, and its zlib state costs ~100 KB per open
    # chat (measured: 123 KB per idle connection with it, 21 KB without) to shrink frames of
    # a few hundred bytes.
    ws = web.WebSocketResponse(heartbeat=25, max_msg_size=MAX_FRAME_BYTES, compress=False)
    await ws.prepare(request)
    app[SOCKETS].add(ws)
    visitors.per_ip[ip] += 1
    try:
        s = await _hello(app, ws, site, origin, ip)
        if s is None:
            return ws
        try:
            await _serve(app, s)
        finally:
            visitors.remove(s)
    finally:
        visitors.per_ip[ip] -= 1
        if visitors.per_ip[ip] <= 0:
            del visitors.per_ip[ip]
        if not ws.closed:
            await ws.close()
        release_socket(request)
    return ws


def client_address(request: web.Request) -> str:
    """The visitor's network address: the peer's, or, when the peer is a trusted reverse
    proxy (CAREBOT_TRUSTED_PROXIES), the last address in X-Forwarded-For that is not one."""
    peer = request.remote or ""
    trusted = {p.strip() for p in request.app[SETTINGS].trusted_proxies.split(",") if p.strip()}
    if peer not in trusted:
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed(hops):
        if hop and hop not in trusted:
            return hop[:64]
    return peer


async def _refuse(ws: web.WebSocketResponse, code: str, message: str, close: int) -> None:
    with contextlib.suppress(ConnectionError):
        await ws.send_json({"type": "error", "code": code, "message": message})
        await ws.close(code=close, message=code.encode())


async def _hello(
    app: web.Application, ws: web.WebSocketResponse, site: store.SiteView, origin: str, ip: str
) -> VisitorSocket | None:
    """Read the widget's `hello`: who the visitor is. None when the socket was refused."""
    try:
        msg = await ws.receive(timeout=HELLO_TIMEOUT_SECONDS)
    except TimeoutError:
        await _refuse(ws, "no_hello", "The chat did not introduce itself.", CLOSE_REFUSED)
        return None
    if msg.type != WSMsgType.TEXT:
        return None
    try:
        hello = json.loads(msg.data)
    except ValueError:
        hello = None
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        await _refuse(ws, "bad_request", "The chat must start with hello.", CLOSE_REFUSED)
        return None
    token: str | None = None
    anonymous_key: str | None = None
    known = False
    user = hello.get("user")
    name = ""
    if user is not None:
        # A signed-in user of the site: trusted only with the site's signature.
        user_id = user.get("id") if isinstance(user, dict) else None
        given = user.get("hash") if isinstance(user, dict) else None
        try:
            user_id = web_channel.check_user_id(user_id)
        except ChannelInputError as exc:
            await _refuse(ws, "identity_refused", exc.message, CLOSE_REFUSED)
            return None
        if not isinstance(given, str) or not web_channel.identity_verified(
            site.secret, user_id, given
        ):
            log.warning("web chat: refused a user id with a wrong signature on site %s from %s",
                        site.name, ip)
            await _refuse(ws, "identity_refused", _gettext_for(app, hello)(IDENTITY_REFUSED),
                          CLOSE_REFUSED)
            return None
        raw_name = user.get("name") if isinstance(user, dict) else None
        if isinstance(raw_name, str) and text_problem(raw_name) is None:
            name = raw_name.strip()[: web_channel.MAX_NAME]
        key = web_channel.user_key(site.id, user_id)
        anonymous_token = hello.get("visitor")
        if web_channel.valid_token(anonymous_token) and isinstance(anonymous_token, str):
            anonymous_key = web_channel.anonymous_key(site.id, anonymous_token)
    else:
        given_token = hello.get("visitor")
        known = web_channel.valid_token(given_token)
        fresh = web_channel.new_visitor_token()
        token = given_token if known and isinstance(given_token, str) else fresh
        key = web_channel.anonymous_key(site.id, token)
        user_id = None
    since = hello.get("since")
    since = since if isinstance(since, int) and not isinstance(since, bool) and (
        0 < since < 2**62) and (user is not None or known) else 0
    s = VisitorSocket(ws, site, origin, key, ip, name=name, user_id=user_id, last_id=since,
                      anonymous_key=anonymous_key,
                      language=web_channel.check_language(hello.get("language")))
    if not app[WEB_VISITORS].add(s):
        await _refuse(ws, "too_many_windows", _gettext(app, s)(TOO_MANY_WINDOWS),
                      CLOSE_TOO_MANY)
        return None
    try:
        await _ready(app, s, token, since)
    except BaseException:
        app[WEB_VISITORS].remove(s)
        raise
    return s


def _gettext(app: web.Application, s: VisitorSocket) -> Callable[[str], str]:
    """The catalog of the visitor's page language (the default language's without one): what
    the widget shows before the bot knows better, and its error messages."""
    policy = app[POLICY]
    return policy.texts.gettext(
        policy.languages.normalise(s.language) or policy.languages.default)


def _gettext_for(app: web.Application, hello: dict[str, Any]) -> Callable[[str], str]:
    """`_gettext` before the socket is set up: from the `hello` frame's language."""
    policy = app[POLICY]
    language = policy.languages.normalise(web_channel.check_language(hello.get("language")))
    return policy.texts.gettext(language or policy.languages.default)


async def _ready(app: web.Application, s: VisitorSocket, token: str | None, since: int) -> None:
    visitors = app[WEB_VISITORS]
    async with s.lock:
        read_up_to = None
        s.contact_id = await visitors.reads.run(lambda c: store.contact_of(c, s.key))
        if s.contact_id is not None:
            contact_id = s.contact_id
            _, read_up_to = await visitors.reads.run(
                lambda c: store.read_marks(c, contact_id))
        visitors.note(s)
        ready: dict[str, Any] = {
            "type": "ready", "verified": s.user_id is not None,
            "site": s.site.public(_gettext(app, s)),
            "agents_online": await visitors.agents_online(),
            "max_text": app[SETTINGS].web_max_text_chars, "read_up_to": read_up_to,
            "labels": widget_labels(_gettext(app, s)),
        }
        if token is not None:
            ready["visitor"] = token
        await s.ws.send_json(ready)
        if since == 0:
            items: list[store.FeedItem] = []
            more = False
            if s.contact_id is not None:
                contact_id, limit = s.contact_id, app[SETTINGS].web_history_messages
                items, more = await visitors.reads.run(
                    lambda c: store.before(c, contact_id, None, limit))
            await s.ws.send_json({"type": "history", "messages": [i.to_dict() for i in items],
                                  "more": more})
            for item in items:
                s.remember(item.id)
            if items:
                s.last_id = items[-1].id
        # What arrived while the widget was away (and, after history, outbox rows waiting
        # for this visitor): delivered now.
        await visitors.catch_up(s)
    await _bring_along(app, s)


async def _serve(app: web.Application, s: VisitorSocket) -> None:
    """The widget's frames until it goes."""
    async for msg in s.ws:
        if msg.type != WSMsgType.TEXT:
            if msg.type == WSMsgType.BINARY:
                await s.ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"text frames only")
            break
        if s.frames.hit("all", time.monotonic()):
            await _refuse(s.ws, "flood", "Too many requests from this chat window.",
                          CLOSE_FLOOD)
            break
        # The site may have been disabled or this origin removed since the socket opened.
        site = await app[WEB_SITES].get(s.site.key)
        if site is None or not web_channel.origin_allowed(s.origin, list(site.origins)):
            await _refuse(s.ws, "origin_refused", "This chat is no longer available here.",
                          CLOSE_REFUSED)
            break
        s.site = site
        try:
            frame = web_channel.parse_frame(_json(msg.data), app[SETTINGS].web_max_text_chars)
        except ChannelInputError as exc:
            message = exc.message if exc.status != 413 else Phrase(
                TOO_LONG, (("max", str(app[SETTINGS].web_max_text_chars)),)
            ).render(_gettext(app, s))
            await _error(s, "too_long" if exc.status == 413 else "bad_request", message,
                         _cid(msg.data))
            continue
        try:
            if isinstance(frame, web_channel.Said):
                # A sent message ends the draft: the next keystroke is news to the agent.
                s.typing_at = 0.0
                await _said(app, s, frame)
            elif isinstance(frame, web_channel.Typing):
                await _typing(app, s)
            elif isinstance(frame, web_channel.Read):
                await _read(app, s, frame.up_to)
            else:
                await _older(app, s, frame.before)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            # The socket stays: what could not be shown now comes with the next catch-up.
            if not is_unavailable(exc):
                log.exception("web chat: a visitor's frame failed")
            await _error(s, "unavailable", _gettext(app, s)(WENT_WRONG), retry_after=5)


def _json(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _cid(data: str) -> str | None:
    raw = _json(data)
    cid = raw.get("cid") if isinstance(raw, dict) else None
    return cid if isinstance(cid, str) and len(cid) <= 32 else None


async def _error(s: VisitorSocket, code: str, message: str, cid: str | None = None,
                 **extra: Any) -> None:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message, **extra}
    if cid is not None:
        frame["cid"] = cid
    await _send(s, frame)


async def _said(app: web.Application, s: VisitorSocket, said: web_channel.Said) -> None:
    visitors = app[WEB_VISITORS]
    now = time.monotonic()
    wait = max(visitors.visitor_messages.retry_after(s.key, now),
               visitors.ip_messages.retry_after(s.ip, now))
    if wait:
        slow_down = Phrase(SLOW_DOWN_ONE) if wait == 1 else Phrase(
            SLOW_DOWN, (("seconds", str(wait)),))
        await _error(s, "rate_limited", slow_down.render(_gettext(app, s)), said.cid,
                     retry_after=wait)
        return
    visitors.visitor_messages.hit(s.key, now)
    visitors.ip_messages.hit(s.ip, now)
    try:
        msg = web_channel.inbound(s.key, said, s.name, s.language)
        result, effects = await app[INBOUND].submit(msg)
    except ChannelInputError as exc:
        await _error(s, "bad_request", exc.message, said.cid)
        return
    except DuplicateIdConflict as exc:
        await _error(s, "bad_request", str(exc), said.cid)
        return
    except Exception as exc:
        if not is_unavailable(exc):
            log.exception("web chat: routing a visitor's message failed")
        await _error(s, "unavailable", _gettext(app, s)(NOT_TAKEN), said.cid, retry_after=5)
        return
    await publish_effects(app, effects)
    await _send(s, {"type": "ack", "cid": said.cid, "duplicate": result.duplicate})
    async with s.lock:
        await visitors.catch_up(s, outbox=False)
    # A signed-in visitor's first message made their contact (catch_up looked it up): now
    # their earlier anonymous chat can be linked.
    await _bring_along(app, s)
    await visitors.notify(s.key, up_to=s.last_id, besides=s, wait=False)


async def _bring_along(app: web.Application, s: VisitorSocket) -> None:
    """Join the browser's earlier anonymous chat to the signed-in visitor, once both have a
    contact (a failure is logged and tried again on their next visit)."""
    anonymous_key, contact_id = s.anonymous_key, s.contact_id
    if anonymous_key is None or contact_id is None:
        return
    s.anonymous_key = None
    try:
        async with app[WRITES].begin() as session:
            linked = await store.bring_along(session, anonymous_key, contact_id, app[CLOCK]())
    except Exception as exc:
        if not is_unavailable(exc):
            log.exception("web chat: linking an anonymous chat to a signed-in visitor failed")
        return
    if linked:
        log.info("web chat: a signed-in visitor's earlier anonymous chat joined their account")


async def _typing(app: web.Application, s: VisitorSocket) -> None:
    """Tell the agent the visitor is typing (at most every two seconds, and only while a
    person has the conversation)."""
    now = time.monotonic()
    if now - s.typing_at < TYPING_EVERY_SECONDS or s.contact_id is None:
        return
    s.typing_at = now
    contact_id = s.contact_id
    latest = await app[WEB_VISITORS].reads.run(
        lambda c: store.latest_conversation(c, contact_id))
    if latest is None or latest[1] not in ("queued", "assigned"):
        return
    conv_id, status, agent_id = latest
    await app[EVENT_HUB].publish([Event(
        "typing", conv_id, agent_ids=(agent_id,) if agent_id else (),
        queue=status == "queued", data={"by": "customer"},
    )])


async def _read(app: web.Application, s: VisitorSocket, up_to: int) -> None:
    """The visitor saw everything up to `up_to`: move their read mark, tell the agent."""
    up_to = min(up_to, s.last_id)
    if up_to <= s.read_up_to or s.contact_id is None:
        return
    s.read_up_to = up_to
    app[WEB_VISITORS].read(s.contact_id, up_to)


async def _older(app: web.Application, s: VisitorSocket, before: int) -> None:
    items: list[store.FeedItem] = []
    more = False
    if s.contact_id is not None:
        contact_id, limit = s.contact_id, app[SETTINGS].web_history_messages
        items, more = await app[WEB_VISITORS].reads.run(
            lambda c: store.before(c, contact_id, before, limit))
    await _send(s, {"type": "older", "messages": [i.to_dict() for i in items], "more": more})


def add_routes(app: web.Application) -> None:
    """Register the widget, the site settings and the socket."""
    app.router.add_get("/widget.js", widget_js)
    app.router.add_get(SITE_PATH, site_settings)
    app.router.add_route("OPTIONS", SITE_PATH, site_preflight)
    app.router.add_get(SOCKET_PATH, visitor_socket)

