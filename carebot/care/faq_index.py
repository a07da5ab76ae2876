"""The FAQ index the app matches against: a rapidfuzz matcher behind a stable async seam."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from rapidfuzz import fuzz, process

from carebot.care.faq import Candidate, FaqDoc


class FaqIndex:
    """Async holder of the current matcher."""

    def __init__(self) -> None:
        self.version = 0
        self.docs_by_id: Mapping[str, FaqDoc] = {}
        self._texts: list[str] = []
        self._owners: list[str] = []

    async def rebuild(self, docs: Sequence[FaqDoc]) -> None:
        """Swap in a new index."""
        texts, owners = [], []
        for d in docs:
            for t in d.texts():
                texts.append(t.casefold())
                owners.append(d.id)
        self._texts, self._owners = texts, owners
        self.docs_by_id = {d.id: d for d in docs}
        self.version += 1

    async def match(self, text: str, limit: int = 3) -> list[Candidate]:
        """Match off the loop."""
        return await asyncio.to_thread(self.match_sync, text, limit)

    def match_sync(self, text: str, limit: int = 3) -> list[Candidate]:
        """Best entries first."""
        best: dict[str, float] = {}
        for _t, score, i in process.extract(text.casefold(), self._texts,
                                            scorer=fuzz.token_set_ratio, limit=30):
            fid = self._owners[i]
            best[fid] = max(best.get(fid, 0.0), score / 100)
        ranked = sorted(best.items(), key=lambda kv: -kv[1])[:limit]
        return [Candidate(f, max(0.0, (s - 0.5) * 2)) for f, s in ranked]
