"""Contacts that are one person: linked, their histories show together; unlinked, apart."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.agents import audit
from carebot.db.models import AuditEntry, Conversation
from carebot.domain.clock import ManualClock
from carebot.routing import people
from carebot.settings import Settings
from tests.conftest import START
from tests.helpers import Customer, bearer, create_app, make_agent

Client = TestClient[Any, Any]


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, clock: ManualClock) -> Client:
    app = create_app(replace(settings, run_timers=False, run_worker=False), clock)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def customer_of(sessions: async_sessionmaker[AsyncSession], cid: int) -> int:
    async with sessions() as session:
        conv = await session.get(Conversation, cid)
        assert conv is not None
        return conv.customer_id


async def test_link_shows_one_history_and_unlink_undoes_it(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    _, boss_token = await make_agent(sessions, "Boss", "manager")
    _, alex_token = await make_agent(sessions, "Alex", "agent", status="online")

    async def call(method: str, path: str, body: Any = None, expect: int = 200,
                   token: str = boss_token) -> Any:
        resp = await client.request(method, path, json=body, headers=bearer(token))
        data = await resp.json()
        assert resp.status == expect, (resp.status, data)
        return data

    # The same person on two ids (say Telegram and the web chat), and a third, unrelated one.
    tg = (await Customer(client, "tg-1001", "Mia").say("where is my order"))["conversation_id"]
    clock.advance(minutes=5)
    web = (await Customer(client, "web-77", "Mia M.").say("I want to talk to a person"))[
        "conversation_id"]
    other = (await Customer(client, "web-99", "Noah").say("hello"))["conversation_id"]
    mia_tg, mia_web, noah = [await customer_of(sessions, c) for c in (tg, web, other)]

    # Before: the agent holding the web conversation sees only it.
    detail = await call("GET", f"/api/v1/conversations/{web}", token=alex_token)
    assert detail["other_conversations"] == []
    assert [c["external_id"] for c in detail["customer"]["contacts"]] == ["web-77"]

    found = await call("GET", "/api/v1/customers?channel=http&user_id=web-77")
    assert found["id"] == mia_web and found["customer_ids"] == [mia_web]
    linked = await call("POST", f"/api/v1/customers/{mia_tg}/link", {"customer_id": mia_web})
    assert linked["customer_ids"] == [mia_tg, mia_web] and linked["person_id"] == mia_tg
    assert [c["id"] for c in linked["conversations"]] == [web, tg]  # newest first
    assert {c["external_id"] for c in linked["contacts"]} == {"tg-1001", "web-77"}

    # Linked: the console shows both histories together, from either side.
    detail = await call("GET", f"/api/v1/conversations/{web}", token=alex_token)
    assert [c["id"] for c in detail["other_conversations"]] == [tg]
    assert detail["customer"]["customer_ids"] == [mia_tg, mia_web]
    assert {c["external_id"] for c in detail["customer"]["contacts"]} == {"tg-1001", "web-77"}
    from_web = await call("GET", f"/api/v1/customers/{mia_web}")
    assert from_web["customer_ids"] == [mia_tg, mia_web] and from_web["person_id"] == mia_tg
    person = await call("GET", "/api/v1/customers?channel=http&user_id=web-77")
    assert [c["linked_to"] for c in person["customers"]] == [None, mia_tg]

    # What cannot be done, and by whom.
    await call("POST", f"/api/v1/customers/{mia_web}/link", {"customer_id": mia_tg}, 409)
    await call("POST", f"/api/v1/customers/{mia_tg}/link", {"customer_id": mia_tg}, 409)
    await call("POST", f"/api/v1/customers/{mia_tg}/unlink", None, 409)  # first of the group
    await call("POST", f"/api/v1/customers/{noah}/unlink", None, 409)  # not linked
    await call("POST", f"/api/v1/customers/{mia_tg}/link", {"customer_id": "x"}, 400)
    await call("POST", "/api/v1/customers/999999/link", {"customer_id": noah}, 404)
    await call("GET", "/api/v1/customers/123456789", expect=404)
    await call("GET", "/api/v1/customers?channel=http&user_id=nobody", expect=404)
    await call("POST", f"/api/v1/customers/{mia_tg}/link", {"customer_id": noah}, 403,
               token=alex_token)
    # Alex holds Mia's web chat: the panel of the person (her Telegram side too) is his to read.
    await call("GET", f"/api/v1/customers/{mia_tg}", expect=200, token=alex_token)

    # A third customer joining a group joins the person it belongs to.
    joined = await call("POST", f"/api/v1/customers/{mia_web}/link", {"customer_id": noah})
    assert joined["customer_ids"] == [mia_tg, mia_web, noah]
    await call("POST", f"/api/v1/customers/{noah}/unlink")

    # Unlinked: apart again, exactly as before.
    apart = await call("POST", f"/api/v1/customers/{mia_web}/unlink")
    assert apart["customer_ids"] == [mia_web] and apart["person_id"] == mia_web
    detail = await call("GET", f"/api/v1/conversations/{web}", token=alex_token)
    assert detail["other_conversations"] == []
    async with sessions() as session:
        log = [(e.action, e.object_id, e.details) for e in await session.scalars(
            select(AuditEntry).where(AuditEntry.action.startswith("customer."))
            .order_by(AuditEntry.id))]
    assert log == [
        ("customer.linked", str(mia_web), {"person_id": mia_tg,
                                           "customer_ids": [mia_tg, mia_web]}),
        ("customer.linked", str(noah), {"person_id": mia_tg,
                                        "customer_ids": [mia_tg, mia_web, noah]}),
        ("customer.unlinked", str(noah), {"person_id": mia_tg}),
        ("customer.unlinked", str(mia_web), {"person_id": mia_tg}),
    ]


async def test_linking_two_groups_makes_one(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ids = []
    for user in ("g-1", "g-2", "g-3", "g-4"):
        cid = (await Customer(client, user).say("hi"))["conversation_id"]
        ids.append(await customer_of(sessions, cid))
    a, b, c, d = ids
    async with sessions.begin() as session:
        assert await people.link(session, a, b, audit.SYSTEM, START) == [a, b]
        assert await people.link(session, c, d, audit.SYSTEM, START) == [c, d]
        # {c, d} joins {a, b}: every member points at a.
        assert await people.link(session, b, d, audit.SYSTEM, START) == [a, b, c, d]
        assert await people.unlink(session, c, audit.SYSTEM, START) == [a, b, d]
