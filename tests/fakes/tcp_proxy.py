"""A TCP proxy on loopback in front of the test PostgreSQL that can fail on command.

`stop()` drops every connection and refuses new ones (a stopped server), `hang()` keeps them
open but passes no bytes (a server frozen mid-query), `resume()` heals both. The shared server
behind it is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib


class FaultyProxy:
    """Forward 127.0.0.1:<port> to the target, unless told to fail."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._down = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop(self) -> None:
        """Like a stopped server: every connection drops, new ones are closed at once."""
        self._down = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def hang(self) -> None:
        """Like a frozen server: connections stay open and nothing comes back."""
        self._flowing.clear()

    def resume(self) -> None:
        self._down = False
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError, ConnectionError):
            while data := await src.read(65536):
                await self._flowing.wait()
                if self._down:
                    break
                dst.write(data)
                await dst.drain()
        dst.transport.abort()
        self._writers.discard(dst)
