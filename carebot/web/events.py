"""GET /api/v1/events: a WebSocket pushing live events to the agent who opened it.

The socket is the agent's console: while one is open (in any process) the agent counts as
present (`carebot.web.presence`), and opening one gives back the `online` that presence took.

A feed lives only as long as its agent may see it: it closes at once when the agent is
disabled (an `agent_disabled` event, which reaches every process through the fan-out), and
every few seconds the agent is looked up again, so a disabled agent's feed closes even when
that event could not be delivered (a SQLite service and a `carebot agents disable` run are
two processes with no channel between them).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy import select

from carebot.db.models import Agent
from carebot.web import presence
from carebot.web.auth import ALL_ROLES, current_agent, roles
from carebot.web.heap import release_socket
from carebot.web.hub import Subscriber
from carebot.web.keys import EVENT_HUB, SESSIONS

RECHECK_SECONDS = 2.0
# On shutdown a console gets this long to answer the close handshake; then it is cut off.
CLOSE_SECONDS = 1.0
# Open feeds, closed with 1001 "going away" when the service shuts down (else shutdown would
# wait for every console to hang up).
SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("sockets")


def track_sockets(app: web.Application) -> None:
    """Keep the app's open feeds and close them when it shuts down."""
    app[SOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(_close_sockets)


async def _close_sockets(app: web.Application) -> None:
    sockets: weakref.WeakSet[web.WebSocketResponse] = app[SOCKETS]
    await asyncio.gather(*(_going_away(ws) for ws in list(sockets)), return_exceptions=True)


async def _going_away(ws: web.WebSocketResponse) -> None:
    # A console that stopped reading may never answer (or even take) the close frame: it is
    # cut off after CLOSE_SECONDS (a cancelled close drops the connection).
    await asyncio.wait_for(
        ws.close(code=WSCloseCode.GOING_AWAY, message=b"shutting down"), CLOSE_SECONDS)


@roles(*ALL_ROLES)
async def events_ws(request: web.Request) -> web.WebSocketResponse:
    """Stream events: the agent's own conversations and the queue; managers see everything."""
    agent = current_agent(request)
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=4096)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    hub = request.app[EVENT_HUB]
    sub = hub.subscribe(agent.id, agent.role)
    revoking = asyncio.Event()
    sender = asyncio.create_task(_forward(request.app, sub, ws, revoking))
    counted = False
    try:
        await ws.send_json({"kind": "hello", "agent_id": agent.id, "role": agent.role})
        # The socket is the agent's console: it keeps them online (carebot.web.presence).
        counted = True
        await presence.connected(request.app, agent.id)
        async for msg in ws:
            # The console only listens; anything it sends is ignored, a close ends the stream.
            if msg.type in {WSMsgType.ERROR, WSMsgType.CLOSE}:
                break
    finally:
        if counted:
            presence.disconnected(request.app, agent.id)
        hub.unsubscribe(sub)
        if revoking.is_set():
            # The sender is closing the socket (code 1008); let the handshake finish.
            await asyncio.wait({sender}, timeout=1.0)
        sender.cancel()
        # A console that hung up mid-event leaves the sender with a reset connection: that
        # ends this feed, nothing more.
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
            await sender
        release_socket(request)
    return ws


async def _forward(
    app: web.Application, sub: Subscriber, ws: web.WebSocketResponse, revoking: asyncio.Event
) -> None:
    while not ws.closed:
        if sub.overflowed.is_set():
            # Its backlog overflowed (the hub dropped it): the console reconnects and reloads.
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow")
            return
        try:
            event = await asyncio.wait_for(sub.queue.get(), RECHECK_SECONDS)
        except TimeoutError:
            if not await _still_enabled(app, sub.agent_id):
                await _revoke(ws, revoking)
                return
            continue
        if event.kind == "agent_disabled" and event.data.get("agent_id") == sub.agent_id:
            await _revoke(ws, revoking)
            return
        await ws.send_json(event.to_dict())


async def _still_enabled(app: web.Application, agent_id: int) -> bool:
    try:
        async with app[SESSIONS]() as session:
            disabled = await session.scalar(select(Agent.disabled).where(Agent.id == agent_id))
    except Exception:  # the database is away: keep the feed; the next check decides
        return True
    return disabled is False


async def _revoke(ws: web.WebSocketResponse, revoking: asyncio.Event) -> None:
    revoking.set()
    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"agent disabled")
