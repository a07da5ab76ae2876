"""Resolution statistics on a fixed-clock scenario built only through the public paths.

The scenario (customers on the HTTP channel, agents through the console API, survey buttons,
timer ticks) is below in `build_scenario`; every expected number in the tests is computed by
hand from that timeline, with the arithmetic in a comment next to it. It runs on SQLite and,
when CAREBOT_TEST_DATABASE_URL is set, on PostgreSQL.

The period is 2026-03-03 .. 2026-03-04 in Europe/Berlin (UTC+1 in March), that is
[2026-03-02 23:00Z, 2026-03-04 23:00Z). All times in the timeline are UTC.
"""

from __future__ import annotations

import asyncio
import copy
import csv
import io
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from carebot.cli import main
from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from carebot.web.timers import tick
from tests.helpers import Customer, bearer, button_payloads, create_app, make_agent
from tests.snapshots import Snapshot, built_once

Client = TestClient[Any, Any]
PERIOD = "from=2026-03-03&to=2026-03-04&tz=Europe/Berlin"
MIN = 60_000  # milliseconds in a minute


class Person:
    """An agent or manager using the console API with their token."""

    def __init__(self, client: Client, agent_id: int, token: str) -> None:
        self.client = client
        self.id = agent_id
        self.headers = bearer(token)

    def on(self, client: Client) -> Person:
        """The same person on another client (another service on a copy of the database)."""
        moved = copy.copy(self)
        moved.client = client
        return moved

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        resp = await self.client.request(method, path, json=body, headers=self.headers)
        data = await resp.json()
        assert resp.status == expect, (resp.status, data)
        return data

    async def status(self, status: str) -> None:
        await self.call("PUT", "/api/v1/me/availability", {"status": status})

    async def act(self, cid: int, action: str, body: Any = None, expect: int = 200) -> Any:
        return await self.call("POST", f"/api/v1/conversations/{cid}/{action}", body, expect)

    async def stats(self, endpoint: str, query: str = PERIOD, expect: int = 200) -> Any:
        return await self.call("GET", f"/api/v1/stats/{endpoint}?{query}", expect=expect)


@dataclass
class Scenario:
    """The conversation ids of the timeline and the people in it."""

    client: Client
    alice: Person
    bob: Person
    boss: Person
    conv: dict[str, int]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A UTC instant in March 2026."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


async def survey_buttons(boss: Person, cid: int) -> list[str]:
    """The buttons of the last survey question sent in the conversation (as the customer's
    messenger shows them; agent resolutions send it through the outbox)."""
    detail = await boss.call("GET", f"/api/v1/conversations/{cid}")
    for message in reversed(detail["messages"]):
        payloads = [b["payload"] for b in message["buttons"]]
        if payloads and payloads[0].startswith("survey:"):
            return payloads
    raise AssertionError(f"no survey in conversation {cid}")


async def build_scenario(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> Scenario:
    """The timeline. CSAT then CES (1-7) after every surveyed resolution, no comment step;
    bot timeout 30 min, queue SLA 300 s, reopen window 24 h (the defaults)."""
    app = client.server.app
    people = []
    for name, role in (("alice", "agent"), ("bob", "agent"), ("boss", "manager")):
        agent_id, token = await make_agent(sessions, name, role)
        people.append(Person(client, agent_id, token))
    alice, bob, boss = people
    conv: dict[str, int] = {}

    def to(moment: datetime) -> None:
        assert moment >= clock.now, moment
        clock.now = moment

    # C0 zoe — entirely before the period: bot answer, Yes, CSAT 1. Must count nowhere.
    zoe = Customer(client, "zoe")
    to(at(2, 9, 0))
    conv["zoe"] = (await zoe.say("where is my order"))["conversation_id"]
    to(at(2, 9, 1))
    csat = (await zoe.press("yes:order-status"))["replies"][-1]
    to(at(2, 9, 2))
    await zoe.press(button_payloads(csat)[0])  # CSAT 1; the CES that follows stays unanswered

    # C1 anna — opened before the period (22:30Z = 23:30 Berlin on Mar 2), resolved inside it
    # (23:30Z = 00:30 Berlin on Mar 3): a conversation spanning the period's start.
    anna = Customer(client, "anna")
    to(at(2, 22, 0))
    await alice.status("online")
    to(at(2, 22, 30))
    conv["anna"] = (await anna.say("/human"))["conversation_id"]  # handoff -> alice at once
    to(at(2, 22, 32))
    await alice.act(conv["anna"], "reply", {"text": "Hi Anna"}, 201)
    to(at(2, 23, 30))
    await alice.act(conv["anna"], "resolve", {"code": "answered"})  # CSAT sent 23:30
    to(at(2, 23, 31))
    ces = (await anna.press((await survey_buttons(boss, conv["anna"]))[4]))["replies"][0]  # 5
    to(at(2, 23, 32))
    await anna.press(button_payloads(ces)[5])  # CES 6

    # C2 ben — confirmed bot resolution, CSAT 4, CES unanswered.
    ben = Customer(client, "ben")
    to(at(3, 8, 0))
    conv["ben"] = (await ben.say("where is my order"))["conversation_id"]
    to(at(3, 8, 1))
    csat = (await ben.press("yes:order-status"))["replies"][-1]
    to(at(3, 8, 2))
    await ben.press(button_payloads(csat)[3])  # CSAT 4

    # C3 cara — answered, then silent: resolved by the timer as `timeout` (assumed).
    cara = Customer(client, "cara")
    to(at(3, 8, 10))
    conv["cara"] = (await cara.say("how do I reset my password"))["conversation_id"]
    to(at(3, 8, 41))
    assert await tick(app) == (1, 0)

    # C4 dan — no match, nobody online: queued 09:00, SLA breach at 09:06, bob comes online
    # 09:08 (waited 8 min), replies 09:10, transfers straight to alice 09:15 (no queue stay),
    # alice replies 09:20 and resolves 09:45. His CSAT is never answered.
    await alice.status("away")
    dan = Customer(client, "dan")
    to(at(3, 9, 0))
    reply = await dan.say("My blender exploded while making soup")
    conv["dan"] = reply["conversation_id"]
    assert reply["status"] == "queued"
    to(at(3, 9, 6))
    assert await tick(app) == (0, 1)
    to(at(3, 9, 8))
    await bob.status("online")
    to(at(3, 9, 10))
    await bob.act(conv["dan"], "reply", {"text": "Oh no"}, 201)
    to(at(3, 9, 14))
    await alice.status("online")  # a transfer goes to an online agent only
    to(at(3, 9, 15))
    await bob.act(conv["dan"], "transfer", {"agent_id": alice.id})
    to(at(3, 9, 20))
    await alice.act(conv["dan"], "reply", {"text": "Refund on its way"}, 201)
    to(at(3, 9, 45))
    await alice.act(conv["dan"], "resolve", {"code": "refund_issued"})
    await alice.status("away")

    # C5 eve — bot resolution (Yes) at 10:01, then "/human" at 10:30 reopens it and hands it to
    # bob, who replies 10:35 and resolves 10:50 (no second survey: the first is still open).
    # She then answers the first survey: CSAT 2; CES unanswered.
    eve = Customer(client, "eve")
    to(at(3, 10, 0))
    conv["eve"] = (await eve.say("where is my order"))["conversation_id"]
    to(at(3, 10, 1))
    csat = (await eve.press("yes:order-status"))["replies"][-1]
    to(at(3, 10, 30))
    assert (await eve.say("/human"))["status"] == "assigned"
    to(at(3, 10, 35))
    await bob.act(conv["eve"], "reply", {"text": "Let me look"}, 201)
    to(at(3, 10, 50))
    await bob.act(conv["eve"], "resolve", {"code": "answered"})
    to(at(3, 10, 52))
    await eve.press(button_payloads(csat)[1])  # CSAT 2

    # C6 finn — confirmed bot resolution, typed CSAT "5", CES 3. He comes back on Mar 4 (C7).
    finn = Customer(client, "finn")
    to(at(3, 11, 0))
    conv["finn"] = (await finn.say("where is my order"))["conversation_id"]
    to(at(3, 11, 1))
    await finn.press("yes:order-status")
    to(at(3, 11, 2))
    ces = (await finn.say("5"))["replies"][0]
    to(at(3, 11, 3))
    await finn.press(button_payloads(ces)[2])  # CES 3

    # C8 gina — 23:30Z on Mar 3 is 00:30 on Mar 4 in Berlin. The answer does not help (No):
    # handoff to bob 23:31, who hands back to the bot 23:40; she stays silent: timeout 00:11.
    gina = Customer(client, "gina")
    to(at(3, 23, 30))
    conv["gina"] = (await gina.say("how do I reset my password"))["conversation_id"]
    to(at(3, 23, 31))
    assert (await gina.press("no:password-reset"))["status"] == "assigned"
    to(at(3, 23, 40))
    await bob.act(conv["gina"], "handback")
    to(at(4, 0, 11))
    assert await tick(app) == (1, 0)

    # C9 hank and C10 ivan — nobody online: suggestions, then a question the bot cannot
    # match, queued; both breach the SLA at the 16:40 tick and are still waiting at the end.
    to(at(4, 15, 0))
    await bob.status("offline")
    hank = Customer(client, "hank")
    to(at(4, 16, 0))
    vague = await hank.say("about my customer account")
    conv["hank"] = vague["conversation_id"]
    assert button_payloads(vague["replies"][-1])[0].startswith("faq:")  # a suggestion
    to(at(4, 16, 5))
    assert (await hank.say("my parrot sings opera all night"))["status"] == "queued"
    ivan = Customer(client, "ivan")
    to(at(4, 16, 10))
    reply = await ivan.say("blender exploded while I made soup")
    conv["ivan"] = reply["conversation_id"]
    assert reply["status"] == "queued"
    to(at(4, 16, 40))
    assert await tick(app) == (0, 2)

    # C7 finn again — 35 h after his last resolution (past the 24 h reopen window): a new
    # conversation at 22:30Z (23:30 Berlin, Mar 4), answered, then silent: timeout at 00:00Z
    # on Mar 5 — opened inside the period, resolved after it.
    to(at(4, 22, 30))
    conv["finn2"] = (await finn.say("where is my order"))["conversation_id"]
    assert conv["finn2"] != conv["finn"]
    to(at(5, 0, 0))
    assert await tick(app) == (1, 0)
    return Scenario(client, alice, bob, boss, conv)


async def start_client(aiohttp_client: Any, settings: Settings, clock: ManualClock) -> Client:
    # Routing thresholds with a wide suggestion band: the scenario tests the statistics, and
    # must not hinge on where the matcher's calibration puts a vague question this month.
    app = create_app(
        replace(settings, run_timers=False, survey_ces=True, survey_comment=False,
                answer_threshold=0.6, suggest_threshold=0.2),
        clock,
    )
    return await aiohttp_client(app)  # type: ignore[no-any-return]


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    return await start_client(aiohttp_client, settings, clock)


@pytest.fixture(scope="module")
def built() -> dict[str, tuple[Snapshot, Scenario, datetime]]:
    """Per kind of database: the database the scenario left, its people and ids, its clock."""
    return {}


@pytest.fixture
async def scenario(
    built: dict[str, tuple[Snapshot, Scenario, datetime]], aiohttp_client: Any,
    settings: Settings, clock: ManualClock, engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> Scenario:
    """The scenario on a fresh database: built through the public paths by the module's first
    test on each kind of database; every later test starts a new service on a copy of the
    database that build left (the build takes most of a test's time)."""

    async def build() -> Scenario:
        return await build_scenario(await start_client(aiohttp_client, settings, clock),
                                    sessions, clock)

    first, fresh = await built_once(built, engine, sessions, clock, build)
    if fresh:
        return first
    client = await start_client(aiohttp_client, settings, clock)
    return Scenario(client, first.alice.on(client), first.bob.on(client),
                    first.boss.on(client), dict(first.conv))


def dist(count: int, total: int, mean: float | None, median: float | None,
         p90: float | None) -> dict[str, Any]:
    return {"count": count, "total": total, "mean": mean, "median": median, "p90": p90}


async def test_summary_hand_computed(scenario: Scenario) -> None:
    s = await scenario.boss.stats("summary")
    assert s["period"] == {"from": "2026-03-03T00:00:00+01:00",
                           "to": "2026-03-05T00:00:00+01:00", "tz": "Europe/Berlin",
                           "filters": {}}
    # Opened in the period: ben, cara, dan, eve, finn, gina, hank, ivan, finn again = 9
    # (zoe and anna opened on Mar 2 local). Customers: finn twice -> 8.
    # Resolved in the period: anna (00:30 local Mar 3), ben, cara, dan, eve, finn, gina = 7
    # (finn's second resolved on Mar 5, hank and ivan still queued).
    # Reopened: eve's, once.
    assert s["volume"] == {"opened": 9, "resolved": 7, "reopened": 1, "unique_customers": 8}
    assert s["bot"] == {
        # The bot answered or suggested in all but dan's and ivan's: 7/9.
        "involved": 7, "involvement_rate": 0.7778,
        # FAQ answers in ben, cara, eve, finn, gina, finn again (hank only got suggestions): 6/9.
        "answered_by_faq": 6, "answered_by_faq_rate": 0.6667,
        # Handed off: dan, eve, gina, hank, ivan: 5/9.
        "handed_off": 5, "handoff_rate": 0.5556,
        # Handoffs in the period: dan, hank, ivan no match; gina said No; eve asked for one.
        # (anna's was on Mar 2.)
        "handoffs_by_reason": {"no_match": 3, "not_helpful": 1, "requested": 1},
        # Of the 7 resolved: Yes from ben and finn (eve's Yes was undone by the reopen, an
        # agent resolved it last); assumed: cara (answered, then silent). gina's timeout is
        # not one: her last step was bob's handback, not an answer.
        "confirmed_resolutions": 2, "assumed_resolutions": 1,
        # Resolved by the bot, confirmed or assumed: ben, finn, cara: 3/7.
        "contained": 3, "containment_rate": 0.4286,
        # Timeouts without any answer: none (cara and gina had one).
        "abandoned": 0, "abandonment_rate": 0.0,
    }
    assert s["agents"] == {"resolved": 3}  # anna's, dan's and eve's
    # Bot first responses (opened cohort): 7, each the service's own time from the message's
    # arrival to the end of the transaction writing the reply (the fixed clock does not
    # move, so only the count and their being real durations can be checked here).
    bot = s["first_response_ms"]["bot"]
    assert bot["count"] == 7 and bot["total"] > 0 and bot["median"] > 0
    # Human first responses, handoff -> first agent reply (opened cohort): dan 09:00 -> 09:10 =
    # 600,000; eve 10:30 (her handoff, not her first message at 10:00) -> 10:35 = 300,000.
    # gina got no reply; anna's 120,000 belongs to Mar 2. Sorted [300k, 600k]:
    # median 450,000; p90 = 300k + 0.9 * 300k = 570,000; mean 450,000.
    assert s["first_response_ms"]["human"] == dist(2, 900_000, 450_000.0, 450_000.0, 570_000.0)
    # Resolution times (resolved cohort): anna 60 min, ben 1, cara 0 (a timeout ends when
    # she went silent: her question and its answer at 08:10, not the timer at 08:41), dan 45,
    # eve 50 (from her first message, through the reopen), finn 1, gina 1 (her "No" at 23:31
    # is her last message; the timer fired at 00:11) -> sorted minutes
    # [0, 1, 1, 1, 45, 50, 60]; total 158 min = 9,480,000; mean 9,480,000 / 7 =
    # 1,354,285.7; median 1 min = 60,000; p90 at rank 0.9 * 6 = 5.4 -> 50 + 0.4 * 10 =
    # 54 min = 3,240,000.
    assert s["resolution_time_ms"] == dist(7, 9_480_000, 1_354_285.7, 60_000.0, 3_240_000.0)
    # Handle time, summed over assignments (resolved cohort): anna alice 22:30-23:30 = 60 min;
    # dan bob 09:08-09:15 (7) + alice 09:15-09:45 (30) = 37 min; eve bob 10:30-10:50 = 20 min;
    # gina bob 23:31-23:40 (handback) = 9 min. Sorted [9, 20, 37, 60] min: total 126 min =
    # 7,560,000; mean 1,890,000; median (20 + 37) / 2 = 28.5 min = 1,710,000; p90 at rank 2.7
    # -> 37 + 0.7 * 23 = 53.1 min = 3,186,000.
    assert s["handle_time_ms"] == dist(4, 7_560_000, 1_890_000.0, 1_710_000.0, 3_186_000.0)
    # Queue waits of assignments from the queue in the period: dan -> bob 8 min (480,000),
    # eve -> bob 0, gina -> bob 0. dan's transfer to alice never sat in the queue and is not
    # a wait. [0, 0, 480k]: mean 160,000; median 0; p90 at rank 1.8 -> 0.8 * 480k = 384,000.
    assert s["queue_wait_ms"] == dist(3, 480_000, 160_000.0, 0.0, 384_000.0)
    # FCR: of the 7 resolved, eve's was reopened and finn came back on Mar 4 (within 7 days):
    # 5/7.
    assert s["first_contact_resolution"] == {"count": 5, "rate": 0.7143,
                                             "repeat_window_days": 7.0}
    assert s["reopen"] == {"resolved_after_reopen": 1, "rate": 0.1429}  # eve's: 1/7
    assert s["transfers"] == {"total": 1, "per_conversation": 0.1429}  # dan's: 1/7
    # Effort (resolved cohort): anna 3 (message 1 + handoff 2), ben 2 (two messages), cara 1,
    # dan 6 (1 + handoff 2 + transfer 3), eve 8 (1 + 1 + reopen 3 + 1 + handoff 2), finn 2,
    # gina 4 (1 + 1 + handoff 2) = 26; 26/7 = 3.7143. Survey answers cost nothing.
    assert s["effort"] == {"total": 26, "per_conversation": 3.7143}
    # CSAT sent in the period: anna (23:30Z Mar 2 = Mar 3 local) 5, ben 4, dan -, eve 2,
    # finn 5 (zoe's was sent on Mar 2): 4 of 5 answered; 3 of 4 at 4-5; mean 16/4.
    assert s["csat"] == {"sent": 5, "answered": 4, "response_rate": 0.8, "satisfied": 3,
                         "satisfied_rate": 0.75, "mean": 4.0}
    # CES sent in the period: anna 6, ben -, eve -, finn 3: 2 of 4; 1 of 2 at 5-7; mean 4.5.
    assert s["ces"] == {"sent": 4, "answered": 2, "response_rate": 0.5, "easy": 1,
                        "easy_rate": 0.5, "mean": 4.5}
    # SLA breaches recorded in the period: dan 09:06, hank and ivan 16:40.
    assert s["sla"] == {"breaches": 3, "sla_seconds": 300.0}


async def test_filters_select_conversations(scenario: Scenario) -> None:
    boss = scenario.boss
    # Everything here is on the HTTP channel.
    assert await boss.stats("summary", f"{PERIOD}&channel=http") == {
        **(await boss.stats("summary")),
        "period": {**(await boss.stats("summary"))["period"], "filters": {"channel": "http"}},
    }
    telegram = await boss.stats("summary", f"{PERIOD}&channel=telegram")
    assert telegram["volume"] == {"opened": 0, "resolved": 0, "reopened": 0,
                                  "unique_customers": 0}
    # Bob is the assigned agent (kept after resolution) only of eve's conversation: dan's ended
    # with alice, gina's was handed back (no agent), hank's and ivan's never got one.
    bob = await boss.stats("summary", f"{PERIOD}&agent={scenario.bob.id}")
    assert (bob["volume"]["opened"], bob["volume"]["resolved"]) == (1, 1)
    assert bob["handle_time_ms"]["total"] == 20 * MIN  # bob's 10:30-10:50
    assert (bob["csat"]["sent"], bob["csat"]["mean"]) == (1, 2.0)  # eve's CSAT 2
    # password-reset was answered to cara and gina; its tags include "password".
    for query in ("faq=password-reset", "tag=password"):
        pw = await boss.stats("summary", f"{PERIOD}&{query}")
        assert pw["volume"] == {"opened": 2, "resolved": 2, "reopened": 0,
                                "unique_customers": 2}
        # Both timed out; cara's is assumed (and contained), gina's ended after a handback.
        assert (pw["bot"]["assumed_resolutions"], pw["bot"]["contained"]) == (1, 1)
    nothing = await boss.stats("summary", f"{PERIOD}&tag=no-such-tag")
    assert nothing["volume"]["opened"] == 0


async def test_timeseries_by_local_day_and_week(scenario: Scenario) -> None:
    days = (await scenario.boss.stats("timeseries", f"{PERIOD}&bucket=day"))["series"]
    assert [(d["bucket"], d["from"], d["to"]) for d in days] == [
        ("2026-03-03", "2026-03-03T00:00:00+01:00", "2026-03-04T00:00:00+01:00"),
        ("2026-03-04", "2026-03-04T00:00:00+01:00", "2026-03-05T00:00:00+01:00"),
    ]
    mar3, mar4 = days
    # Mar 3 local: opened ben, cara, dan, eve, finn (gina's 23:30Z is already Mar 4 local);
    # handed off dan, eve; bot involved ben, cara, eve, finn.
    assert (mar3["opened"], mar3["handed_off"], mar3["handoff_rate"], mar3["bot_involved"]) == (
        5, 2, 0.4, 4)
    # Resolved anna (00:30 local), ben, cara, dan, eve, finn: 6; Yes: ben, finn; timeout:
    # cara; no handoff: ben, cara, finn (3/6); FCR: anna, ben, cara, dan (4/6).
    assert (mar3["resolved"], mar3["confirmed_resolutions"], mar3["assumed_resolutions"],
            mar3["contained"], mar3["containment_rate"], mar3["fcr"], mar3["fcr_rate"]) == (
        6, 2, 1, 3, 0.5, 4, 0.6667)
    assert (mar3["reopened"], mar3["sla_breaches"]) == (1, 1)
    assert mar3["csat"] == {"sent": 5, "answered": 4, "response_rate": 0.8, "satisfied": 3,
                            "satisfied_rate": 0.75, "mean": 4.0}
    # Human first responses dan 600k, eve 300k -> median 450k. Resolution times in minutes
    # [0, 1, 1, 45, 50, 60] (cara's timeout ends at her answer) -> median (1 + 45) / 2 =
    # 23 min = 1,380,000. The bot's are measured durations: only their being there is fixed.
    assert mar3["median_first_response_ms"]["human"] == 450_000.0
    assert mar3["median_first_response_ms"]["bot"] > 0
    assert mar3["median_resolution_time_ms"] == 1_380_000.0
    # Mar 4 local: opened gina, hank, ivan, finn again; handed off gina, hank, ivan; bot
    # involved gina, hank, finn. Resolved: gina (timeout after a handback: neither assumed
    # nor contained; FCR).
    assert (mar4["opened"], mar4["handed_off"], mar4["handoff_rate"], mar4["bot_involved"]) == (
        4, 3, 0.75, 3)
    assert (mar4["resolved"], mar4["confirmed_resolutions"], mar4["assumed_resolutions"],
            mar4["contained"], mar4["containment_rate"], mar4["fcr"], mar4["fcr_rate"]) == (
        1, 0, 0, 0, 0.0, 1, 1.0)
    assert (mar4["reopened"], mar4["sla_breaches"]) == (0, 2)
    assert mar4["csat"] == {"sent": 0, "answered": 0, "response_rate": None, "satisfied": 0,
                            "satisfied_rate": None, "mean": None}
    assert mar4["median_first_response_ms"]["human"] is None
    assert mar4["median_first_response_ms"]["bot"] > 0
    assert mar4["median_resolution_time_ms"] == 1 * MIN  # gina's: 23:30 -> her "No" 23:31

    # Both days are in the week of Monday Mar 2; the bucket is clipped to the period.
    [week] = (await scenario.boss.stats("timeseries", f"{PERIOD}&bucket=week"))["series"]
    assert (week["bucket"], week["from"], week["to"]) == (
        "2026-03-02", "2026-03-03T00:00:00+01:00", "2026-03-05T00:00:00+01:00")
    assert (week["opened"], week["resolved"], week["fcr"], week["sla_breaches"]) == (9, 7, 5, 3)

    # In UTC, anna's resolution (23:30Z Mar 2) falls before the period (Mar 3 resolves ben,
    # cara, dan, eve, finn: 5) and gina's conversation (opened 23:30Z Mar 3) on Mar 3 (opened
    # ben, cara, dan, eve, finn, gina: 6); Mar 4 opens hank, ivan, finn again and resolves
    # gina (00:11Z).
    utc = (await scenario.boss.stats(
        "timeseries", "from=2026-03-03&to=2026-03-04&tz=UTC"))["series"]
    assert [(d["opened"], d["resolved"]) for d in utc] == [(6, 5), (3, 1)]


async def test_per_agent(scenario: Scenario) -> None:
    items = (await scenario.boss.stats("agents"))["items"]
    assert [(i["name"], i["agent_id"]) for i in items] == [
        ("alice", scenario.alice.id), ("bob", scenario.bob.id)]
    alice, bob = items
    # alice: resolved anna's and dan's. Her first replies: only anna's, opened on Mar 2.
    # Handle: anna 60 min, dan 30 min -> [30, 60] min; median 45 min; p90 30 + 0.9 * 30 =
    # 57 min. CSAT snapshots her on anna's (5) and dan's (unanswered).
    assert alice["resolved"] == 2
    assert alice["first_response_ms"] == dist(0, 0, None, None, None)
    assert alice["handle_time_ms"] == dist(2, 90 * MIN, 45 * MIN, 45 * MIN, 57 * MIN)
    assert alice["csat"] == {"sent": 2, "answered": 1, "response_rate": 0.5, "satisfied": 1,
                             "satisfied_rate": 1.0, "mean": 5.0}
    # bob: resolved eve's. First replies in dan's and eve's, each from bob's own assignment:
    # dan's 09:08 -> 09:10 = 120k, eve's 10:30 -> 10:35 = 300k -> total 420k, mean and
    # median 210k, p90 120k + 0.9 * 180k = 282k. Handle: dan 7 min,
    # gina 9, eve 20 -> [7, 9, 20] min: total 36; mean 12; median 9; p90 9 + 0.8 * 11 =
    # 17.8 min. Eve's CSAT snapshots the bot (her survey was sent on the Yes), so none.
    assert bob["resolved"] == 1
    assert bob["first_response_ms"] == dist(2, 420_000, 210_000.0, 210_000.0, 282_000.0)
    assert bob["handle_time_ms"] == dist(3, 36 * MIN, 12 * MIN, 9 * MIN, 17.8 * MIN)
    assert bob["csat"]["sent"] == 0
    # The agents' handle times add up to the summary's.
    assert alice["handle_time_ms"]["total"] + bob["handle_time_ms"]["total"] == 126 * MIN


async def test_per_faq(scenario: Scenario) -> None:
    items = (await scenario.boss.stats("faqs"))["items"]
    assert [i["faq_id"] for i in items] == ["order-status", "password-reset"]
    order, password = items
    # order-status answered to ben, eve, finn and finn again (zoe's was on Mar 2); Yes from
    # ben, eve, finn; each time the bot's next step was a resolution, never a handoff.
    # CSAT after it: ben 4, eve 2, finn 5 -> 2 of 3 satisfied, mean 11/3.
    assert {k: order[k] for k in ("answered", "helpful", "not_helpful", "followed_by_handoff",
                                  "helpful_rate", "handoff_rate")} == {
        "answered": 4, "helpful": 3, "not_helpful": 0, "followed_by_handoff": 0,
        "helpful_rate": 1.0, "handoff_rate": 0.0}
    assert order["csat_after"] == {"sent": 3, "answered": 3, "response_rate": 1.0,
                                   "satisfied": 2, "satisfied_rate": 0.6667, "mean": 3.6667}
    assert order["tags"] == ["orders", "tracking"]
    # password-reset answered to cara and gina; gina said No and was handed off (a weak
    # answer); cara timed out (no feedback).
    assert {k: password[k] for k in ("answered", "helpful", "not_helpful", "followed_by_handoff",
                                     "helpful_rate", "handoff_rate")} == {
        "answered": 2, "helpful": 0, "not_helpful": 1, "followed_by_handoff": 1,
        "helpful_rate": 0.0, "handoff_rate": 0.5}
    assert password["csat_after"]["sent"] == 0


async def test_knowledge_gaps(scenario: Scenario) -> None:
    gaps = await scenario.boss.stats("knowledge-gaps")
    # No-match handoffs in the period: dan's and ivan's blender (similar wording, 88 by
    # token_set_ratio) and hank's parrot. The larger group first; within it the newest wording
    # (ivan's) is the representative.
    assert gaps["questions"] == 3 and not gaps["truncated"]
    assert [(c["question"], c["count"], c["examples"], c["last_seen"], c["reasons"])
            for c in gaps["clusters"]] == [
        ("blender exploded while i made soup", 2,
         ["blender exploded while I made soup", "My blender exploded while making soup"],
         "2026-03-04T17:10:00+01:00", {"no_match": 2}),
        ("my parrot sings opera all night", 1, ["my parrot sings opera all night"],
         "2026-03-04T17:05:00+01:00", {"no_match": 1}),
    ]
    # Demanding identical wording splits the blender group.
    strict = await scenario.boss.stats("knowledge-gaps", f"{PERIOD}&similarity=100")
    assert [c["count"] for c in strict["clusters"]] == [1, 1, 1]


async def test_conversations_csv(scenario: Scenario) -> None:
    resp = await scenario.client.get(f"/api/v1/stats/conversations.csv?{PERIOD}",
                                     headers=scenario.boss.headers)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "conversations_2026-03-03_2026-03-05.csv" in resp.headers["Content-Disposition"]
    rows = {int(r["conversation_id"]): r
            for r in csv.DictReader(io.StringIO(await resp.text()))}
    c = scenario.conv
    # Opened or resolved in the period: everyone's but zoe's.
    assert set(rows) == set(c.values()) - {c["zoe"]}
    dan = rows[c["dan"]]
    assert {k: dan[k] for k in (
        "opened_at", "resolved_at", "opened_in_period", "resolved_in_period", "resolved_by",
        "resolution_code", "assigned_agent_id", "first_agent_id", "handoffs", "transfers",
        "effort_score", "first_human_response_ms", "resolution_time_ms", "handle_time_ms",
        "queue_wait_ms", "queue_stays", "sla_breaches", "fcr", "contained",
        "csat_surveys_sent", "csat_score", "faq_ids",
    )} == {
        "opened_at": "2026-03-03T10:00:00+01:00", "resolved_at": "2026-03-03T10:45:00+01:00",
        "opened_in_period": "1", "resolved_in_period": "1", "resolved_by": "agent",
        "resolution_code": "refund_issued", "assigned_agent_id": str(scenario.alice.id),
        "first_agent_id": str(scenario.bob.id), "handoffs": "1", "transfers": "1",
        "effort_score": "6", "first_human_response_ms": "600000",
        "resolution_time_ms": str(45 * MIN), "handle_time_ms": str(37 * MIN),
        "queue_wait_ms": "480000", "queue_stays": "1", "sla_breaches": "1", "fcr": "1",
        "contained": "0", "csat_surveys_sent": "1", "csat_score": "", "faq_ids": "",
    }
    anna, finn2 = rows[c["anna"]], rows[c["finn2"]]
    assert (anna["opened_in_period"], anna["resolved_in_period"], anna["csat_score"],
            anna["ces_score"]) == ("0", "1", "5", "6")
    assert (finn2["opened_in_period"], finn2["resolved_in_period"], finn2["bot_resolution"],
            finn2["resolved_at"], finn2["faq_ids"]) == (
        "1", "0", "assumed", "2026-03-05T01:00:00+01:00", "order-status")
    hank = rows[c["hank"]]
    assert (hank["status"], hank["resolved_at"], hank["contained"], hank["fcr"],
            hank["bot_involved"], hank["answered_by_faq"]) == ("queued", "", "", "", "1", "0")
    # The summary can be recomputed from the file.
    resolved = [r for r in rows.values() if r["resolved_in_period"] == "1"]
    assert len(resolved) == 7
    assert sum(int(r["effort_score"]) for r in resolved) == 26
    assert sum(r["fcr"] == "1" for r in resolved) == 5
    assert sum(int(r["handle_time_ms"] or 0) for r in resolved) == 126 * MIN


async def test_csv_pages_join_up(
    scenario: Scenario, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from carebot.stats.csv_export import export_csv
    from carebot.stats.period import parse_period
    from carebot.stats.scope import StatsQuery

    query = StatsQuery(parse_period("2026-03-03", "2026-03-04", "Europe/Berlin", at(5, 0)))
    whole = "".join([chunk async for chunk in export_csv(sessions, query)])
    paged = [chunk async for chunk in export_csv(sessions, query, page_size=3)]
    assert len(paged) == 1 + 4  # header, then 10 rows in pages of 3
    assert "".join(paged) == whole


async def test_empty_period(scenario: Scenario) -> None:
    s = await scenario.boss.stats("summary", "from=2026-02-01&to=2026-02-07&tz=Europe/Berlin")
    assert s["volume"] == {"opened": 0, "resolved": 0, "reopened": 0, "unique_customers": 0}
    assert s["bot"]["handoff_rate"] is None and s["bot"]["containment_rate"] is None
    assert s["resolution_time_ms"] == dist(0, 0, None, None, None)
    assert s["csat"]["response_rate"] is None and s["csat"]["mean"] is None
    days = (await scenario.boss.stats(
        "timeseries", "from=2026-02-01&to=2026-02-07&tz=Europe/Berlin"))["series"]
    assert len(days) == 7 and all(d["opened"] == 0 for d in days)
    assert (await scenario.boss.stats("agents", "from=2026-02-01&to=2026-02-07"))["items"] == []
    assert (await scenario.boss.stats("faqs", "from=2026-02-01&to=2026-02-07"))["items"] == []
    gaps = await scenario.boss.stats("knowledge-gaps", "from=2026-02-01&to=2026-02-07")
    assert gaps["clusters"] == []
    resp = await scenario.client.get(
        "/api/v1/stats/conversations.csv?from=2026-02-01&to=2026-02-07",
        headers=scenario.boss.headers,
    )
    assert (await resp.text()).count("\r\n") == 1  # the header only


STATS = ["summary", "timeseries", "agents", "faqs", "knowledge-gaps", "conversations.csv"]


@pytest.mark.parametrize("endpoint", STATS)
async def test_stats_are_for_managers_and_admins(
    client: Client, sessions: async_sessionmaker[AsyncSession], endpoint: str
) -> None:
    for role, expected in (("agent", 403), ("manager", 200), ("admin", 200)):
        _id, token = await make_agent(sessions, f"{role}-x", role)
        resp = await client.get(f"/api/v1/stats/{endpoint}", headers=bearer(token))
        assert resp.status == expected, (role, await resp.text())
    resp = await client.get(f"/api/v1/stats/{endpoint}")
    assert resp.status == 401
    assert "error" in await resp.json()


@pytest.mark.parametrize("query", [
    "from=2026-13-01", "from=yesterday", "to=2026-02-30", "tz=Mars/Olympus", "tz=../etc",
    "from=2026-03-05&to=2026-03-01", "from=2020-01-01&to=2026-01-01", "agent=abc", "agent=0",
    "bucket=month", "similarity=10", "limit=0", "frm=2026-03-01", "channel=" + "x" * 101,
])
async def test_bad_query_parameters_are_400(
    client: Client, sessions: async_sessionmaker[AsyncSession], query: str
) -> None:
    _id, token = await make_agent(sessions, "chief", "manager")
    endpoint = ("timeseries" if "bucket" in query
                else "knowledge-gaps" if "similarity" in query or "limit" in query
                else "summary")
    for path in (endpoint, "conversations.csv") if endpoint == "summary" else (endpoint,):
        resp = await client.get(f"/api/v1/stats/{path}?{query}", headers=bearer(token))
        body = await resp.json()
        assert resp.status == 400, (path, query, body)
        assert body["error"]["message"]


async def test_cli_prints_the_summary(
    scenario: Scenario, database_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
    args = ["stats", "--from", "2026-03-03", "--to", "2026-03-04", "--tz", "Europe/Berlin"]
    assert await asyncio.to_thread(main, args) == 0
    out = capsys.readouterr().out
    assert "2026-03-03T00:00:00+01:00 .. 2026-03-05T00:00:00+01:00 (Europe/Berlin)" in out
    lines = {line.split("  ")[0].strip(): line for line in out.splitlines()}
    assert lines["conversations opened"].split()[-1] == "9"
    assert lines["conversations resolved"].split()[-1] == "7"
    assert "71.4%" in lines["first contact resolution"]  # 5/7
    assert "75.0%" in lines["CSAT satisfied (4-5)"]  # 3/4
    assert await asyncio.to_thread(main, ["stats", "--tz", "Nowhere/Else"]) == 2
