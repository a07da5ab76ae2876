"""Export and erase one person: everything stored about them comes out; afterwards none of
their texts or identifiers is stored anywhere, and the statistics of past periods read the
same numbers (computed by hand below, before and after).

Timeline (2026-03-02, UTC; agent Alex online):

- A1, Anna (`u-7f3a-anna`, "Anna Schmidt"): 09:00 asks for a person -> Alex at once; 09:02
  Alex replies; 09:03 Anna gives her address; 09:04 Alex adds a note; 09:10 Alex resolves
  (`answered`): CSAT sent through the outbox; 09:11 CSAT 5; 09:12 a comment.
- B1, Ben (`u-9c2e-ben`): 09:30 "where is my order" -> FAQ answer; 09:31 Yes: resolved by
  the bot, CSAT sent inline; 09:32 CSAT 4.
- A2, Anna again on a second id (`u-7f3a-anna-web`): 10:00 a question the bot cannot answer
  -> queued (Alex went away at 09:50); still open when she is erased on 2026-03-05.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from carebot.agents import audit
from carebot.cli import main
from carebot.db.checkpoint import truncate_wal
from carebot.db.models import (
    AuditEntry,
    ChannelReceipt,
    Contact,
    Conversation,
    Customer,
    Message,
    OutboxMessage,
    Touchpoint,
)
from carebot.domain.clock import ManualClock
from carebot.domain.events import Effects
from carebot.routing import erasure
from carebot.routing.policy import Policy
from carebot.settings import Settings
from tests.helpers import Customer as Chat
from tests.helpers import bearer, button_payloads, create_app, make_agent
from tests.privacy_support import stored_anywhere

Client = TestClient[Any, Any]
DAY = "from=2026-03-02&to=2026-03-02&tz=UTC"
ANNA_SAYS = ("my address is 221b Baker Street", "the courier Bob was rude",
             "my parcel to Marylebone never came")
ANNA = ("u-7f3a-anna", "Anna Schmidt", "Hi Anna", "Anna sounds upset", *ANNA_SAYS)
BEN = ("u-9c2e-ben", "Ben Okafor")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


class Person:
    def __init__(self, client: Client, token: str) -> None:
        self.client, self.headers = client, bearer(token)

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        resp = await self.client.request(method, path, json=body, headers=self.headers)
        data = await resp.json()
        assert resp.status == expect, (resp.status, data)
        return data


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    # No outbox worker: agent replies and the agent resolution's survey stay pending.
    app = create_app(replace(settings, run_timers=False, run_worker=False), clock)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def survey_buttons(admin: Person, cid: int) -> list[str]:
    detail = await admin.call("GET", f"/api/v1/conversations/{cid}")
    for message in reversed(detail["messages"]):
        payloads = [b["payload"] for b in message["buttons"]]
        if payloads and payloads[0].startswith("survey:"):
            return payloads
    raise AssertionError("no survey")


async def timeline(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> tuple[Person, Person, dict[str, int]]:
    _, alex_token = await make_agent(sessions, "Alex", "agent")
    _, admin_token = await make_agent(sessions, "Ada", "admin")
    alex, admin = Person(client, alex_token), Person(client, admin_token)
    conv: dict[str, int] = {}
    await alex.call("PUT", "/api/v1/me/availability", {"status": "online"})
    anna = Chat(client, "u-7f3a-anna", "Anna Schmidt")
    clock.now = at(2, 9, 0)
    first = await anna.say("I want to talk to a person")
    conv["a1"] = first["conversation_id"]
    assert first["status"] == "assigned"
    clock.now = at(2, 9, 2)
    await alex.call("POST", f"/api/v1/conversations/{conv['a1']}/reply",
                    {"text": "Hi Anna, what is your address?"}, 201)
    clock.now = at(2, 9, 3)
    await anna.say(ANNA_SAYS[0])
    clock.now = at(2, 9, 4)
    await alex.call("POST", f"/api/v1/conversations/{conv['a1']}/notes",
                    {"text": "Anna sounds upset"}, 201)
    clock.now = at(2, 9, 10)
    await alex.call("POST", f"/api/v1/conversations/{conv['a1']}/resolve", {"code": "answered"})
    clock.now = at(2, 9, 11)
    await anna.press((await survey_buttons(admin, conv["a1"]))[4])  # CSAT 5
    clock.now = at(2, 9, 12)
    await anna.say(ANNA_SAYS[1])  # the comment

    ben = Chat(client, "u-9c2e-ben", "Ben Okafor")
    clock.now = at(2, 9, 30)
    conv["b1"] = (await ben.say("where is my order"))["conversation_id"]
    clock.now = at(2, 9, 31)
    csat = (await ben.press("yes:order-status"))["replies"][-1]
    clock.now = at(2, 9, 32)
    await ben.press(button_payloads(csat)[3])  # CSAT 4

    clock.now = at(2, 9, 50)
    await alex.call("PUT", "/api/v1/me/availability", {"status": "away"})
    anna_web = Chat(client, "u-7f3a-anna-web", "Anna S.")
    clock.now = at(2, 10, 0)
    reply = await anna_web.say(ANNA_SAYS[2])
    conv["a2"] = reply["conversation_id"]
    assert reply["status"] == "queued"
    return alex, admin, conv


def check_hand_computed(summary: dict[str, Any]) -> None:
    """The numbers of 2026-03-02, by hand from the timeline."""
    assert summary["volume"] == {"opened": 3, "resolved": 2, "reopened": 0,
                                 "unique_customers": 3}
    bot = summary["bot"]
    assert (bot["handed_off"], bot["handoff_rate"]) == (2, 0.6667)  # A1 and A2 of 3
    assert (bot["confirmed_resolutions"], bot["contained"], bot["containment_rate"]) == (
        1, 1, 0.5)  # B1 of A1, B1
    assert summary["agents"] == {"resolved": 1}
    human = summary["first_response_ms"]["human"]
    assert (human["count"], human["median"]) == (1, 120_000)  # A1: 09:00 -> 09:02
    resolution = summary["resolution_time_ms"]
    assert (resolution["count"], resolution["median"]) == (2, 330_000)  # 10 min and 1 min
    assert summary["csat"] == {"sent": 2, "answered": 2, "response_rate": 1.0, "satisfied": 2,
                               "satisfied_rate": 1.0, "mean": 4.5}  # 5 and 4


async def reports(admin: Person, client: Client) -> dict[str, Any]:
    out = {name: await admin.call("GET", f"/api/v1/stats/{name}?{DAY}")
           for name in ("summary", "agents", "faqs")}
    out["timeseries"] = await admin.call("GET", f"/api/v1/stats/timeseries?{DAY}&bucket=day")
    resp = await client.get(f"/api/v1/stats/conversations.csv?{DAY}", headers=admin.headers)
    out["csv"] = await resp.text()
    return out


async def test_export_then_erase_leaves_no_trace_and_the_same_statistics(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock,
    settings: Settings,
) -> None:
    alex, admin, conv = await timeline(client, sessions, clock)
    # Read at the moment of the erasure: A2 has waited in the queue since March 2nd, which
    # is an SLA breach of that day by now (a breach is a property of the wait).
    clock.now = at(5, 12, 0)
    before = await reports(admin, client)
    check_hand_computed(before["summary"])

    # Linked as one person, Anna's two customers are exported and erased together.
    a1 = await conv_row(sessions, conv["a1"])
    a2 = await conv_row(sessions, conv["a2"])
    await admin.call("POST", f"/api/v1/customers/{a1.customer_id}/link",
                     {"customer_id": a2.customer_id})
    document = await admin.call("GET", f"/api/v1/customers/{a2.customer_id}/export")
    assert document["format"] == "carebot-customer-export/1"
    assert document["customer_ids"] == sorted([a1.customer_id, a2.customer_id])
    assert {c["external_id"] for c in document["contacts"]} == {"u-7f3a-anna",
                                                                "u-7f3a-anna-web"}
    assert [c["id"] for c in document["conversations"]] == [conv["a1"], conv["a2"]]
    dumped = json.dumps(document, ensure_ascii=False)
    for text in ANNA:
        assert text in dumped, text
    first = document["conversations"][0]
    assert [s["score"] for s in first["surveys"]] == [5]
    assert first["surveys"][0]["comment"] == ANNA_SAYS[1]
    # Inline replies went out in the HTTP responses; the agent's wait for a worker (none here).
    assert {o["status"] for o in first["outbox"]} == {"pending", "sent"}
    assert {t["kind"] for t in first["touchpoints"]} >= {"handoff", "agent_reply", "resolved"}
    assert "Ben" not in dumped

    # Erase: refused without confirmation, by a manager, then done; the second time nothing.
    path = f"/api/v1/customers/{a1.customer_id}/erase"
    await admin.call("POST", path, {}, expect=400)
    await alex.call("POST", path, {"confirm": True}, expect=403)
    report = await admin.call("POST", path, {"confirm": True})
    assert report["customer_ids"] == sorted([a1.customer_id, a2.customer_id])
    assert (report["conversations"], report["closed"], report["contacts"]) == (2, 1, 2)
    assert report["messages"] > 0 and not report["already_erased"]
    again = await admin.call("POST", path, {"confirm": True})
    assert again["already_erased"] and (again["messages"], again["outbox"], again["closed"]) == (
        0, 0, 0)

    # Nothing of Anna's anywhere: no column, not in the file, its WAL, or a dump.
    assert await stored_anywhere(settings.database_url, ANNA) == []
    # Ben's conversation is untouched.
    assert set(await stored_anywhere(settings.database_url, BEN[:1])) >= {
        "contacts.external_id"}
    # The statistics of that day are what they were, number for number.
    after = await reports(admin, client)
    check_hand_computed(after["summary"])
    # The CSV lists each conversation as it is now: A2, open before, shows its closing (on
    # March 5th, outside the period); every other line is the same.
    a2_line = f"{conv['a2']},"
    assert [x for x in after.pop("csv").splitlines() if not x.startswith(a2_line)] == [
        x for x in before.pop("csv").splitlines() if not x.startswith(a2_line)]
    assert after == before

    # The open conversation was closed by the system, with no survey and nothing to send.
    a2 = await conv_row(sessions, conv["a2"])
    assert (a2.status, a2.resolved_by, a2.resolution_code) == ("resolved", "system", "erased")
    assert a2.resolved_at == at(5, 12, 0)
    async with sessions() as session:
        unsent = list(await session.scalars(select(OutboxMessage).where(
            OutboxMessage.conversation_id.in_([conv["a1"], conv["a2"]]))))
        contacts = list(await session.scalars(select(Contact).where(
            Contact.customer_id.in_([a1.customer_id, a2.customer_id]))))
        names = list(await session.scalars(select(Customer.display_name).where(
            Customer.id.in_([a1.customer_id, a2.customer_id]))))
        log = list(await session.scalars(select(AuditEntry.action).where(
            AuditEntry.object_type == "customer").order_by(AuditEntry.id)))
    # What was delivered stays `sent`; what was not (the agent's reply and survey, waiting for
    # a worker) is cancelled; all of it without text or recipient.
    assert {(o.status, o.text, o.recipient, o.last_error) for o in unsent} == {
        ("sent", "", "", None), ("failed", "", "", erasure.CANCELLED)}
    assert all(c.external_id.startswith("erased:") and not c.display_name for c in contacts)
    assert names == ["", ""]
    assert log == ["customer.linked", "customer.exported", "customer.erased", "customer.erased"]

    # The export now holds the anonymous skeleton; the same account writing again is a new,
    # unlinked customer.
    skeleton = await admin.call("GET", f"/api/v1/customers/{a1.customer_id}/export")
    assert [m["text"] for c in skeleton["conversations"] for m in c["messages"]] == [""] * len(
        [m for c in skeleton["conversations"] for m in c["messages"]])
    assert all(c["erased_at"] for c in skeleton["customers"])
    fresh = await Chat(client, "u-7f3a-anna").say("hello?")
    assert fresh["conversation_id"] not in conv.values()
    new = await conv_row(sessions, fresh["conversation_id"])
    assert new.customer_id not in (a1.customer_id, a2.customer_id)


async def conv_row(sessions: async_sessionmaker[AsyncSession], cid: int) -> Conversation:
    async with sessions() as session:
        row = await session.get(Conversation, cid)
        assert row is not None
        return row


async def test_telegram_ids_go_too(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock, settings: Settings,
    engine: AsyncEngine,
) -> None:
    """A Telegram contact's chat id also hides in message ids, edit receipts and edit
    touchpoints; an erasure takes it out of all of them."""
    now = clock()
    async with sessions.begin() as session:
        customer = Customer(display_name="Tomasz Wrobel", created_at=now)
        session.add(customer)
        await session.flush()
        contact = Contact(customer_id=customer.id, channel="telegram", external_id="5550123",
                          display_name="Tomasz W", created_at=now)
        session.add(contact)
        await session.flush()
        c = Conversation(customer_id=customer.id, contact_id=contact.id, channel="telegram",
                         status="resolved", opened_at=now, updated_at=now, resolved_at=now,
                         resolved_by="bot")
        session.add(c)
        await session.flush()
        session.add(Message(conversation_id=c.id, channel="telegram", external_id="5550123:77",
                            direction="in", sender="customer", text="tomasz here",
                            created_at=now))
        session.add(ChannelReceipt(channel="telegram", external_id="5550123:77:edit:1772442000",
                                   created_at=now))
        session.add(ChannelReceipt(channel="telegram", external_id="-100999:5", created_at=now))
        session.add(Touchpoint(conversation_id=c.id, customer_id=customer.id,
                               kind="message_edited", actor="customer", channel="telegram",
                               effort=0, outcome="resolved", created_at=now,
                               details={"message_id": "5550123:77", "text": "tomasz here!"}))
    async with sessions.begin() as session:
        report = await erasure.erase(session, customer.id, now, audit.SYSTEM, Effects(),
                                     Policy.from_settings(settings))
    assert (report.receipts, report.touchpoints, report.messages) == (1, 1, 1)
    # Until the WAL is truncated (the API and the command line do it), SQLite's WAL still has
    # the pages as they were.
    assert await truncate_wal(engine)
    assert await stored_anywhere(settings.database_url, ["5550123", "Tomasz", "tomasz here"]) == []
    async with sessions() as session:
        assert list(await session.scalars(select(ChannelReceipt.external_id))) == ["-100999:5"]
        details = await session.scalar(select(Touchpoint.details))
    assert details is None


async def test_the_command_line_exports_and_erases(
    client: Client, sessions: async_sessionmaker[AsyncSession], settings: Settings,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    monkeypatch.setenv("CAREBOT_DATABASE_URL", settings.database_url)
    cid = (await Chat(client, "u-cli-1", "Cleo").say("my card? no, my parcel 42"))[
        "conversation_id"]
    out = tmp_path / "cleo.json"

    def run(*argv: str) -> int:
        return main(list(argv))

    assert await asyncio.to_thread(run, "customers", "export", "http:u-cli-1", "-o",
                                   str(out)) == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["conversations"][0]["id"] == cid
    assert await asyncio.to_thread(run, "customers", "erase", "http:nobody") == 2
    assert await asyncio.to_thread(run, "customers", "erase", "http:u-cli-1") == 2
    assert "--yes" in capsys.readouterr().err
    customer = document["customer_ids"][0]
    assert await asyncio.to_thread(run, "customers", "erase", str(customer), "--yes") == 0
    assert "erased" in capsys.readouterr().out
    assert await asyncio.to_thread(run, "customers", "erase", str(customer), "--yes") == 0
    assert "erased already" in capsys.readouterr().out
    assert await stored_anywhere(settings.database_url, ["u-cli-1", "Cleo", "parcel 42"]) == []
    async with sessions() as session:
        actors = list(await session.execute(select(AuditEntry.action, AuditEntry.actor_type)
                                            .order_by(AuditEntry.id)))
    assert [tuple(a) for a in actors] == [("customer.exported", "cli"),
                                          ("customer.erased", "cli"),
                                          ("customer.erased", "cli")]
