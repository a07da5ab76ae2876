"""The period a statistic covers: parsing `from`/`to`/`tz`, local-day and local-week buckets.

Time zones are resolved here, in Python, from the IANA database (`zoneinfo`): the period's
ends become UTC instants, and the UTC offsets in force during the period become a short list of
segments (one per daylight-saving change) that the SQL side uses to turn stored UTC timestamps
into local dates. SQLite and PostgreSQL therefore bucket with the same rules.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_DAYS = 30
MAX_DAYS = 5 * 366
UNITS = ("day", "week")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class StatsInputError(ValueError):
    """A period, time zone or filter that cannot be used; the message says what to send."""


@dataclass(frozen=True)
class Period:
    """[start, end) as UTC instants, and the time zone local days are counted in."""

    start: datetime
    end: datetime
    tz: ZoneInfo

    @property
    def tz_name(self) -> str:
        """The IANA name of the time zone."""
        return self.tz.key

    def local(self, moment: datetime) -> datetime:
        """The instant in the period's time zone."""
        return moment.astimezone(self.tz)


@dataclass(frozen=True)
class Bucket:
    """One local day or week of a time series; `label` is its first local date (ISO)."""

    label: str
    start: datetime
    end: datetime


def parse_tz(raw: str | None) -> ZoneInfo:
    """An IANA time zone such as `Europe/Berlin` (default UTC)."""
    name = (raw or "UTC").strip()
    if not name or len(name) > 64 or ".." in name or name.startswith("/"):
        raise StatsInputError(f"unknown time zone {raw!r}; use an IANA name like Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise StatsInputError(
            f"unknown time zone {raw!r}; use an IANA name like Europe/Berlin"
        ) from None


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which the local day begins."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _parse_bound(raw: str, name: str, tz: ZoneInfo, *, end: bool) -> datetime:
    try:
        moment = _bound(raw.strip(), name, tz, end=end)
    except OverflowError:  # e.g. 9999-12-31 plus its day, or an offset at year 1
        moment = datetime.min.replace(tzinfo=UTC)
    if not EARLIEST <= moment < LATEST:
        raise StatsInputError(
            f"'{name}' must be between {EARLIEST.year} and {LATEST.year - 1}, got {raw!r}")
    return moment


# The range statistics can be asked for; beyond it the local-day arithmetic overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _bound(raw: str, name: str, tz: ZoneInfo, *, end: bool) -> datetime:
    if _DATE.match(raw):
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise StatsInputError(f"'{name}' is not a valid date: {raw!r}") from None
        # A date `to` includes that whole local day.
        return local_midnight(day + timedelta(days=1) if end else day, tz)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise StatsInputError(
            f"'{name}' must be a date (YYYY-MM-DD) or an ISO 8601 date-time, got {raw!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)  # a wall-clock time in the requested zone
    return moment.astimezone(UTC)


def parse_period(
    from_raw: str | None,
    to_raw: str | None,
    tz_raw: str | None,
    now: datetime,
    *,
    default_days: int = DEFAULT_DAYS,
) -> Period:
    """The period for `from`/`to`/`tz` query values.

    A date means a whole local day in `tz` (`to` inclusive); a date-time is an instant (`to`
    exclusive; without an offset it is read in `tz`). Without `to` the period ends with the
    current local day; without `from` it starts `default_days` local days earlier.
    """
    tz = parse_tz(tz_raw)
    end = (
        _parse_bound(to_raw, "to", tz, end=True)
        if to_raw
        else local_midnight(now.astimezone(tz).date() + timedelta(days=1), tz)
    )
    start = (
        _parse_bound(from_raw, "from", tz, end=False)
        if from_raw
        else local_midnight(end.astimezone(tz).date() - timedelta(days=default_days), tz)
    )
    if start >= end:
        raise StatsInputError("'from' must be before 'to'")
    if end - start > timedelta(days=MAX_DAYS):
        raise StatsInputError(f"the period may span at most {MAX_DAYS} days")
    return Period(start, end, tz)


def _bucket_start(moment: datetime, tz: ZoneInfo, unit: str) -> date:
    day = moment.astimezone(tz).date()
    return day - timedelta(days=day.weekday()) if unit == "week" else day


def buckets(period: Period, unit: str) -> list[Bucket]:
    """The local days or weeks (Monday first) the period touches, clipped to the period."""
    if unit not in UNITS:
        raise StatsInputError(f"'bucket' must be one of {', '.join(UNITS)}")
    step = timedelta(days=7 if unit == "week" else 1)
    first = _bucket_start(period.start, period.tz, unit)
    out: list[Bucket] = []
    day = first
    while True:
        start = local_midnight(day, period.tz)
        if start >= period.end:
            return out
        end = local_midnight(day + step, period.tz)
        out.append(Bucket(day.isoformat(), max(start, period.start), min(end, period.end)))
        day += step


@functools.lru_cache(maxsize=256)
def offset_segments(period: Period) -> tuple[tuple[datetime, int], ...]:
    """The UTC offsets (seconds) in force during the period: ((from_instant, offset), ...).

    The first segment starts at the period's start; each later one at a daylight-saving
    change. Found by probing hourly and narrowing each change down to the second; remembered
    per period, since a page's requests ask for the same few periods many times (probing a
    month takes a few milliseconds).
    """

    def offset(at: datetime) -> int:
        delta = at.astimezone(period.tz).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    segments = [(period.start, offset(period.start))]
    probe = period.start
    while probe < period.end:
        nxt = min(probe + timedelta(hours=1), period.end)
        if offset(nxt) != segments[-1][1]:
            lo, hi = probe, nxt  # offset(lo) is the current one, offset(hi) the new one
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if offset(mid) == segments[-1][1]:
                    lo = mid
                else:
                    hi = mid
            segments.append((hi.replace(microsecond=0), offset(nxt)))
        probe = nxt
    return tuple(segments)


# --- the dashboard's periods and buckets -----------------------------------------------------

MAX_HOURLY_DAYS = 31  # hourly buckets for at most this long a period (744 buckets)
AUTO_HOURLY = timedelta(days=2)  # `bucket=auto`: hours up to this length, days beyond


def is_whole_days(period: Period) -> bool:
    """Both ends of the period are local midnights (a period given as dates)."""
    return all(
        (local := period.local(moment)).time() == time(0) and local_midnight(
            local.date(), period.tz) == moment
        for moment in (period.start, period.end)
    )


def previous_period(period: Period) -> Period:
    """The period of equal length just before `period`.

    Whole local days give the same number of local days before them (so a week after a
    daylight-saving change is compared with the week before, not with an hour-shifted one);
    any other period, the same duration before its start.
    """
    if is_whole_days(period):
        days = (period.local(period.end).date() - period.local(period.start).date()).days
        start_day = period.local(period.start).date() - timedelta(days=days)
        return Period(local_midnight(start_day, period.tz), period.start, period.tz)
    return Period(period.start - (period.end - period.start), period.start, period.tz)


def pick_unit(period: Period, requested: str) -> str:
    """`auto`: hours for a period of at most two days, days beyond; or the unit asked for
    (`hour` only for periods of at most MAX_HOURLY_DAYS)."""
    if requested not in ("auto", "hour", *UNITS):
        raise StatsInputError("'bucket' must be one of auto, hour, day, week")
    if requested == "auto":
        return "hour" if period.end - period.start <= AUTO_HOURLY else "day"
    if requested == "hour" and period.end - period.start > timedelta(days=MAX_HOURLY_DAYS):
        raise StatsInputError(
            f"'bucket=hour' is for periods of at most {MAX_HOURLY_DAYS} days; use day or week")
    return requested


def hour_label(moment: datetime, tz: ZoneInfo) -> str:
    """The local hour an instant falls in, with its UTC offset: `2026-03-03T09:00+01:00`."""
    local = moment.astimezone(tz)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%dT%H}:00{offset[:3]}:{offset[3:]}"


def hour_buckets(period: Period) -> list[Bucket]:
    """The local hours the period touches, clipped to it; `label` is `hour_label`.

    Each starts where the local clock read HH:00, found by going back the minutes and
    seconds the clock showed past the hour (exact across offset changes).
    """
    out: list[Bucket] = []
    local = period.local(period.start)
    start = period.start - timedelta(minutes=local.minute, seconds=local.second,
                                     microseconds=local.microsecond)
    while start < period.end:
        probe = start + timedelta(hours=1)
        past = probe.astimezone(period.tz)
        end = probe - timedelta(minutes=past.minute, seconds=past.second,
                                microseconds=past.microsecond)
        if end <= start:  # an offset change of less than an hour: keep moving forward
            end = probe
        out.append(Bucket(hour_label(start, period.tz), max(start, period.start),
                          min(end, period.end)))
        start = end
    return out


def slots(period: Period, unit: str) -> list[Bucket]:
    """The buckets of a unit (hour, day or week) the period touches."""
    return hour_buckets(period) if unit == "hour" else buckets(period, unit)
