"""Graceful shutdown: on SIGTERM (or Ctrl+C) `carebot serve` stops accepting, finishes what is
in flight, closes live feeds with 1001 and exits within five seconds, saying so in the log.

aiohttp's runner does the order: it stops listening, closes idle keep-alive connections, runs
`on_shutdown` (this module's announcement, then the live feeds closed with 1001 "going away",
`carebot.web.events`), waits for requests in flight, then unwinds the `cleanup_ctx` resources
in reverse: the outbox worker finishes its sends, the inbound writer commits every batch it
was given, the database goes last. Each wait is bounded:

- requests in flight get `GRACE_SECONDS` (aiohttp's `shutdown_timeout`); a client that never
  sends its body is cut off then;
- a live feed whose client does not answer the close handshake is dropped after
  `CLOSE_SECONDS` (`carebot.web.events`);
- the outbox worker and the Telegram poller get `WORKER_GRACE_SECONDS` to finish a send in
  flight (a row cut off stays `sending` and goes out again when its lease runs out);
- and, should anything still hang, a watchdog ends the process at `DEADLINE_SECONDS`
  (logged). Nothing is lost then either: every answered message was committed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from carebot.web.handler import Handler

log = logging.getLogger(__name__)

GRACE_SECONDS = 2.0
CLOSE_SECONDS = 1.0
WORKER_GRACE_SECONDS = 1.0
DEADLINE_SECONDS = 4.5


@dataclass
class _Shutdown:
    requests: int = 0  # HTTP requests being handled (live feeds are counted apart)
    started: float | None = None


STATE = web.AppKey("shutdown", _Shutdown)


@web.middleware
async def inflight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the requests being handled, for the shutdown log line."""
    state = request.app[STATE]
    feed = request.headers.get("Upgrade", "").lower() == "websocket"
    if not feed:
        state.requests += 1
    try:
        return await handler(request)
    finally:
        if not feed:
            state.requests -= 1


def track_shutdown(app: web.Application) -> None:
    """Log the shutdown as it happens: what was in flight, then how long it took."""
    app[STATE] = _Shutdown()
    app.on_shutdown.insert(0, _announce)
    app.cleanup_ctx.insert(0, _stopped)  # unwound last: after every other resource


async def _announce(app: web.Application) -> None:
    from carebot.web.events import SOCKETS  # the feeds module imports auth, which is above

    state = app[STATE]
    state.started = time.monotonic()
    log.info("shutting down: no new connections; finishing %d request(s) in flight, closing "
             "%d live feed(s) with 1001", state.requests, len(app[SOCKETS]))


async def _stopped(app: web.Application) -> AsyncIterator[None]:
    yield
    started = app[STATE].started
    if started is not None:
        log.info("stopped in %.1f s", time.monotonic() - started)


def arm_watchdog(app: web.Application, deadline: float = DEADLINE_SECONDS) -> None:
    """`carebot serve` only: once shutdown starts, the process ends by `deadline` seconds even
    if something hangs (tests run apps in-process and never arm it)."""

    async def start(_app: web.Application) -> None:
        timer = threading.Timer(deadline, _exit_now, args=(deadline,))
        timer.daemon = True
        timer.start()

    app.on_shutdown.insert(0, start)


def _exit_now(deadline: float) -> None:
    log.error("shutdown did not finish within %.1f s; exiting now (committed work is safe; "
              "outbox rows being sent go out again when their lease runs out)", deadline)
    logging.shutdown()
    os._exit(1)
