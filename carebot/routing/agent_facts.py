"""Agents as assignment sees them: who is online, their load, who idled longest.

Which agent gets a conversation is decided by the core (`carebot.routing.core.pick_agent`);
this module turns the rows of `carebot.db.batch_sql.agent_facts_query` into facts. The load
and the last assignment are counted from the conversations, so assigning writes nothing to
the agent's row: inserts that reference an agent take a key-share lock on it, and fewer
writers of agent rows mean fewer lock waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Conversation
from carebot.routing.decision import AgentFacts


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
