"""The FAQ index the app holds: an immutable matcher snapshot, rebuilt off the event loop,
with a cache of match results that lives and dies with the snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from carebot.matching.faq import Candidate, FaqDoc
from carebot.matching.match_cache import CacheKey, CacheStats, MatchCache, cache_key
from carebot.matching.matcher import Matcher, build_matcher

MatcherBuilder = Callable[[Sequence[FaqDoc]], Matcher]


@dataclass(frozen=True)
class _Snapshot:
    matcher: Matcher | None
    docs_by_id: Mapping[str, FaqDoc] = field(default_factory=lambda: MappingProxyType({}))
    version: int = 0
    # Results of this matcher only: a rebuild brings a new, empty cache in the same swap.
    cache: MatchCache = field(default_factory=lambda: MatchCache(0))


class FaqIndex:
    """Async holder of the current matcher and the entries it was built from.

    Readers always see one consistent snapshot (matcher, docs, version and match cache are
    swapped together in a single assignment). Match results are cached per snapshot
    (`cache_size` distinct normalised questions; 0 turns caching off), so a rebuild invalidates
    them. Concurrent `rebuild` calls serialize and coalesce: a call that finds a newer request
    waiting builds only the newest entries, and every caller returns once the index reflects
    its entries or newer ones.
    """

    def __init__(
        self,
        build: MatcherBuilder = build_matcher,
        cache_size: int = 4096,
        embedding_queue: int = 1,
    ) -> None:
        self._build = build
        self._cache_size = cache_size
        # Questions allowed to wait for the sentence encoder at once (see `match_many`).
        self._embedding_queue = embedding_queue
        self._embedding = 0  # questions being matched with embeddings right now
        self._snapshot = _Snapshot(matcher=None, cache=MatchCache(cache_size))
        self._hits = 0
        self._misses = 0
        self._lock = asyncio.Lock()
        self._requested = 0  # sequence number of the newest rebuild request
        self._built = 0  # sequence number of the request the current snapshot reflects
        self._latest_docs: tuple[FaqDoc, ...] = ()

    @property
    def version(self) -> int:
        """Incremented by every rebuild that swapped in a new matcher (0: never built)."""
        return self._snapshot.version

    @property
    def docs_by_id(self) -> Mapping[str, FaqDoc]:
        """The entries of the current snapshot, by id (read-only)."""
        return self._snapshot.docs_by_id

    @property
    def matcher(self) -> Matcher | None:
        """The current matcher, or None before the first rebuild."""
        return self._snapshot.matcher

    def __len__(self) -> int:
        return len(self._snapshot.docs_by_id)

    async def rebuild(self, docs: Sequence[FaqDoc]) -> None:
        """Build a matcher for `docs` in a worker thread and swap it in atomically.

        Raises what the builder raises (e.g. ValueError on duplicate ids); the previous
        snapshot then stays in place.
        """
        self._requested += 1
        mine = self._requested
        self._latest_docs = tuple(docs)
        async with self._lock:
            if self._built >= mine:
                return  # a later request was built while this one waited
            seq, target = self._requested, self._latest_docs
            matcher = await asyncio.to_thread(self._build, target)
            by_id = MappingProxyType({d.id: d for d in target})
            self._snapshot = _Snapshot(
                matcher=matcher, docs_by_id=by_id, version=self._snapshot.version + 1,
                cache=MatchCache(self._cache_size),
            )
            self._built = seq

    def cache_stats(self) -> CacheStats:
        """Match cache lookups since start (all snapshots) and the current cache's size."""
        cache = self._snapshot.cache
        return CacheStats(self._hits, self._misses, len(cache), cache.capacity)

    async def match(self, text: str, limit: int = 3) -> list[Candidate]:
        """Rank entries for `text` (cached, else in a worker thread); [] before the first
        rebuild."""
        return (await self.match_many([text], limit))[0]

    async def match_many(self, texts: Sequence[str], limit: int = 3) -> list[list[Candidate]]:
        """`match` for several texts: cached ones at once, the rest (each distinct normalised
        text once) in one worker-thread hop.

        The sentence encoder costs ~3 ms of CPU per question (int8; ~12 ms in float32). In a
        burst, new questions beyond `embedding_queue` waiting for it are matched
        lexically instead (~0.5-1 ms; calibrated too, somewhat less accurate). Those results
        are cached as provisional: served from the cache while the burst lasts, re-matched in
        full once there is room.
        """
        snap = self._snapshot  # one snapshot for the whole call: its matcher fills its cache
        matcher = snap.matcher
        if matcher is None:
            return [[] for _ in texts]
        keys = [cache_key(t, limit) for t in texts]
        found: dict[CacheKey, list[Candidate]] = {}
        new: dict[CacheKey, str] = {}
        provisional: dict[CacheKey, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key in found or key in new:
                continue
            entry = snap.cache.entry(key)
            if entry is None:
                new[key] = text
            else:
                found[key] = entry[0]
                if entry[1]:
                    provisional[key] = text
        room = len(new)
        if matcher.uses_embeddings:
            room = max(0, self._embedding_queue - self._embedding)
        # New questions first; provisional answers are upgraded only with room to spare.
        upgrades = list(provisional.items())[: max(0, room - len(new))]
        todo = {**new, **dict(upgrades)}
        budget = min(room, len(todo))
        self._hits += len(texts) - len(new)
        self._misses += len(new)
        if todo:
            self._embedding += budget
            try:
                # CPU-bound: off the event loop, one thread hop and one batch for all of them.
                fresh = await asyncio.to_thread(
                    matcher.match_many, list(todo.values()), limit, embed_limit=budget
                )
            finally:
                self._embedding -= budget
            for key, result in zip(todo, fresh, strict=True):
                snap.cache.put(key, result.candidates, provisional=not result.complete)
                found[key] = result.candidates
        # Each caller gets its own list (callers may slice or change them).
        return [list(found[key]) for key in keys]

    def match_sync(self, text: str, limit: int = 3) -> list[Candidate]:
        """Blocking `match` for CLI and evaluation code (never call it on the event loop); it
        uses the cache but is not counted in `cache_stats`. Without a burst to absorb, a
        provisional (lexical-only) entry is replaced by a full match."""
        snap = self._snapshot
        if snap.matcher is None:
            return []
        key = cache_key(text, limit)
        entry = snap.cache.entry(key)
        if entry is not None and not entry[1]:
            return entry[0]
        candidates = snap.matcher.match(text, limit)
        snap.cache.put(key, candidates)
        return candidates
