"""The FAQ index the app holds: an immutable matcher snapshot, rebuilt off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from carebot.care.faq import Candidate, FaqDoc
from carebot.care.matcher import Matcher, build_matcher

MatcherBuilder = Callable[[Sequence[FaqDoc]], Matcher]


@dataclass(frozen=True)
class _Snapshot:
    matcher: Matcher | None
    docs_by_id: Mapping[str, FaqDoc] = field(default_factory=lambda: MappingProxyType({}))
    version: int = 0


class FaqIndex:
    """Async holder of the current matcher and the entries it was built from.

    Readers always see one consistent snapshot (matcher, docs and version are swapped together
    in a single assignment). Concurrent `rebuild` calls serialize and coalesce: a call that finds
    a newer request waiting builds only the newest entries, and every caller returns once the
    index reflects its entries or newer ones.
    """

    def __init__(self, build: MatcherBuilder = build_matcher) -> None:
        self._build = build
        self._snapshot = _Snapshot(matcher=None)
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
                matcher=matcher, docs_by_id=by_id, version=self._snapshot.version + 1
            )
            self._built = seq

    async def match(self, text: str, limit: int = 3) -> list[Candidate]:
        """Rank entries for `text` in a worker thread; [] before the first rebuild."""
        matcher = self._snapshot.matcher
        if matcher is None:
            return []
        return await asyncio.to_thread(matcher.match, text, limit)

    def match_sync(self, text: str, limit: int = 3) -> list[Candidate]:
        """Blocking `match` for CLI and evaluation code (never call it on the event loop)."""
        matcher = self._snapshot.matcher
        return [] if matcher is None else matcher.match(text, limit)
