"""Serving the app on a port: aiohttp's server behind a cap on open connections.

Every connection holds a file descriptor and some memory whether or not it ever sends a
request. Without a cap, ~20,000 idle sockets (the open-file limit) made every other client's
connection fail with an empty reply. So each process holds at most `total` connections at
once, and at most `per_ip` from one address; a connection over either cap gets a `503` and is
closed at once, before it costs anything more, and everyone else keeps being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from carebot.db.availability import RETRY_AFTER_SECONDS
from carebot.web.heap import frozen_heap
from carebot.web.shutdown import GRACE_SECONDS, arm_watchdog

log = logging.getLogger(__name__)

# File descriptors kept for everything else a process opens: database connections, the
# listening socket, log files, the model's files.
RESERVED_FDS = 128
# Repeated refusals are summed up in one log line at most this often.
LOG_EVERY_SECONDS = 60.0

_BODY = json.dumps({"error": {"status": 503, "message": "too many connections; try again "
                                                       "shortly"}}).encode()
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
           b"Retry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
           % (RETRY_AFTER_SECONDS, len(_BODY), _BODY))


class ConnectionLimit:
    """Open connections of one process, in total and per client address."""

    def __init__(self, total: int, per_ip: int = 0) -> None:
        if total < 1 or per_ip < 0:
            raise ValueError("need total >= 1 and per_ip >= 0 (0: no cap per address)")
        self.total = total
        self.per_ip = per_ip  # 0: no cap per address
        self.open = 0
        self.by_ip: Counter[str] = Counter()
        self.refused = 0
        self._logged_at = float("-inf")

    def admit(self, ip: str) -> bool:
        """Count a new connection from `ip` in, or say it is one too many."""
        if self.open >= self.total or (self.per_ip and self.by_ip[ip] >= self.per_ip):
            self.refused += 1
            now = time.monotonic()
            if now - self._logged_at >= LOG_EVERY_SECONDS:
                log.warning(
                    "connection cap reached: refused %d connection(s) since the last report "
                    "(%d open, at most %d; %d from %s, at most %s per address)",
                    self.refused, self.open, self.total, self.by_ip[ip], ip,
                    self.per_ip or "any")
                self._logged_at, self.refused = now, 0
            return False
        self.open += 1
        self.by_ip[ip] += 1
        return True

    def release(self, ip: str) -> None:
        """A connection admitted from `ip` closed."""
        self.open -= 1
        self.by_ip[ip] -= 1
        if self.by_ip[ip] <= 0:
            del self.by_ip[ip]


def effective_total(wanted: int, file_limit: int) -> int:
    """The total cap a process can keep: `wanted`, but below its open-file limit, or the
    connections would take the descriptors its database connections need."""
    return max(1, min(wanted, file_limit - RESERVED_FDS))


class _Admitted(asyncio.Protocol):
    """aiohttp's protocol for one connection, entered only if the limit admits it."""

    def __init__(self, inner: asyncio.Protocol, limit: ConnectionLimit) -> None:
        self._inner = inner
        self._limit = limit
        self._ip: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else ""
        if not self._limit.admit(ip):
            # uvloop's transports are no subclass of asyncio's, but write the same way.
            writer = cast(asyncio.WriteTransport, transport)
            writer.write(REFUSAL)
            writer.close()
            return
        self._ip = ip
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ip is None:
            return
        self._limit.release(self._ip)
        self._ip = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._ip is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._ip is not None else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def capped(factory: Callable[[], Any], limit: ConnectionLimit) -> Callable[[], asyncio.Protocol]:
    """A protocol factory: `factory`'s protocols, for the connections `limit` admits."""
    return lambda: _Admitted(factory(), limit)


async def listen(
    runner: web.AppRunner, host: str, port: int, limit: ConnectionLimit, *,
    reuse_port: bool = False,
) -> asyncio.Server:
    """Serve `runner` (set up) on host:port, every connection through `limit`."""
    server = runner.server
    assert server is not None, "set the runner up first"
    return await asyncio.get_running_loop().create_server(
        capped(server, limit), host, port, reuse_address=True, reuse_port=reuse_port,
        backlog=1024)


def run(
    app: web.Application, host: str, port: int, limit: ConnectionLimit, *,
    loop: asyncio.AbstractEventLoop, reuse_port: bool = False,
) -> None:
    """What `web.run_app` does for one address, with `limit` in front of every connection:
    serve until SIGINT or SIGTERM, then shut down gracefully."""
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, host, port, limit, reuse_port))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        rest = asyncio.all_tasks(loop)
        for task in rest:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _serve(
    app: web.Application, host: str, port: int, limit: ConnectionLimit, reuse_port: bool
) -> None:
    # Graceful and bounded: in-flight requests get GRACE_SECONDS, and a watchdog ends a
    # process that still hangs (carebot.web.shutdown).
    arm_watchdog(app)
    runner = web.AppRunner(app, handle_signals=True, shutdown_timeout=GRACE_SECONDS)
    await runner.setup()
    listener: asyncio.Server | None = None
    try:
        async with frozen_heap():
            listener = await listen(runner, host, port, limit, reuse_port=reuse_port)
            await asyncio.Event().wait()  # until a signal raises GracefulExit
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()
