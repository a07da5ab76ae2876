"""Failed-login counting: too many failures from one address or for one name get 429."""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime, timedelta

WINDOW = timedelta(minutes=15)
# Keys remembered at most; the least recently failed are forgotten first.
MAX_KEYS = 10_000
# An address may be a whole office behind one NAT: it gets this many times a name's allowance.
ADDRESS_FACTOR = 5


class LoginLimiter:
    """Counts failures per key in a sliding window (one per process; see docs/operations.md)."""

    def __init__(self, max_failures: int) -> None:
        """`max_failures` per name (keys "name:…"); addresses ("ip:…") get more."""
        self.max_failures = max_failures
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()

    def retry_after(self, keys: tuple[str, ...], now: datetime) -> int:
        """Seconds until any of these keys may try again (0: now)."""
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            limit = self.max_failures * (ADDRESS_FACTOR if key.startswith("ip:") else 1)
            if len(times) >= limit:
                wait = max(wait, (times[0] + WINDOW - now).total_seconds())
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, keys: tuple[str, ...], now: datetime) -> None:
        """Count one failure against each key."""
        for key in keys:
            times = self._recent(key, now)
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, name_key: str) -> None:
        """A correct password clears its name's count (not the address's)."""
        self._failures.pop(name_key, None)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        times = self._failures.get(key, deque())
        while times and times[0] + WINDOW <= now:
            times.popleft()
        return times
