"""Knowledge gaps: group the questions the bot could not answer by similarity.

The input is modest (the handoffs of one period, fetched with SQL and capped by
`knowledge_gaps`), so the clustering runs in Python: texts are normalised with the matcher's
own `normalize`, identical texts are counted once, and the distinct texts — most frequent
first — are clustered greedily: each joins the first cluster whose representative scores at
least `threshold` with rapidfuzz's `token_set_ratio`, or starts a new cluster. Comparing with
the representative only (never with every member) keeps clusters from drifting through chains
of near neighbours.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rapidfuzz import fuzz, process
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import KnowledgeGapDone
from carebot.matching.textnorm import normalize
from carebot.stats.period import StatsInputError
from carebot.stats.scope import Scope, StatsQuery, T, period_dict

DEFAULT_THRESHOLD = 80
MAX_EXAMPLES = 5
GAP_REASONS = ("no_match", "failed_turns")
DEFAULT_GAP_SAMPLE = 5000
MAX_KEY = 500  # a question is remembered as done by at most this many characters of its key
SORTS = ("count", "newest")
STATUSES = ("all", "open", "done")


def gap_key(text: str) -> str:
    """The form a question is grouped (and marked done) by: the matcher's normalisation,
    casefolded; the stripped text when nothing of it survives normalisation."""
    return (normalize(text) or text.strip()).casefold()


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
    keys: set[str] = field(default_factory=set)
    times: list[datetime] = field(default_factory=list)

    def add(self, item: GapQuestion, key: str = "") -> None:
        """Count one question into the cluster."""
        self.count += 1
        self.times.append(item.at)
        if key:
            self.keys.add(key[:MAX_KEY])
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
        key = gap_key(q.text)
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
            target.add(q, key)
    clusters.sort(key=lambda c: (-c.count, -(c.last_seen.timestamp() if c.last_seen else 0)))
    return clusters


@dataclass(frozen=True)
class DoneMark:
    """A cluster marked done: its questions up to `done_at` are handled."""

    id: int
    question: str
    done_at: datetime
    done_by: int | None
    note: str | None


def mark_for(c: GapCluster, marks: list[DoneMark], threshold: float) -> DoneMark | None:
    """The latest mark that names one of the cluster's wordings, or whose question is as
    alike the cluster's as two questions of one cluster must be."""
    hits = [m for m in marks if m.question in c.keys
            or fuzz.token_set_ratio(m.question, c.question[:MAX_KEY]) >= threshold]
    return max(hits, key=lambda m: (m.done_at, m.id), default=None)


async def knowledge_gaps(
    session: AsyncSession,
    query: StatsQuery,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    sample: int = DEFAULT_GAP_SAMPLE,
    limit: int = 50,
    sort: str = "count",
    status: str = "all",
) -> dict[str, Any]:
    """Questions that ended in a handoff because the bot had no answer, grouped by similarity.

    The texts of `no_match` and `failed_turns` handoffs in the period (the latest `sample` of
    them) are fetched with SQL and clustered in Python (see the module docstring). A cluster
    is `done` when a manager marked it done after its last question, `open` otherwise
    (`new_since_done` counts the questions asked after the mark). `sort`: `count` (largest
    first) or `newest` (most recently asked first); `status`: `all`, `open` or `done`.
    """
    if sort not in SORTS:
        raise StatsInputError(f"'sort' must be one of {', '.join(SORTS)}")
    if status not in STATUSES:
        raise StatsInputError(f"'status' must be one of {', '.join(STATUSES)}")
    scope = await Scope.build(session, query)
    reason = T.details["reason"].as_string()
    question = T.details["text"].as_string()
    rows = (await session.execute(
        select(question, T.created_at, reason, T.details["top_faq_id"].as_string())
        .where(T.kind == "handoff", scope.during(T.created_at), reason.in_(GAP_REASONS),
               question.is_not(None), *scope.selected(T.conversation_id))
        .order_by(T.id.desc())
        .limit(sample + 1)
    )).all()
    truncated = len(rows) > sample
    questions = [GapQuestion(t, at, r, top) for t, at, r, top in rows[:sample] if t and t.strip()]
    marks = [DoneMark(*row) for row in await session.execute(select(
        KnowledgeGapDone.id, KnowledgeGapDone.question, KnowledgeGapDone.done_at,
        KnowledgeGapDone.done_by, KnowledgeGapDone.note,
    ))]
    clusters = await asyncio.to_thread(cluster, questions, threshold)
    if sort == "newest":
        clusters.sort(key=lambda c: (-(c.last_seen.timestamp() if c.last_seen else 0),
                                     -c.count))
    p = query.period
    items = []
    for c in clusters:
        mark = mark_for(c, marks, threshold) if marks else None
        new = c.count if mark is None else sum(at > mark.done_at for at in c.times)
        state = "done" if mark is not None and new == 0 else "open"
        if status != "all" and state != status:
            continue
        items.append({
            "question": c.question,
            "count": c.count,
            "examples": c.examples,
            "first_seen": p.local(min(c.times)).isoformat() if c.times else None,
            "last_seen": p.local(c.last_seen).isoformat() if c.last_seen else None,
            "reasons": dict(sorted(c.reasons.items())),
            "nearest_faqs": [f for f, _n in c.nearest_faqs.most_common(3)],
            "status": state,
            "done": None if mark is None else {
                "id": mark.id, "question": mark.question,
                "done_at": p.local(mark.done_at).isoformat(), "done_by": mark.done_by,
                "note": mark.note,
            },
            "new_since_done": None if mark is None else new,
        })
        if len(items) == limit:
            break
    return {
        "period": period_dict(query),
        "questions": len(questions),
        "truncated": truncated,
        "similarity_threshold": threshold,
        "clusters": items,
    }
