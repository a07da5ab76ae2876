"""What agents read in the console: who may read a conversation and a customer, the queue as
a console shows it, and agent assist's FAQ answers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from tests.helpers import Client, Customer, agent, conforms, conv, create_app


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    quiet = replace(settings, run_timers=False, queue_sla_seconds=300.0)
    return await aiohttp_client(create_app(quiet, clock))  # type: ignore[no-any-return]


async def test_a_returning_customers_history_is_readable_by_whoever_holds_them_now(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    amy = await agent(client, sessions, "Amy")
    bob = await agent(client, sessions, "Bob")
    carl = await agent(client, sessions, "Carl")
    await amy.online()
    cust = Customer(client, "ret1", "Rita")
    first = (await cust.say("/human"))["conversation_id"]
    await amy.act(first, "reply", {"text": "Hi Rita, refund is on its way."}, 201)
    await amy.act(first, "resolve", {"code": "answered"})
    survey = (await amy.call("GET", f"/api/v1/conversations/{first}"))["messages"][-1]
    await cust.press(survey["buttons"][4]["payload"])  # CSAT 5
    await amy.call("PUT", "/api/v1/me/availability", {"status": "away"})

    clock.advance(hours=25)  # past the reopen window: a new conversation, with Bob
    await bob.online()
    second = (await cust.say("/human"))["conversation_id"]
    assert second != first and (await conv(sessions, second)).assigned_agent_id == bob.id
    cid = (await conv(sessions, first)).customer_id

    # Bob holds Rita's conversation now: her earlier one and her panel are his to read.
    earlier = await bob.call("GET", f"/api/v1/conversations/{first}")
    assert [m["sender"] for m in earlier["messages"]][:3] == ["customer", "bot", "agent"]
    panel = await bob.call("GET", f"/api/v1/customers/{cid}")
    conforms("Customer", panel)
    assert panel["name"] == "Rita"
    assert [c["id"] for c in panel["conversations"]] == [second, first]
    assert panel["conversations"][1]["resolution_code"] == "answered"
    assert [(s["kind"], s["score"]) for s in panel["surveys"]] == [("csat", 5)]
    assert panel["contacts"] == [{"channel": "http", "external_id": "ret1",
                                  "display_name": "Rita",
                                  "first_seen_at": panel["first_seen_at"]}]
    assert panel["total_effort"] == sum(c["effort_score"] for c in panel["conversations"])
    # ... but reading it never lets him act on it.
    await bob.act(first, "notes", {"text": "seen"}, expect=403)

    # The conversation itself carries the same panel and the other conversations.
    detail = await bob.call("GET", f"/api/v1/conversations/{second}")
    conforms("Conversation", detail)
    conforms("Conversation", earlier)
    assert detail["customer"] == panel
    assert [c["id"] for c in detail["other_conversations"]] == [first]
    assert detail["contact"]["external_id"] == "ret1" and detail["customer_name"] == "Rita"

    # Carl never had anything to do with Rita.
    await carl.call("GET", f"/api/v1/conversations/{first}", expect=403)
    await carl.call("GET", f"/api/v1/conversations/{second}", expect=403)
    await carl.call("GET", f"/api/v1/customers/{cid}", expect=403)

    # Bob passes her to Carl: Bob keeps sight of the conversation he worked on, but no longer
    # holds Rita, so her earlier one is closed to him; Carl now sees both.
    await carl.online()
    await bob.act(second, "transfer", {"agent_id": carl.id})
    await bob.call("GET", f"/api/v1/conversations/{second}")
    await bob.act(second, "notes", {"text": "too late"}, expect=403)
    await bob.call("GET", f"/api/v1/conversations/{first}", expect=403)
    await bob.call("GET", f"/api/v1/customers/{cid}")  # he was involved in one of hers
    await carl.call("GET", f"/api/v1/conversations/{first}")
    await carl.call("GET", f"/api/v1/customers/{cid}")
    # Amy resolved the first one: she keeps reading it and the panel.
    await amy.call("GET", f"/api/v1/conversations/{first}")
    await amy.call("GET", f"/api/v1/customers/{cid}")

    await amy.call("GET", "/api/v1/customers/999999", expect=404)
    await amy.call("GET", "/api/v1/customers/abc", expect=404)


async def test_a_queued_customer_is_readable_by_any_agent_who_could_pick_them_up(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    dan = await agent(client, sessions, "Dan")
    waiting = (await Customer(client, "q-panel", "Quinn").say("/human"))["conversation_id"]
    cid = (await conv(sessions, waiting)).customer_id
    detail = await dan.call("GET", f"/api/v1/conversations/{waiting}")
    assert detail["customer"]["name"] == "Quinn"
    assert (await dan.call("GET", f"/api/v1/customers/{cid}"))["conversations_total"] == 1


async def test_the_queue_shows_the_longest_waiter_first_with_name_preview_wait_and_sla(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    eve = await agent(client, sessions, "Eve")
    ids = []
    for user, name, gap in (("w1", "Wes", 100), ("w2", "Xena", 150), ("w3", "", 10)):
        ids.append((await Customer(client, user, name).say("/human"))["conversation_id"])
        clock.advance(seconds=gap)
    queue = await eve.call("GET", "/api/v1/conversations?status=queued")
    items = queue["items"]
    for item in items:
        conforms("ConversationItem", item)
    assert [c["id"] for c in items] == ids
    assert [c["customer_name"] for c in items] == ["Wes", "Xena", ""]
    assert [c["waiting_seconds"] for c in items] == [260, 160, 10]
    assert [c["sla"]["state"] for c in items] == ["warning", "ok", "ok"]  # SLA 300 s
    assert items[0]["sla"]["breach_at"] == "2026-03-02T09:05:00+00:00"
    assert {c["channel"] for c in items} == {"http"}
    # The preview is what the customer said, not the bot's queue notice after it.
    assert items[0]["preview"] == {"sender": "customer", "text": "/human",
                                   "at": "2026-03-02T09:00:00+00:00"}

    clock.advance(seconds=90)  # waits 350, 250, 100
    items = (await eve.call("GET", "/api/v1/conversations?status=queued"))["items"]
    assert [c["sla"]["state"] for c in items] == ["breached", "warning", "ok"]
    newest = await eve.call("GET", "/api/v1/conversations?status=queued&sort=newest")
    assert [c["id"] for c in newest["items"]] == ids[::-1]
    await eve.call("GET", "/api/v1/conversations?sort=sideways", expect=400)
    await eve.call("GET", "/api/v1/conversations?order=oldest", expect=400)

    # Outside the queue: latest activity first by default, and no waiting time or SLA.
    await eve.online()  # takes the three, oldest first
    mine = (await eve.call("GET", "/api/v1/conversations?status=assigned"))["items"]
    for item in mine:
        conforms("ConversationItem", item)
    assert [c["id"] for c in mine] == ids[::-1]
    assert {(c["waiting_seconds"], c["sla"]) for c in mine} == {(None, None)}
    assert mine[0]["preview"]["text"] == "/human"  # the system's "Eve has joined" is not it
    oldest = await eve.call("GET", "/api/v1/conversations?status=assigned&sort=oldest")
    assert [c["id"] for c in oldest["items"]] == ids


async def test_assist_offers_the_best_faq_answers_for_the_customers_last_question(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    fay = await agent(client, sessions, "Fay")
    gil = await agent(client, sessions, "Gil")
    await fay.online()
    cust = Customer(client, "as1")
    await cust.say("where is my order? it has not arrived")
    cid = (await cust.say("/human"))["conversation_id"]  # a command: passed over
    help_ = await fay.call("GET", f"/api/v1/conversations/{cid}/assist")
    conforms("Assist", help_)
    assert help_["message"]["text"] == "where is my order? it has not arrived"
    answers = help_["items"]
    assert 1 <= len(answers) <= 3
    assert answers[0]["faq_id"] in ("order-status", "delivery-not-received")
    assert answers[0]["answer"] and answers[0]["question"]
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    await gil.call("GET", f"/api/v1/conversations/{cid}/assist", expect=403)
    await fay.call("GET", "/api/v1/conversations/424242/assist", expect=404)

    quiet = (await Customer(client, "as2").say("/human"))["conversation_id"]
    nothing = await fay.call("GET", f"/api/v1/conversations/{quiet}/assist")
    assert (nothing["message"], nothing["items"]) == (None, [])
    conforms("Assist", nothing)
