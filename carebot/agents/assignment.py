"""Queue and capacity-aware assignment of handed-off conversations to agents.

Race-free on PostgreSQL: the conversation row and the chosen agent's row are locked
(FOR UPDATE SKIP LOCKED) and the agent's load is re-counted after the lock, so two processes
never assign one conversation twice or push an agent over capacity. SQLite runs one writer.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Subquery

from carebot.db.models import Agent, Conversation
from carebot.domain.clock import ms_between
from carebot.domain.events import Effects, Event
from carebot.routing import touchpoints


def _load_subquery() -> Subquery:
    return (
        select(Conversation.assigned_agent_id.label("agent_id"), func.count().label("n"))
        .where(Conversation.status == "assigned")
        .group_by(Conversation.assigned_agent_id)
        .subquery()
    )


async def agent_load(session: AsyncSession, agent_id: int) -> int:
    """Open conversations assigned to the agent right now."""
    n = await session.scalar(
        select(func.count())
        .select_from(Conversation)
        .where(Conversation.assigned_agent_id == agent_id, Conversation.status == "assigned")
    )
    return int(n or 0)


async def pick_agent(session: AsyncSession, exclude: set[int] | None = None) -> Agent | None:
    """Lock and return an online agent with free capacity: least loaded, then longest idle."""
    exclude = set(exclude or ())
    load = _load_subquery()
    n = func.coalesce(load.c.n, 0)
    for _ in range(5):
        stmt = (
            select(Agent)
            .outerjoin(load, load.c.agent_id == Agent.id)
            .where(Agent.status == "online", Agent.disabled.is_(False), n < Agent.capacity)
            .order_by(n, Agent.idle_since.asc().nulls_first(), Agent.id)
            .limit(1)
            .with_for_update(of=Agent, skip_locked=True)
        )
        if exclude:
            stmt = stmt.where(Agent.id.not_in(exclude))
        agent = await session.scalar(stmt)
        if agent is None:
            return None
        # The load above may predate a commit by another process; count again under the lock.
        if await agent_load(session, agent.id) < agent.capacity:
            return agent
        exclude.add(agent.id)
    return None


def assign(
    session: AsyncSession,
    conv: Conversation,
    agent: Agent,
    now: datetime,
    effects: Effects,
    *,
    actor: str = "system",
    actor_agent_id: int | None = None,
) -> None:
    """Give the conversation to the agent and tell them."""
    waited = ms_between(conv.queued_at, now)
    conv.status = "assigned"
    conv.assigned_agent_id = agent.id
    conv.assigned_at = now
    conv.updated_at = now
    agent.idle_since = now
    touchpoints.record(
        session, conv, "assigned", actor=actor, channel=conv.channel, at=now,
        agent_id=agent.id, wait_ms=waited,
        details={"by_agent_id": actor_agent_id} if actor_agent_id else None,
    )
    effects.emit(
        Event("assigned", conv.id, agent_ids=(agent.id,), data={"agent_id": agent.id})
    )


async def queue_position(session: AsyncSession, conv: Conversation) -> int:
    """1-based position of a queued conversation (oldest first)."""
    ahead = await session.scalar(
        select(func.count())
        .select_from(Conversation)
        .where(
            Conversation.status == "queued",
            (Conversation.queued_at < conv.queued_at)
            | ((Conversation.queued_at == conv.queued_at) & (Conversation.id < conv.id)),
        )
    )
    return int(ahead or 0) + 1


async def assign_waiting(session: AsyncSession, now: datetime, effects: Effects) -> int:
    """Assign queued conversations, oldest first, while agents have free capacity."""
    assigned = 0
    while True:
        conv = await session.scalar(
            select(Conversation)
            .where(Conversation.status == "queued")
            .order_by(Conversation.queued_at, Conversation.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if conv is None:
            return assigned
        agent = await pick_agent(session)
        if agent is None:
            return assigned
        assign(session, conv, agent, now, effects)
        await session.flush()
        assigned += 1
