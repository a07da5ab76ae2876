"""Knowledge-gap clusters marked done: the only statistics state carebot stores.

A mark remembers a cluster by its question in the clusters' own normalised form
(`knowledge_gaps.gap_key`), so marking "Blender exploded!" and "blender exploded" is the same
mark. Marking a question again moves its `done_at` to now (the newer questions are handled
too); removing the mark shows the whole cluster as open again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import KnowledgeGapDone
from carebot.domain.text import text_problem
from carebot.stats.knowledge_gaps import MAX_KEY, gap_key
from carebot.stats.period import StatsInputError

MAX_NOTE = 1000


def mark_dict(mark: KnowledgeGapDone) -> dict[str, Any]:
    """A mark as JSON (UTC instants)."""
    return {"id": mark.id, "question": mark.question, "note": mark.note,
            "done_by": mark.done_by, "done_at": mark.done_at.isoformat()}


async def mark_done(
    session: AsyncSession, question: str, note: str | None, agent_id: int | None,
    now: datetime,
) -> tuple[KnowledgeGapDone, bool]:
    """Mark the cluster of `question` done as of `now`; returns (mark, created)."""
    key = gap_key(question)[:MAX_KEY]
    if not key:
        raise StatsInputError("'question' has nothing to match a cluster by")
    if note is not None:
        problem = text_problem(note)
        if problem is not None:
            raise StatsInputError(f"'note' {problem}")
        if len(note) > MAX_NOTE:
            raise StatsInputError(f"'note' must be at most {MAX_NOTE} characters")
    mark = await session.scalar(
        select(KnowledgeGapDone).where(KnowledgeGapDone.question == key).with_for_update()
    )
    created = mark is None
    if mark is None:
        mark = KnowledgeGapDone(question=key)
        session.add(mark)
    mark.note = note
    mark.done_by = agent_id
    mark.done_at = now
    await session.flush()
    return mark, created


async def list_marks(session: AsyncSession) -> list[KnowledgeGapDone]:
    """Every mark, the latest first."""
    return list(await session.scalars(
        select(KnowledgeGapDone).order_by(KnowledgeGapDone.done_at.desc(),
                                          KnowledgeGapDone.id.desc())
    ))


async def remove_mark(session: AsyncSession, mark_id: int) -> bool:
    """Remove a mark; False when there was none with that id."""
    mark = await session.get(KnowledgeGapDone, mark_id)
    if mark is None:
        return False
    await session.delete(mark)
    return True
