"""Outbound for the web chat: the outbox worker's sender for the `web` channel.

A web visitor is reached only through their widget's open socket, which may be held by any
web process. So "sending" an outbox row means telling every process that the visitor has
something new (`notify`: the event fan-out, PostgreSQL NOTIFY across processes); the socket
that holds the visitor reads the message from the table, pushes it and marks its row `sent`.
The row itself goes back to wait (`DeliveryDeferred`): if no widget is open it stays pending
until the visitor's next visit, whose first catch-up delivers it. It is looked at again after
a growing delay (from a minute to a day) in case a notification was lost; waiting never uses
up the row's delivery attempts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from carebot.delivery.outbox import DeliveryDeferred, OutboxItem
from carebot.domain.clock import Clock

# (the visitor's key, the message id): wake the sockets that have not shown it.
Notify = Callable[[str, int | None], Awaitable[None]]
FIRST_RECHECK_SECONDS = 60.0
MAX_RECHECK_SECONDS = 86_400.0


def recheck_after(waited: float) -> float:
    """Seconds before a waiting row is looked at again: as long as it has waited already
    (so the checks thin out, doubling), from a minute to a day."""
    return min(MAX_RECHECK_SECONDS, max(FIRST_RECHECK_SECONDS, waited))


class WebSender:
    """Delivers `web` outbox rows by waking the visitor's widgets, wherever they are open."""

    def __init__(self, notify: Notify, clock: Clock) -> None:
        self._notify = notify
        self._clock = clock

    async def send(self, item: OutboxItem) -> str | None:
        """Wake the visitor's sockets; the row waits for one of them to mark it sent."""
        await self._notify(item.recipient, item.message_id)
        waited = 0.0
        if item.created_at is not None:
            waited = (self._clock() - item.created_at).total_seconds()
        raise DeliveryDeferred("waiting for the visitor's widget", recheck_after(waited))
