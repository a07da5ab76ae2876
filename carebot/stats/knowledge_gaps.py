"""Knowledge gaps: group the questions the bot could not answer by similarity.

The input is modest (the handoffs of one period, capped by the caller), so this runs in
Python: texts are normalised with the matcher's own `normalize`, identical texts are counted
once, and the distinct texts — most frequent first — are clustered greedily: each joins the
first cluster whose representative scores at least `threshold` with rapidfuzz's
`token_set_ratio`, or starts a new cluster. Comparing with the representative only (never
with every member) keeps clusters from drifting through chains of near neighbours.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from rapidfuzz import fuzz, process

from carebot.matching.textnorm import normalize

DEFAULT_THRESHOLD = 80
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class GapQuestion:
    """One question that ended in a handoff for lack of an answer."""

    text: str
    at: datetime
    reason: str
    top_faq_id: str | None = None


@dataclass
class GapCluster:
    """Similar questions; `question` is the most frequent wording (normalised)."""

    question: str
    count: int = 0
    examples: list[str] = field(default_factory=list)
    last_seen: datetime | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    nearest_faqs: Counter[str] = field(default_factory=Counter)

    def add(self, item: GapQuestion) -> None:
        """Count one question into the cluster."""
        self.count += 1
        self.reasons[item.reason] += 1
        if item.top_faq_id:
            self.nearest_faqs[item.top_faq_id] += 1
        if self.last_seen is None or item.at > self.last_seen:
            self.last_seen = item.at
        text = item.text.strip()
        if text not in self.examples and len(self.examples) < MAX_EXAMPLES:
            self.examples.append(text)


def cluster(questions: list[GapQuestion], threshold: float = DEFAULT_THRESHOLD) -> list[GapCluster]:
    """Clusters of similar questions, the largest first (ties: the most recently seen first)."""
    by_norm: dict[str, list[GapQuestion]] = {}
    for q in sorted(questions, key=lambda q: q.at, reverse=True):  # newest examples first
        key = (normalize(q.text) or q.text.strip()).casefold()
        if key:
            by_norm.setdefault(key, []).append(q)
    ordered = sorted(by_norm, key=lambda k: (-len(by_norm[k]), -by_norm[k][0].at.timestamp(), k))
    reps: list[str] = []
    clusters: list[GapCluster] = []
    for key in ordered:
        hit = process.extractOne(key, reps, scorer=fuzz.token_set_ratio, score_cutoff=threshold)
        if hit is None:
            reps.append(key)
            clusters.append(GapCluster(question=key))
            target = clusters[-1]
        else:
            target = clusters[hit[2]]
        for q in by_norm[key]:
            target.add(q)
    clusters.sort(key=lambda c: (-c.count, -(c.last_seen.timestamp() if c.last_seen else 0)))
    return clusters
