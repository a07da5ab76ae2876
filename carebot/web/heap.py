"""The garbage collector of a serving process, tuned so its pauses stay short.

By the time the service listens it holds hundreds of thousands of long-lived objects (the
sentence encoder, the FAQ index and matcher, SQLAlchemy's mappings, the routes). CPython's
full (generation 2) collections walk all of them: with 2,000 web chat visitors connected
each one took 300-650 ms, during which no request, socket or writer thread ran
(benchmarks/web_chat.py), and that was the p99. `gc.freeze()` moves what exists at startup
into a permanent generation no collection visits; what requests allocate is still
collected as before.

Startup is not the end of it: each open connection holds ~75 objects of its own (aiohttp's
request, protocol, parser, websocket reader and writer, a chain of ~10 coroutines, carebot's
`VisitorSocket`), so 2,000 idle widgets added ~150,000 objects that every full collection
walked again (60-120 ms per pause, one every 10-15 s under chat load). `SurvivorFreezer`
freezes what survives each full collection as well: the next one walks only what was promoted
since. Freezing has one cost: a reference cycle among frozen objects is never collected (an
object freed by its reference count is freed as usual, frozen or not), so every
`THAW_SECONDS` everything is unfrozen, collected once and frozen again. That one pause walks
the whole heap (~0.2-0.3 s with 2,000 connections), a few times an hour instead of several
times a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

# How often the frozen objects are unfrozen and collected (see the module docstring).
THAW_SECONDS = 900.0
# A full collection this long is worth a warning (the web chat's target p99 is 100 ms).
LONG_PAUSE_MS = 50.0
REPORT_SECONDS = 60.0


def freeze_startup_objects() -> None:
    """Collect once, then exempt everything alive now from later collections."""
    gc.collect()
    gc.freeze()


def release_socket(request: web.Request) -> None:
    """Call when a WebSocket handler with a heartbeat ends: drops the one reference that makes
    the closed connection a cycle.

    aiohttp (3.14) hands the connection's protocol the response's heartbeat callback and never
    takes it back, so response -> request -> protocol -> callback -> response outlives the
    connection: ~28 objects per closed socket (the response, request, protocol, transport,
    parser, writer, headers) that only a full collection could free, and, once frozen by
    `SurvivorFreezer`, only its thaw. Without the callback they go by reference counting the
    moment the handler returns. The attribute is aiohttp's own, hence the guard."""
    protocol = request.protocol
    if getattr(protocol, "_data_received_cb", None) is not None:
        protocol._data_received_cb = None


class SurvivorFreezer:
    """Freezes the survivors of every full collection, and thaws them every `thaw_seconds`
    for one collection that reclaims the cycles among them. One per process (`start` in the
    process's event loop, `stop` before it ends).

    It also times the full collections: a pause of `LONG_PAUSE_MS` or more is logged (a
    warning, at most once per `REPORT_SECONDS`), since it delays every request in flight and
    is otherwise invisible."""

    def __init__(self, thaw_seconds: float = THAW_SECONDS) -> None:
        self.thaw_seconds = thaw_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self._started = 0.0
        self._full = 0  # full collections since the last report
        self._longest_ms = 0.0  # and the longest of them

    def start(self) -> None:
        """Begin: from now on each full collection's survivors are frozen."""
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)
        self._tasks = [asyncio.create_task(self._thaw_loop(), name="gc-thaw"),
                       asyncio.create_task(self._report_loop(), name="gc-report")]

    async def stop(self) -> None:
        """Stop freezing (what is frozen stays frozen: the process is ending)."""
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_collection)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        # Runs in whichever thread allocated when the collector ran, with the GIL held (so
        # never two at once), on every collection: it must stay this cheap. Right after a
        # full collection the younger generations are empty and the oldest holds only what
        # was reachable: exactly what to freeze. Freezing just moves list heads.
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        self._full += 1
        self._longest_ms = max(self._longest_ms, (time.perf_counter() - self._started) * 1000)
        gc.freeze()

    def pauses(self) -> tuple[int, float]:
        """Full collections since the last call, and the longest pause among them in ms."""
        taken = self._full, self._longest_ms
        self._full, self._longest_ms = 0, 0.0
        return taken

    async def _report_loop(self) -> None:
        # Logged here, not in the callback: that may run inside any code, the logging
        # module's own included.
        while True:
            await asyncio.sleep(REPORT_SECONDS)
            full, longest = self.pauses()
            if longest >= LONG_PAUSE_MS:
                log.warning("garbage collection paused this process for up to %.0f ms "
                            "(%d full collections in %.0f s)", longest, full, REPORT_SECONDS)

    async def _thaw_loop(self) -> None:
        while True:
            await asyncio.sleep(self.thaw_seconds)
            self.thaw()

    def thaw(self) -> int:
        """Unfreeze everything, collect it once, freeze the survivors again; the number of
        objects that died frozen (in cycles) and only this could reclaim."""
        started = time.perf_counter()
        # What is not frozen first (a full collection due anyway), so the count below is only
        # what freezing kept: the log says whether thawing this often is worth its pause
        # (benchmarks/web_chat.py: 0 per thaw, once closed sockets stopped leaving cycles).
        gc.collect()
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        reclaimed = gc.collect()
        gc.freeze()  # (the callback did already, unless stopped)
        log.info("gc thaw: %d frozen objects, %d of them died frozen, %.0f ms", frozen,
                 reclaimed, (time.perf_counter() - started) * 1000)
        return reclaimed


@contextlib.asynccontextmanager
async def frozen_heap() -> AsyncIterator[SurvivorFreezer]:
    """A long-running process's heap handling, once its startup objects exist: freeze them,
    then the survivors of every full collection, until the block ends."""
    freeze_startup_objects()
    freezer = SurvivorFreezer()
    freezer.start()
    try:
        yield freezer
    finally:
        await freezer.stop()
