"""Which agents have a console connected to this process, and their heartbeat.

A console is the live-event WebSocket (`carebot.web.events`); an agent may have several
(tabs, processes). This process counts its own, and every `CAREBOT_PRESENCE_HEARTBEAT_SECONDS`
writes the heartbeat of all its connected agents in one UPDATE
(`carebot.routing.presence.heartbeat`), not a write per socket. The timers compare those
heartbeats with the grace period; a socket on any process keeps its agent online.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator

from aiohttp import web

from carebot.domain.events import Effects
from carebot.routing import presence
from carebot.web.keys import CLOCK, DATABASE, POLICY, PRESENCE, SETTINGS, WRITES
from carebot.web.publish import publish_effects

log = logging.getLogger(__name__)


class Consoles:
    """The consoles connected to this process, counted per agent."""

    def __init__(self) -> None:
        self._open: Counter[int] = Counter()

    def opened(self, agent_id: int) -> None:
        """A console of the agent connected."""
        self._open[agent_id] += 1

    def closed(self, agent_id: int) -> None:
        """A console of the agent went away."""
        self._open[agent_id] -= 1
        if self._open[agent_id] <= 0:
            del self._open[agent_id]

    def count(self, agent_id: int) -> int:
        """How many consoles of the agent are connected here."""
        return self._open.get(agent_id, 0)

    def agent_ids(self) -> list[int]:
        """The agents with at least one console here."""
        return sorted(self._open)


async def connected(app: web.Application, agent_id: int) -> None:
    """A console of the agent connected: their heartbeat written at once, an agent presence
    had made away online again, and the console counted (also when this fails: a database
    error is logged and left to the next heartbeat, which does the same)."""
    try:
        if not app[DATABASE].up:
            return  # one log line per outage is enough; the heartbeat tries again
        effects = Effects()
        try:
            async with app[WRITES].begin() as session:
                await presence.console_connected(
                    session, agent_id, app[CLOCK](), app[POLICY], effects)
        except Exception:
            log.exception("could not record the console of agent %s; the next heartbeat "
                          "will", agent_id)
            return
        await publish_effects(app, effects)
    finally:
        app[PRESENCE].opened(agent_id)


def disconnected(app: web.Application, agent_id: int) -> None:
    """A console of the agent went away; the grace period runs from their last heartbeat."""
    app[PRESENCE].closed(agent_id)


async def beat(app: web.Application) -> int:
    """One heartbeat for every agent with a console here; returns how many came back online
    (presence had made them away while a heartbeat was missed)."""
    ids = app[PRESENCE].agent_ids()
    if not ids or not app[DATABASE].up:
        return 0
    effects = Effects()
    async with app[WRITES].begin() as session:
        back = await presence.heartbeat(session, ids, app[CLOCK](), app[POLICY], effects)
    await publish_effects(app, effects)
    return back


async def presence_ctx(app: web.Application) -> AsyncIterator[None]:
    """Count this process's consoles and write their heartbeats while the app runs."""
    app[PRESENCE] = Consoles()
    task = asyncio.create_task(_beat_forever(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _beat_forever(app: web.Application) -> None:
    while True:
        await asyncio.sleep(app[SETTINGS].presence_heartbeat_seconds)
        try:
            await beat(app)
        except Exception:
            log.exception("console heartbeat failed; retrying next interval")
