"""Fan-out of live events to connected agent consoles (in this process).

A console that stops reading is dropped, not warned about per event: 300 such clients once
wrote 270,000 log lines in 20 seconds. Its backlog is bounded (`QUEUE_LIMIT`); when it is
full the console's feed is cut (one log line), and the console reconnects when it reads again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from carebot.domain.events import Event

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000
# Events for web chat visitors ("visitor.feed", "visitor.typing", …) go to the visitors'
# sockets (`carebot.web.web_chat`), never to consoles.
VISITOR_PREFIX = "visitor."


@dataclass(eq=False)
class Subscriber:
    """One connected console: who it is and its queue of events."""

    agent_id: int
    role: str
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    # Set when the backlog overflowed: the feed closes and gets no more events.
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, event: Event) -> bool:
        """Managers and admins see everything; agents see their own and queue events."""
        return self.role in {"manager", "admin"} or event.queue or self.agent_id in event.agent_ids


class EventHub:
    """Delivers events to the subscribers they concern; a slow console drops, never blocks.

    `taps` see every event delivered in this process (the web chat's sockets take theirs);
    `reconnected` callbacks run when a fan-out that may have missed events is back.
    """

    # Whether a publish reaches other processes (PostgreSQL) or only this one (SQLite).
    spans_processes = False

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self.taps: list[Callable[[Event], None]] = []
        self.reconnected: list[Callable[[], None]] = []

    def subscribe(self, agent_id: int, role: str) -> Subscriber:
        """Register a console."""
        sub = Subscriber(agent_id, role)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a console."""
        self._subscribers.discard(sub)

    async def publish(self, events: Iterable[Event]) -> None:
        """Publish events (the base hub delivers locally; subclasses also fan out)."""
        self.deliver_local(events)

    def deliver_local(self, events: Iterable[Event]) -> None:
        """Hand events to this process's subscribers."""
        for event in events:
            for tap in self.taps:
                try:
                    tap(event)
                except Exception:  # one listener's bug must not stop the consoles' feed
                    log.exception("event tap failed on %s", event.kind)
            if event.kind.startswith(VISITOR_PREFIX):
                continue
            for sub in list(self._subscribers):
                if sub.wants(event):
                    try:
                        sub.queue.put_nowait(event)
                    except asyncio.QueueFull:
                        self._drop(sub)

    def _drop(self, sub: Subscriber) -> None:
        self.unsubscribe(sub)
        sub.overflowed.set()
        log.warning("console of agent %s stopped reading: its live feed is closed after %d "
                    "unread events", sub.agent_id, sub.queue.qsize())
