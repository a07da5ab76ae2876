"""Presence: agents' consoles connecting and beating, loaded and written here, decided by the
core (`carebot.routing.core.console_connected`, `console_gone`).

A console is the live-event WebSocket. Each process keeps the set of agents with a console
connected to it and, every few seconds, writes their heartbeat (`agents.presence_at`) in one
UPDATE; the timers (`carebot.routing.timers.mark_absent`) make an online agent whose
heartbeat is older than the grace period away. Heartbeats are written with the app's clock,
which the timers compare them with.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import case, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db import touchpoints
from carebot.db.models import Agent
from carebot.domain.events import Effects
from carebot.routing import core
from carebot.routing.actions import assign_waiting
from carebot.routing.decision import AgentPresence, StatusChange
from carebot.routing.policy import Policy


def presence_of(agent: Agent) -> AgentPresence:
    """The agent's row as presence sees it."""
    return AgentPresence(agent.id, agent.status, agent.status_auto, agent.disabled,
                         agent.presence_at)


def write_status(
    session: AsyncSession, agent: Agent, change: StatusChange, now: datetime, effects: Effects
) -> None:
    """Apply a status presence gave the agent: the row (`status_auto`), an `availability`
    touchpoint by the system, and the `agent_status` event."""
    agent.status = change.status
    agent.status_auto = True
    if change.status == "online":
        agent.idle_since = now
    touchpoints.record(
        session, None, "availability", actor="system", channel="console", at=now,
        agent_id=agent.id, details={"status": change.status, "auto": True,
                                    "reason": change.reason},
    )
    effects.emit(change.event)


async def console_connected(
    session: AsyncSession, agent_id: int, now: datetime, policy: Policy, effects: Effects
) -> bool:
    """A console of the agent connected: their heartbeat is now, and presence gives back the
    `online` it had taken (then waiting conversations are assigned). Returns whether the
    status changed."""
    return bool(await heartbeat(session, (agent_id,), now, policy, effects))


async def heartbeat(
    session: AsyncSession, agent_ids: Iterable[int], now: datetime, policy: Policy,
    effects: Effects,
) -> int:
    """Write the heartbeat of the agents with a console connected to this process: one
    UPDATE for all of them. An agent presence had made away meanwhile (a heartbeat was
    missed: the database was away) is online again. Returns how many came back online."""
    ids = sorted(set(agent_ids))
    if not ids:
        return 0
    # Their rows are locked in id order (so two processes' heartbeats never wait on each
    # other in a circle); a clock a little behind another process's never moves one back.
    locked = (select(Agent.id).where(Agent.id.in_(ids)).order_by(Agent.id)
              .with_for_update(key_share=True))
    beat = literal(now, Agent.presence_at.type)
    latest = case((Agent.presence_at.is_(None) | (Agent.presence_at < beat), beat),
                  else_=Agent.presence_at)
    rows = (await session.execute(
        update(Agent)
        .where(Agent.id.in_(locked))
        .values(presence_at=latest)
        .returning(Agent.id, Agent.status, Agent.status_auto, Agent.disabled)
        .execution_options(synchronize_session=False)
    )).all()
    # Under the lock taken above, the returned status is the agent's current one.
    back = [change for r in rows if (change := core.console_connected(
        AgentPresence(r.id, r.status, r.status_auto, r.disabled))) is not None]
    for change in back:
        agent = await session.get(Agent, change.agent_id, populate_existing=True)
        assert agent is not None
        write_status(session, agent, change, now, effects)
    if back:
        await session.flush()
        await assign_waiting(session, now, effects, policy)
    return len(back)
