"""Time source, injectable so tests and stats scenarios can run on a fixed clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move forward by a timedelta given as keyword arguments (seconds=…, minutes=…)."""
        self.now = self.now + timedelta(**delta)
        return self.now


def ms_between(start: datetime | None, end: datetime) -> int | None:
    """Whole milliseconds from start to end, or None without a start."""
    if start is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))
