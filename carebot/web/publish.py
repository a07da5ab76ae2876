"""After a commit: push live events to consoles and wake the outbox sender."""

from __future__ import annotations

from aiohttp import web

from carebot.domain.events import Effects
from carebot.web.keys import EVENT_HUB, OUTBOX_WAKE


async def publish_effects(app: web.Application, effects: Effects) -> None:
    """Publish what a committed transaction produced; a no-op for parts that are not running."""
    if effects.outbox_pending and (wake := app.get(OUTBOX_WAKE)) is not None:
        wake.set()
    if effects.events and (hub := app.get(EVENT_HUB)) is not None:
        await hub.publish(effects.events)
