"""A web chat visitor without a browser: the widget's side of the socket, for the API tests."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.channels import web_store
from carebot.db.models import WebSite
from tests.conftest import START

SOCKET = "/api/v1/channels/web/socket"
ORIGIN = "http://shop.test"
_CIDS = itertools.count(1)


async def make_site(
    sessions: async_sessionmaker[AsyncSession], name: str = "Shop",
    origins: tuple[str, ...] = (ORIGIN,), **look: Any,
) -> WebSite:
    """A site allowing `origins`."""
    async with sessions.begin() as session:
        return await web_store.create_site(session, name, list(origins), START, **look)


class Widget:
    """One open widget: its socket, the frames it got, and the messages it shows (by id)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.shown: dict[int, dict[str, Any]] = {}
        self.ready: dict[str, Any] = {}

    @classmethod
    async def open(
        cls, http: Any, site: WebSite | str, *, origin: str = ORIGIN,
        visitor: str | None = None, since: int = 0, user: dict[str, Any] | None = None,
    ) -> Widget:
        """Connect (`http`: a test client or a session with a base URL) and say hello."""
        key = site if isinstance(site, str) else site.key
        ws = await http.ws_connect(f"{SOCKET}?site={key}", headers={"Origin": origin})
        widget = cls(ws)
        hello: dict[str, Any] = {"type": "hello", "since": since}
        if visitor is not None:
            hello["visitor"] = visitor
        if user is not None:
            hello["user"] = user
        await ws.send_json(hello)
        widget.ready = await widget.expect("ready", "error")
        return widget

    @property
    def visitor(self) -> str:
        return str(self.ready.get("visitor", ""))

    @property
    def last_id(self) -> int:
        return max(self.shown, default=0)

    async def next(self, within: float = 5.0) -> dict[str, Any]:
        """The next frame; messages it carries are recorded."""
        msg = await self.ws.receive(timeout=within)
        if msg.type != aiohttp.WSMsgType.TEXT:
            frame = {"type": "closed", "code": self.ws.close_code}
        else:
            frame = msg.json()
        self.frames.append(frame)
        for m in frame.get("messages", ()):
            self.shown[m["id"]] = m
        return frame

    async def expect(self, *types: str, within: float = 5.0) -> dict[str, Any]:
        """Frames until one of these types (others are recorded too)."""
        while True:
            frame = await self.next(within)
            if frame["type"] in types:
                return frame
            if frame["type"] == "closed":
                raise AssertionError(f"socket closed waiting for {types}: {frame}")

    async def say(self, text: str = "", *, payload: str | None = None,
                  cid: str | None = None) -> str:
        """Send a message; returns its cid."""
        cid = cid or f"cid-{next(_CIDS):06d}"
        frame: dict[str, Any] = {"type": "message", "cid": cid, "text": text}
        if payload is not None:
            frame["payload"] = payload
        await self.ws.send_json(frame)
        return cid

    async def until(self, check: Any, within: float = 5.0) -> None:
        """Read frames until `check(self)` holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not check(self):
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"not reached; frames: {self.frames[-5:]}")
            try:
                await self.next(left)
            except TimeoutError:
                continue

    def texts(self, sender: str | None = None) -> list[str]:
        """The texts shown, in id order (from one sender)."""
        return [m["text"] for _, m in sorted(self.shown.items())
                if sender is None or m["from"] == sender]

    def has(self, fragment: str, sender: str | None = None) -> bool:
        return any(fragment in t for t in self.texts(sender))

    async def close(self) -> None:
        await self.ws.close()
