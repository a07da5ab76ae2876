"""What assignment needs to know about agents: who is online, their load, who idled longest.

Which agent gets a conversation is decided by the core (`carebot.routing.core.pick_agent`);
this module only reads the facts. The load and the last assignment are counted from the
conversations, so assigning writes nothing to the agent's row: inserts that reference an
agent take a key-share lock on it, and fewer writers of agent rows mean fewer lock waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Agent, Conversation
from carebot.routing.decision import AgentFacts


def agent_facts_query(*, online_only: bool) -> Select[Any]:
    """Agents (online and enabled, or all) with their open load and last assignment."""
    load = (
        select(func.count()).select_from(Conversation)
        .where(Conversation.assigned_agent_id == Agent.id, Conversation.status == "assigned")
        .scalar_subquery()
    )
    last = (
        select(func.max(Conversation.assigned_at))
        .where(Conversation.assigned_agent_id == Agent.id)
        .scalar_subquery()
    )
    stmt = select(
        Agent.id, Agent.name, Agent.capacity, Agent.role, Agent.status, Agent.disabled,
        Agent.idle_since, load.label("load"), last.label("last_assigned"),
    ).order_by(Agent.id)
    if online_only:
        stmt = stmt.where(Agent.status == "online", Agent.disabled.is_(False))
    return stmt


async def agent_load(session: AsyncSession, agent_id: int) -> int:
    """Open conversations assigned to the agent right now."""
    n = await session.scalar(
        select(func.count())
        .select_from(Conversation)
        .where(Conversation.assigned_agent_id == agent_id, Conversation.status == "assigned")
    )
    return int(n or 0)


def agent_facts(row: Any) -> AgentFacts:
    """An `agent_facts_query` row as the core sees it."""
    idle = max((t for t in (row.idle_since, row.last_assigned) if t is not None), default=None)
    return AgentFacts(row.id, row.name, row.capacity, int(row.load or 0), row.role, row.status,
                      row.disabled, idle)


def facts_of(rows: Sequence[Any]) -> tuple[AgentFacts, ...]:
    """Every row as `AgentFacts`."""
    return tuple(agent_facts(r) for r in rows)
