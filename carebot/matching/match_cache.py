"""A bounded LRU cache of FAQ match results, keyed by the normalised question text.

Support traffic repeats itself ("yes", "thanks", "hi", "where is my order"), and matching a
text costs milliseconds of CPU (more with a heavier model), so each distinct question should be
matched once. The key is `textnorm.normalize(text)`: the matcher only ever sees the normalised
text, so two texts with the same normalisation get the same candidates (tests/test_match_cache.py
checks that a cached answer equals the uncached one; a model that looked at the raw text would
have to key the cache on the raw text instead).

One cache belongs to one matcher snapshot (`FaqIndex` creates a new, empty one with every
rebuild), so a result is never served by a cache of another knowledge base: invalidation is the
same atomic swap that replaces the matcher.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from carebot.matching.faq import Candidate
from carebot.matching.textnorm import normalize

CacheKey = tuple[str, int]  # (normalised text, candidate limit)


def cache_key(text: str, limit: int) -> CacheKey:
    """The key a question's match result is cached under."""
    return normalize(text), limit


@dataclass(frozen=True)
class CacheStats:
    """Lookups since the process started (over every snapshot's cache)."""

    hits: int
    misses: int
    size: int
    capacity: int

    @property
    def hit_rate(self) -> float:
        """Share of lookups answered from the cache (0 before the first lookup)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class MatchCache:
    """LRU map from `CacheKey` to candidates; `capacity` 0 disables it (every lookup misses).

    Safe to use from the event loop and worker threads at once (a lock guards the map; it is
    held for a dictionary operation only, never while matching).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        # (candidates, provisional): a provisional result came from the cheaper lexical-only
        # matcher during a burst and should be replaced by a full one when there is time.
        self._items: OrderedDict[CacheKey, tuple[tuple[Candidate, ...], bool]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: CacheKey) -> list[Candidate] | None:
        """The cached candidates (a fresh list the caller may change), or None."""
        entry = self.entry(key)
        return None if entry is None else entry[0]

    def entry(self, key: CacheKey) -> tuple[list[Candidate], bool] | None:
        """The cached candidates and whether they are provisional, or None."""
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
        return list(found[0]), found[1]

    def put(self, key: CacheKey, candidates: list[Candidate], provisional: bool = False) -> None:
        """Remember a result, evicting the least recently used beyond the capacity."""
        if self.capacity == 0:
            return
        with self._lock:
            # Candidate is frozen: sharing it is safe.
            self._items[key] = (tuple(candidates), provisional)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
