"""Business hours: a weekly schedule in a time zone, with holidays; pure, no I/O.

`CAREBOT_BUSINESS_HOURS` is written like `mon-fri 09:00-17:00; sat 10:00-14:00`: items
separated by `;`, each a set of days (`mon-fri`, `sat`, `mon,wed,fri`) and one or more time
ranges (`09:00-12:00,13:00-17:00`). `24:00` ends a day; a range that ends before it starts runs
past midnight (`fri 22:00-02:00` is Friday 22:00 to Saturday 02:00). Times are local to
`CAREBOT_BUSINESS_TIMEZONE` (an IANA name; daylight saving is followed) and
`CAREBOT_BUSINESS_HOLIDAYS` lists closed dates (`2026-12-24,2026-12-25`).

The decision core asks three things: is the team here now (`is_open`), when is it next
(`next_open`, said to a customer who waits outside hours), and how much business time lies
between two instants (`business_seconds`, for SLA timers and first response times when
`CAREBOT_BUSINESS_TIME_STATS` is on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MINUTES_A_DAY = 24 * 60
# Searching for the next opening or summing business time walks day by day; a schedule with
# no opening for this long is treated as never open.
HORIZON_DAYS = 400
_TIME = re.compile(r"([01]?\d|2[0-4]):([0-5]\d)")

Interval = tuple[int, int]  # minutes after local midnight, start < end <= 1440


class HoursError(ValueError):
    """A schedule, time zone or holiday list that cannot be read; the message says why."""


@dataclass(frozen=True)
class BusinessHours:
    """When the team is there: intervals per weekday (Monday first), a zone, holidays."""

    zone: ZoneInfo
    week: tuple[tuple[Interval, ...], ...]
    holidays: frozenset[date] = frozenset()

    @classmethod
    def parse(cls, spec: str, zone: str = "UTC", holidays: str = "") -> BusinessHours | None:
        """The schedule a setting describes; None for an empty one (always open)."""
        if not spec.strip():
            return None
        try:
            tz = ZoneInfo(zone.strip() or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            raise HoursError(f"unknown time zone {zone!r}; use an IANA name like "
                             "Europe/Berlin") from None
        week: list[list[Interval]] = [[] for _ in DAYS]
        for item in filter(None, (part.strip() for part in spec.split(";"))):
            days_text, _, ranges_text = item.partition(" ")
            if not ranges_text.strip():
                raise HoursError(f"{item!r}: give days and times, e.g. 'mon-fri 09:00-17:00'")
            days = _days(days_text)
            for r in ranges_text.replace(" ", "").split(","):
                start, end = _range(r)
                for d in days:
                    if end > start:
                        week[d].append((start, end))
                    else:  # past midnight
                        if start < MINUTES_A_DAY:
                            week[d].append((start, MINUTES_A_DAY))
                        if end > 0:
                            week[(d + 1) % 7].append((0, end))
        if not any(week):
            raise HoursError(f"{spec!r} opens at no time of the week")
        return cls(tz, tuple(_merged(w) for w in week), _holidays(holidays))

    # --- questions -------------------------------------------------------------------------

    def is_open(self, at: datetime) -> bool:
        """Whether `at` falls in business hours."""
        local = at.astimezone(self.zone)
        for day in (local.date() - timedelta(days=1), local.date()):
            for start, end in self._intervals(day):
                if start <= at < end:
                    return True
        return False

    def next_open(self, at: datetime) -> datetime | None:
        """`at` if open then, else the next opening (None: not within a year)."""
        first = at.astimezone(self.zone).date() - timedelta(days=1)
        for n in range(HORIZON_DAYS):
            for start, end in self._intervals(first + timedelta(days=n)):
                if end > at:
                    return max(start, at)
        return None

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """Seconds of business hours in [start, end)."""
        if end <= start:
            return 0.0
        total = 0.0
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        last = end.astimezone(self.zone).date()
        if (last - day).days > 10 * HORIZON_DAYS:
            raise HoursError("business time over more than ten years is not counted")
        while day <= last:
            for a, b in self._intervals(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return total

    def _intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's open intervals as UTC instants (none on a holiday)."""
        if day in self.holidays:
            return []
        out = []
        for a, b in self.week[day.weekday()]:
            out.append((self._instant(day, a), self._instant(day, b)))
        return out

    def _instant(self, day: date, minutes: int) -> datetime:
        if minutes >= MINUTES_A_DAY:
            day, minutes = day + timedelta(days=1), minutes - MINUTES_A_DAY
        local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=self.zone)
        return local.astimezone(UTC)

    # --- words -----------------------------------------------------------------------------

    def describe(self) -> str:
        """The schedule for people: `Mon-Fri 09:00-17:00, Sat 10:00-14:00 (Europe/Berlin)`."""
        parts: list[str] = []
        d = 0
        while d < 7:
            if not self.week[d]:
                d += 1
                continue
            e = d
            while e + 1 < 7 and self.week[e + 1] == self.week[d]:
                e += 1
            days = DAY_NAMES[d][:3] if d == e else f"{DAY_NAMES[d][:3]}-{DAY_NAMES[e][:3]}"
            ranges = ", ".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in self.week[d])
            parts.append(f"{days} {ranges}")
            d = e + 1
        return f"{', '.join(parts)} ({self.zone.key})"

    def when(self, moment: datetime, now: datetime) -> str:
        """`moment` said relative to `now` in the schedule's zone: `today at 09:00`,
        `tomorrow at 09:00`, `on Monday at 09:00`, `on 12 March at 09:00`."""
        local, today = moment.astimezone(self.zone), now.astimezone(self.zone).date()
        clock = local.strftime("%H:%M")
        days = (local.date() - today).days
        if days <= 0:
            return f"today at {clock}"
        if days == 1:
            return f"tomorrow at {clock}"
        if days < 7:
            return f"on {DAY_NAMES[local.weekday()]} at {clock}"
        return f"on {local.day} {local.strftime('%B')} at {clock}"


def _days(text: str) -> list[int]:
    out: list[int] = []
    for part in text.lower().split(","):
        first, sep, last = part.strip().partition("-")
        if first not in DAYS or (sep and last not in DAYS):
            raise HoursError(f"{text!r}: days are mon, tue, wed, thu, fri, sat, sun, ranges "
                             "like mon-fri, lists like mon,wed")
        a, b = DAYS.index(first), DAYS.index(last) if sep else DAYS.index(first)
        out += [(a + i) % 7 for i in range(((b - a) % 7) + 1)]
    return out


def _range(text: str) -> Interval:
    start, sep, end = text.partition("-")
    if not sep:
        raise HoursError(f"{text!r}: a time range is like 09:00-17:00")
    a, b = _minutes(start), _minutes(end)
    if a == b or a >= MINUTES_A_DAY:
        raise HoursError(f"{text!r}: a range must not be empty or start at 24:00")
    return a, b


def _minutes(text: str) -> int:
    m = _TIME.fullmatch(text.strip())
    if m is None or (m.group(1) == "24" and m.group(2) != "00"):
        raise HoursError(f"{text!r} is not a time like 09:00 (00:00 to 24:00)")
    return int(m.group(1)) * 60 + int(m.group(2))


def _merged(intervals: list[Interval]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


def _holidays(text: str) -> frozenset[date]:
    out = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.add(date.fromisoformat(part))
        except ValueError:
            raise HoursError(f"holiday {part!r} is not a date like 2026-12-25") from None
    return frozenset(out)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
