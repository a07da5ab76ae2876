"""How each resolved conversation ended: the five outcomes the dashboard charts.

Every conversation of the resolved cohort has exactly one outcome, decided by SQL from its
`resolved_by` and its touchpoint log:

* **bot_confirmed** — the customer said Yes to "Did this help?" (`resolved_by` bot);
* **bot_assumed** — the timer closed it (`resolved_by` timeout) and the last step before the
  timeout was an FAQ answer: the bot answered and the customer went silent;
* **agent** — a person closed it (`resolved_by` agent: an agent, a manager or an admin,
  whatever the status was, from the queue or as spam too);
* **abandoned** — the timer closed it and the customer never got an answer: no FAQ answer and
  no agent reply, ever (a greeting, suggestions or small talk only);
* **timeout** — every other timeout: the customer had an answer at some point, but the last
  step before going silent was not an FAQ answer (an agent handed it back to the bot, the bot
  offered suggestions after an answer, …).

`bot_assumed + abandoned + timeout` equals the summary's `assumed_resolutions` (every
`resolved_by` timeout); `bot_confirmed` its `confirmed_resolutions`.

The "last step" is the touchpoint just before the conversation's last `resolved`, among the
steps of the conversation itself (STEP_KINDS): surveys, SLA alerts, notes and delivery
reports are not steps.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from carebot.db.models import Touchpoint
from carebot.stats.scope import C, Scope, T

OUTCOMES = ("bot_confirmed", "bot_assumed", "agent", "timeout", "abandoned")

STEP_KINDS = (
    "message_in", "faq_answer", "faq_suggest", "faq_feedback", "small_talk", "unsupported",
    "unknown_button", "handoff", "assigned", "agent_reply", "transfer", "handback", "requeued",
    "reopened", "resolved",
)


def last_step_kind() -> ColumnElement[str]:
    """The kind of a conversation's last step before its last resolution (a correlated
    subquery on `conversations`: a few index lookups per conversation, evaluated by the
    CASE below for timeouts only)."""
    resolution = aliased(Touchpoint)
    last_resolved = (
        select(func.max(resolution.id))
        # Correlated with the step's own row (the SELECT just around it), not with
        # `conversations`, which is two levels out.
        .where(resolution.conversation_id == T.conversation_id, resolution.kind == "resolved")
        .scalar_subquery()
    )
    kind: ColumnElement[str] = (
        select(T.kind)
        .where(T.conversation_id == C.id, T.kind.in_(STEP_KINDS), T.id < last_resolved)
        .order_by(T.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return kind


def outcome_of(scope: Scope, among: Select[Any] | None = None) -> ColumnElement[str]:
    """The outcome of a resolved conversation (a CASE over `conversations`); `scope` and
    `among` are accepted for the callers' symmetry, the rule needs only the row itself."""
    return case(
        (C.resolved_by == "bot", "bot_confirmed"),
        (C.resolved_by != "timeout", "agent"),
        (last_step_kind() == "faq_answer", "bot_assumed"),
        (and_(C.bot_answers == 0, C.agent_messages == 0), "abandoned"),
        else_="timeout",
    )


async def outcome_counts(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """Resolved conversations of the period per outcome (every outcome present)."""
    outcome = outcome_of(scope).label("outcome")
    rows = select(outcome).where(*scope.resolved()).subquery("outcomes")
    counts = dict.fromkeys(OUTCOMES, 0)
    for name, n in await session.execute(
        select(rows.c.outcome, func.count()).group_by(rows.c.outcome)
    ):
        counts[name] = int(n)
    return counts
