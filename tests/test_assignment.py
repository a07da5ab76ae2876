"""Assignment under concurrency: no conversation assigned twice, no agent over capacity."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from carebot.db.engine import make_write_sessionmaker
from carebot.db.models import Agent, Contact, Conversation, Customer, Touchpoint
from carebot.domain.clock import ManualClock
from carebot.domain.events import Effects
from carebot.routing import actions as console
from carebot.routing.actions import assign_waiting
from carebot.routing.policy import Policy
from carebot.settings import Settings
from tests.helpers import make_agent

POLICY = Policy.from_settings(Settings())


async def queue_conversations(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock, n: int
) -> list[int]:
    ids = []
    async with sessions.begin() as session:
        for i in range(n):
            now = clock.advance(seconds=1)
            customer = Customer(display_name=f"c{i}", created_at=now)
            session.add(customer)
            await session.flush()
            contact = Contact(customer_id=customer.id, channel="http", external_id=f"c{i}",
                              display_name="", created_at=now)
            session.add(contact)
            await session.flush()
            conv = Conversation(
                customer_id=customer.id, contact_id=contact.id, channel="http", status="queued",
                opened_at=now, updated_at=now, queued_at=now, failed_bot_turns=0,
                customer_messages=1, bot_answers=0, agent_messages=0, handoffs=1, transfers=0,
                reopen_count=0, effort_score=0,
            )
            session.add(conv)
            await session.flush()
            ids.append(conv.id)
    return ids


async def test_concurrent_assigners_respect_capacity_and_assign_once(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine, clock: ManualClock
) -> None:
    writes = make_write_sessionmaker(engine)
    for name in ("a1", "a2", "a3"):
        await make_agent(sessions, name, capacity=2, status="online")
    await queue_conversations(sessions, clock, 20)

    async def worker() -> int:
        async with writes.begin() as session:
            return await assign_waiting(session, clock(), Effects(), POLICY)

    # Ten "processes" race for the same queue (on SQLite they simply take turns).
    results = await asyncio.gather(*(worker() for _ in range(10)))
    assert sum(results) == 6

    async with sessions() as session:
        loads = dict((await session.execute(
            select(Conversation.assigned_agent_id, func.count())
            .where(Conversation.status == "assigned")
            .group_by(Conversation.assigned_agent_id))).all())
        per_conv = (await session.execute(
            select(Touchpoint.conversation_id, func.count())
            .where(Touchpoint.kind == "assigned")
            .group_by(Touchpoint.conversation_id))).all()
        agents = {a.id for a in await session.scalars(select(Agent))}
    assert set(loads) == agents and all(n == 2 for n in loads.values())
    assert len(per_conv) == 6 and all(n == 1 for _, n in per_conv)


async def test_two_agents_claiming_the_same_conversation(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine, clock: ManualClock
) -> None:
    writes = make_write_sessionmaker(engine)
    ids = [await make_agent(sessions, n, status="away") for n in ("p", "q")]
    [cid] = await queue_conversations(sessions, clock, 1)

    async def claim(agent_id: int) -> str:
        async with sessions() as s:
            agent = await s.get(Agent, agent_id)
        assert agent is not None
        try:
            async with writes.begin() as session:
                await console.claim(session, agent, cid, clock(), Effects(), POLICY)
            return "won"
        except console.ConsoleError as exc:
            assert exc.status == 409
            return "lost"

    outcomes = await asyncio.gather(*(claim(agent_id) for agent_id, _ in ids))
    assert sorted(outcomes) == ["lost", "won"]
    async with sessions() as session:
        n = await session.scalar(select(func.count()).select_from(Touchpoint)
                                 .where(Touchpoint.kind == "assigned"))
    assert n == 1
