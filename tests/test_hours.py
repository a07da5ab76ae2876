"""Business hours: the schedule's format, openings, holidays, daylight saving, business time;
and the timers' SLA counted in business time through the service."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import Touchpoint
from carebot.domain.clock import ManualClock
from carebot.domain.hours import BusinessHours, HoursError
from carebot.routing.policy import Policy
from carebot.settings import Settings, SettingsError
from carebot.web.timers import tick
from tests.helpers import Customer, create_app

BERLIN = BusinessHours.parse("mon-fri 09:00-17:00; sat 10:00-14:00", "Europe/Berlin",
                             "2026-04-03")


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def test_the_format() -> None:
    assert BERLIN is not None
    assert BERLIN.describe() == "Mon-Fri 09:00-17:00, Sat 10:00-14:00 (Europe/Berlin)"
    split = BusinessHours.parse("mon,wed 09:00-12:00,13:00-17:00", "UTC")
    assert split is not None and split.describe() == (
        "Mon 09:00-12:00, 13:00-17:00, Wed 09:00-12:00, 13:00-17:00 (UTC)")
    late = BusinessHours.parse("fri 22:00-02:00; sun 00:00-24:00", "UTC")
    assert late is not None and late.week[4] == ((1320, 1440),) and late.week[5] == ((0, 120),)
    assert BusinessHours.parse("  ") is None  # no schedule: always open
    for bad, why in (("mon-fri", "days and times"), ("monday 09:00-17:00", "days are"),
                     ("mon 9-17", "not a time"), ("mon 09:00-09:00", "empty"),
                     ("mon 24:30-25:00", "not a time")):
        with pytest.raises(HoursError, match=why):
            BusinessHours.parse(bad)
    with pytest.raises(HoursError, match="time zone"):
        BusinessHours.parse("mon 09:00-17:00", "Mars/Olympus")
    with pytest.raises(HoursError, match="holiday"):
        BusinessHours.parse("mon 09:00-17:00", "UTC", "next friday")
    with pytest.raises(SettingsError, match="CAREBOT_BUSINESS_HOURS"):
        Policy.from_settings(Settings(business_hours="mon 9-5"))
    with pytest.raises(SettingsError, match="needs CAREBOT_BUSINESS_HOURS"):
        Settings(business_time_stats=True)


def test_open_and_next_open_across_weekend_holiday_and_daylight_saving() -> None:
    assert BERLIN is not None
    # Monday 2 March 2026, 08:30 UTC = 09:30 in Berlin (UTC+1).
    assert BERLIN.is_open(utc(3, 2, 8, 30))
    assert not BERLIN.is_open(utc(3, 2, 16, 0))  # 17:00 Berlin: closed
    # Saturday 14:00 Berlin closes for the weekend: next Monday 09:00 (08:00 UTC).
    sat = utc(3, 7, 12, 30)  # 13:30 Berlin: open
    assert BERLIN.next_open(sat) == sat
    assert BERLIN.next_open(utc(3, 7, 13, 0) + timedelta(hours=1)) == utc(3, 9, 8, 0)
    # Good Friday (3 April) is a holiday: Thursday evening waits for Saturday 10:00, which is
    # 08:00 UTC since the clocks went forward on 29 March (UTC+2).
    assert BERLIN.next_open(utc(4, 2, 16, 0)) == utc(4, 4, 8, 0)
    assert BERLIN.when(utc(4, 4, 8, 0), utc(4, 2, 16, 0)) == "on Saturday at 10:00"
    assert BERLIN.when(utc(3, 3, 8, 0), utc(3, 2, 18, 0)) == "tomorrow at 09:00"
    assert BERLIN.when(utc(3, 2, 8, 0), utc(3, 2, 6, 0)) == "today at 09:00"
    assert BERLIN.when(utc(3, 20, 8, 0), utc(3, 2, 6, 0)) == "on 20 March at 09:00"


def test_business_time() -> None:
    assert BERLIN is not None
    # Friday 16:00 Berlin to Monday 10:00 Berlin: 1 h Friday + 4 h Saturday + 1 h Monday.
    assert BERLIN.business_seconds(utc(3, 6, 15, 0), utc(3, 9, 9, 0)) == 6 * 3600
    # Across the change to summer time (Sunday 29 March): Saturday 28th 13:00 (12:00 UTC)
    # to Monday 30th 09:30 (07:30 UTC): 1 h + 0.5 h, although 43.5 h passed.
    assert BERLIN.business_seconds(utc(3, 28, 12, 0), utc(3, 30, 7, 30)) == 1.5 * 3600
    assert BERLIN.business_seconds(utc(3, 9, 9, 0), utc(3, 9, 8, 0)) == 0


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, clock: ManualClock) -> Any:
    hours = replace(settings, run_timers=False, run_worker=False,
                    business_hours="mon-fri 09:00-17:00", business_timezone="Europe/Berlin",
                    business_time_stats=True)
    return await aiohttp_client(create_app(hours, clock))


async def test_outside_hours_the_customer_waits_and_the_sla_counts_business_time(
    client: TestClient[Any, Any], sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
) -> None:
    clock.now = utc(3, 6, 18, 0)  # Friday 19:00 in Berlin: closed
    reply = await Customer(client, "late-friday").say("/human")
    assert reply["status"] == "queued"
    assert "A person will reply here on Monday at 09:00" in reply["replies"][0]["text"]
    clock.now = utc(3, 9, 8, 4)  # Monday 09:04 Berlin: 4 business minutes, within 5
    assert await tick(client.server.app) == (0, 0)
    clock.now = utc(3, 9, 8, 6)  # 6 business minutes: breached, once
    assert await tick(client.server.app) == (0, 1)
    assert await tick(client.server.app) == (0, 0)
    async with sessions() as session:
        breach = await session.scalar(select(Touchpoint).where(
            Touchpoint.kind == "sla_breached"))
    assert breach is not None and breach.details == {"sla_seconds": 300.0,
                                                     "business_ms": 360_000}
    assert breach.wait_ms == (2 * 24 * 60 + 14 * 60 + 6) * 60_000  # the wall-clock wait
