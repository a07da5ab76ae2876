"""Agents moving conversations while their customers keep writing: nothing fails, nothing is
lost or stored twice, and no counter drifts from the touchpoints it sums."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import Conversation, Message, Touchpoint
from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from tests.helpers import MESSAGES, bearer, create_app, make_agent

Client = TestClient[Any, Any]


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    return await aiohttp_client(create_app(settings, clock))  # type: ignore[no-any-return]


async def test_transfers_while_customers_write_keep_every_count_exact(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agents = [await make_agent(sessions, f"a{i}", capacity=100, status="online")
              for i in range(3)]
    ids = [a for a, _ in agents]
    statuses: list[int] = []
    sent: list[str] = []

    async def customer(n: int) -> None:
        for i in range(12):
            mid = f"c{n}-{i}"
            resp = await client.post(MESSAGES, json={
                "user_id": f"c{n}", "message_id": mid,
                "text": "/human" if i == 0 else f"still there? {i}"})
            statuses.append(resp.status)
            if resp.status == 200:
                sent.append(mid)

    writing = asyncio.Event()

    async def customers() -> None:
        await asyncio.gather(*(customer(n) for n in range(8)))
        writing.set()

    async def agent(token: str) -> None:
        # At least 25 rounds and for as long as the customers write: on a busy machine the
        # rounds could otherwise all pass before the first customer was assigned.
        rng = random.Random(token)
        rounds = 0
        while rounds < 25 or not writing.is_set():
            rounds += 1
            page = await (await client.get("/api/v1/conversations?status=assigned",
                                           headers=bearer(token))).json()
            for item in page.get("items", [])[:3]:
                target = rng.choice([*ids, None])
                resp = await client.post(f"/api/v1/conversations/{item['id']}/transfer",
                                         json={"agent_id": target}, headers=bearer(token))
                statuses.append(resp.status)
            await asyncio.sleep(0)

    await asyncio.gather(customers(), *(agent(t) for _, t in agents))
    assert not [s for s in statuses if s >= 500]
    async with sessions() as session:
        stored = dict((await session.execute(
            select(Message.external_id, func.count()).where(Message.direction == "in")
            .group_by(Message.external_id))).all())
        drift = list(await session.execute(
            select(Conversation.id, Conversation.effort_score, func.sum(Touchpoint.effort))
            .join(Touchpoint, Touchpoint.conversation_id == Conversation.id)
            .group_by(Conversation.id, Conversation.effort_score)
            .having(func.sum(Touchpoint.effort) != Conversation.effort_score)))
        transfers = await session.scalar(
            select(func.count()).select_from(Touchpoint).where(Touchpoint.kind == "transfer"))
    assert sorted(stored) == sorted(sent) and set(stored.values()) == {1}
    assert drift == []
    assert transfers  # the agents really did move conversations meanwhile
