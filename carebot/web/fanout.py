"""Live events across processes on PostgreSQL: NOTIFY on publish, LISTEN in every process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from carebot.domain.events import Event
from carebot.web.hub import EventHub

log = logging.getLogger(__name__)

CHANNEL = "carebot_events"
# NOTIFY payloads are limited to 8000 bytes; long texts are cut, consoles fetch the rest.
MAX_TEXT = 500
MAX_PAYLOAD = 7900
SHORT_TEXT = 100


class PgNotifyHub(EventHub):
    """Publishes through NOTIFY; a LISTEN connection delivers to this process's consoles."""

    spans_processes = True

    def __init__(self, engine: AsyncEngine, dsn: str) -> None:
        super().__init__()
        self._engine = engine
        self._dsn = dsn
        self._conn: Any = None
        self._watch: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def start(self) -> None:
        """Open the LISTEN connection and keep it open."""
        await self._connect()
        self._watch = asyncio.create_task(self._keep_listening())

    async def stop(self) -> None:
        """Close the LISTEN connection."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    async def publish(self, events: Iterable[Event]) -> None:
        """NOTIFY every process (this one included) of the events."""
        payloads = [_payload(e) for e in events]
        if not payloads:
            return
        # One statement for the lot: a batch's events were one round trip each.
        async with self._engine.begin() as conn:
            await conn.execute(
                text("SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) "
                     "WITH ORDINALITY AS u(p, n) ORDER BY n"),
                {"channel": CHANNEL, "payloads": payloads},
            )

    async def _connect(self) -> None:
        self._conn = await asyncpg.connect(self._dsn)
        await self._conn.add_listener(CHANNEL, self._on_notify)
        self.listening.set()

    async def _keep_listening(self) -> None:
        while True:
            await asyncio.sleep(2)
            if self._conn is None or self._conn.is_closed():
                if self.listening.is_set():  # one line per outage, not one per attempt
                    log.warning("event LISTEN connection lost; reconnecting")
                self.listening.clear()
                try:
                    await asyncio.wait_for(self._connect(), 5)
                except (OSError, TimeoutError, asyncpg.PostgresError):
                    continue
                log.warning("event LISTEN connection restored")
                for callback in self.reconnected:  # events of the outage were missed
                    callback()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = Event.from_dict(json.loads(payload))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed event notification")
            return
        self.deliver_local([event])


def asyncpg_dsn(database_url: str) -> str:
    """The plain libpq URL asyncpg wants, from a SQLAlchemy URL."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _trim(data: dict[str, Any], limit: int = MAX_TEXT) -> dict[str, Any]:
    inner = dict(data.get("data") or {})
    if isinstance(inner.get("text"), str) and len(inner["text"]) > limit:
        inner["text"] = inner["text"][:limit] + "…"
        inner["truncated"] = True
    return {**data, "data": inner}


def _payload(event: Event) -> str:
    """The event as a NOTIFY payload under 8000 bytes: escaped non-ASCII text takes up to
    12 bytes a character, so the texts, the name and the preview are cut further when
    needed."""
    payload = json.dumps(_trim(event.to_dict()))
    if len(payload) <= MAX_PAYLOAD:
        return payload
    data = _trim(event.to_dict(), SHORT_TEXT)
    data["data"] = {k: v[:SHORT_TEXT] if isinstance(v, str) else v
                    for k, v in data["data"].items()}
    if isinstance(data.get("customer_name"), str):
        data["customer_name"] = data["customer_name"][:SHORT_TEXT]
    if isinstance(data.get("preview"), dict):
        data["preview"] = {**data["preview"],
                           "text": str(data["preview"].get("text", ""))[:SHORT_TEXT]}
    return json.dumps(data)
