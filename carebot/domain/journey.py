"""The journey's marks: which touchpoints the customer journey is drawn from.

A conversation's journey (carebot.stats.journey) is read from ten marks: the first touchpoint
of each kind below (the *last* resolution for `res`). They are kept per conversation as the
touchpoints are written (carebot.db.journey_marks), so the dashboard never has to walk the
touchpoint log to draw it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carebot.domain.states import Kind

CSAT_POSITIVE = 4  # CSAT 4-5 counts as satisfied

# In the order the journey's steps come in.
MARKS: tuple[str, ...] = ("msg", "ans", "sug", "yes", "no", "hand", "asg", "res", "sent", "sat")
# The mark that follows the latest occurrence; every other one keeps the first.
LAST_MARK = "res"
# The kinds that are a mark whatever their details.
_PLAIN: dict[str, str] = {
    Kind.MESSAGE_IN: "msg",
    Kind.FAQ_ANSWER: "ans",
    Kind.FAQ_SUGGEST: "sug",
    Kind.HANDOFF: "hand",
    Kind.ASSIGNED: "asg",
    Kind.RESOLVED: "res",
}


def mark_of(kind: str, details: Mapping[str, Any] | None, score: float | None) -> str | None:
    """The mark a touchpoint can be (None: it is none of them)."""
    plain = _PLAIN.get(kind)
    if plain is not None:
        return plain
    details = details or {}
    if kind == Kind.FAQ_FEEDBACK:
        helpful = details.get("helpful")
        return None if helpful is None else ("yes" if helpful else "no")
    if details.get("kind") != "csat":
        return None
    if kind == Kind.SURVEY_SENT:
        return "sent"
    if kind == Kind.SURVEY_ANSWERED and score is not None and score >= CSAT_POSITIVE:
        return "sat"
    return None
