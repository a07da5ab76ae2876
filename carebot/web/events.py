"""GET /api/v1/events: a WebSocket pushing live events to the agent who opened it."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from carebot.web.auth import ALL_ROLES, current_agent, roles
from carebot.web.hub import Subscriber
from carebot.web.keys import EVENT_HUB


@roles(*ALL_ROLES)
async def events_ws(request: web.Request) -> web.WebSocketResponse:
    """Stream events: the agent's own conversations and the queue; managers see everything."""
    agent = current_agent(request)
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=4096)
    await ws.prepare(request)
    hub = request.app[EVENT_HUB]
    sub = hub.subscribe(agent.id, agent.role)
    sender = asyncio.create_task(_forward(sub, ws))
    try:
        await ws.send_json({"kind": "hello", "agent_id": agent.id, "role": agent.role})
        async for msg in ws:
            # The console only listens; anything it sends is ignored, a close ends the stream.
            if msg.type in {WSMsgType.ERROR, WSMsgType.CLOSE}:
                break
    finally:
        hub.unsubscribe(sub)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return ws


async def _forward(sub: Subscriber, ws: web.WebSocketResponse) -> None:
    while not ws.closed:
        event = await sub.queue.get()
        await ws.send_json(event.to_dict())
