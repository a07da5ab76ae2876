"""Abuse limits for the web chat: sliding-window counters per visitor and per address.

Counted per process, in memory, like the login limits: a visitor's tabs usually reach one
process, and the limits are there to stop a flood, not to bill. The number of keys kept is
bounded; the least recently used are forgotten first.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

MAX_KEYS = 50_000


class SlidingWindow:
    """At most `limit` events per key in any `seconds`-long window."""

    def __init__(self, limit: int, seconds: float = 60.0) -> None:
        self.limit = limit
        self.seconds = seconds
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str, now: float) -> int:
        """Whole seconds until `key` may act again (0: now), without counting anything."""
        times = self._recent(key, now)
        if len(times) < self.limit:
            return 0
        return max(1, math.ceil(times[0] + self.seconds - now))

    def hit(self, key: str, now: float) -> int:
        """Count one event if allowed and return 0; else the seconds to wait (not counted)."""
        wait = self.retry_after(key, now)
        if wait:
            return wait
        times = self._times.get(key)
        if times is None:
            times = self._times[key] = deque()
        times.append(now)
        self._times.move_to_end(key)
        while len(self._times) > MAX_KEYS:
            self._times.popitem(last=False)
        return 0

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._times.get(key)
        if times is None:
            return deque()
        while times and times[0] + self.seconds <= now:
            times.popleft()
        return times
