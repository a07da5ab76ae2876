"""How each resolved conversation ended: the five outcomes the dashboard charts.

Every conversation of the resolved cohort has exactly one outcome, decided by SQL from its
own row (`resolved_by`, the step before its resolution, its answer counts):

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

The "last step" is the conversation's step just before its last resolution (STEP_KINDS:
surveys, SLA alerts, notes and delivery reports are not steps), kept on the conversation as
its steps are recorded (`resolved_after_kind`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case

from carebot.domain.states import Kind
from carebot.stats.scope import C, Scope
from carebot.stats.sql import count_if

OUTCOMES = ("bot_confirmed", "bot_assumed", "agent", "timeout", "abandoned")


def outcome_of(scope: Scope, among: Select[Any] | None = None) -> ColumnElement[str]:
    """The outcome of a resolved conversation (a CASE over `conversations`); `scope` and
    `among` are accepted for the callers' symmetry, the rule needs only the row itself."""
    return case(
        (C.resolved_by == "bot", "bot_confirmed"),
        (C.resolved_by != "timeout", "agent"),
        (C.resolved_after_kind == Kind.FAQ_ANSWER, "bot_assumed"),
        (and_(C.bot_answers == 0, C.agent_messages == 0), "abandoned"),
        else_="timeout",
    )


def outcome_counts(scope: Scope) -> list[ColumnElement[int]]:
    """The count of each outcome (in OUTCOMES order), as columns of a select over the
    resolved cohort: the summary reads them in the same pass as its other resolved counts."""
    outcome = outcome_of(scope)
    return [count_if(outcome == name) for name in OUTCOMES]
