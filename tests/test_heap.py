"""The serving process's garbage collector: survivors of full collections are frozen (short
pauses), and a periodic thaw reclaims the cycles that died frozen (no leak)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

from aiohttp import web

from carebot.web.heap import SurvivorFreezer, release_socket


class _Node:
    me: object


async def test_survivors_are_frozen_and_a_thaw_reclaims_the_cycles_that_died_frozen() -> None:
    freezer = SurvivorFreezer(thaw_seconds=3600)
    freezer.start()
    try:
        node = _Node()
        node.me = node  # a cycle: only the collector can free it
        alive = weakref.ref(node)
        gc.collect()
        assert gc.get_freeze_count() > 0  # it survived a full collection: frozen

        del node
        gc.collect()
        assert alive() is not None  # frozen: collections no longer visit it

        assert freezer.thaw() >= 1
        assert alive() is None
        assert gc.get_freeze_count() > 0  # what is still alive is frozen again
    finally:
        await freezer.stop()
        gc.unfreeze()  # the rest of the test session collects as usual


async def test_stopped_it_freezes_nothing_more() -> None:
    freezer = SurvivorFreezer(thaw_seconds=3600)
    freezer.start()
    await freezer.stop()
    try:
        gc.collect()
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


async def test_a_closed_web_chat_socket_leaves_no_cycle_behind(aiohttp_client: Any) -> None:
    # aiohttp's heartbeat callback kept response, request and protocol alive in a cycle
    # (`release_socket`): with the collector off, nothing of a closed socket must remain.
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=25)
        await ws.prepare(request)
        async for _ in ws:
            pass
        release_socket(request)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    client = await aiohttp_client(app)
    gc.collect()
    gc.disable()
    try:
        ws = await client.ws_connect("/ws")
        await ws.close()
        await asyncio.sleep(0.1)  # the server side sees the close and its handler returns
        alive = [o for o in gc.get_objects() if isinstance(o, web.WebSocketResponse)]
        assert alive == []
    finally:
        gc.enable()


async def test_it_times_full_collections() -> None:
    freezer = SurvivorFreezer(thaw_seconds=3600)
    freezer.start()
    try:
        freezer.pauses()  # from here
        gc.collect(0)  # a young collection is not counted
        gc.collect()
        gc.collect()
        full, longest = freezer.pauses()
        assert full == 2
        assert longest > 0
        assert freezer.pauses() == (0, 0.0)  # each call starts a new window
    finally:
        await freezer.stop()
        gc.unfreeze()
