"""Rebuilding the conversations' `last_step_kind` and `resolved_after_kind` from the log.

The decision core keeps both as it records each step (carebot.routing.decision); this fills
them in for conversations written before they existed (the migration that adds them, and
bulk-loaded data), with the same meaning: the kind of the latest step, and of the latest
step before the latest resolution.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, ScalarSelect, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from carebot.db.models import Conversation, Touchpoint
from carebot.domain.states import STEP_KINDS, Kind


def backfill(conn: Connection) -> int:
    """Fill both columns of the conversations whose latest step is not recorded yet;
    returns how many were updated."""
    c, t = Conversation, Touchpoint
    resolution = aliased(Touchpoint)
    steps = sorted(STEP_KINDS)

    def latest_step(*before: ColumnElement[bool]) -> ScalarSelect[str]:
        return (
            select(t.kind).where(t.conversation_id == c.id, t.kind.in_(steps), *before)
            .order_by(t.id.desc()).limit(1).scalar_subquery()
        )

    # Correlated with the step's row (the SELECT just around it): a subquery correlates
    # with its immediate enclosing SELECT only, not with the UPDATE two levels out.
    last_resolution = (
        select(func.max(resolution.id))
        .where(resolution.conversation_id == t.conversation_id,
               resolution.kind == Kind.RESOLVED)
        .scalar_subquery()
    )
    result = conn.execute(
        update(c)
        .where(c.last_step_kind.is_(None))
        .values(last_step_kind=latest_step(),
                resolved_after_kind=latest_step(t.id < last_resolution))
    )
    return int(result.rowcount or 0)
