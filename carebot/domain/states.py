"""The vocabulary of the decision core: conversation statuses, who acts, what happened.

Enums are `StrEnum`s, so they are stored and serialised as the plain strings the database and
the API have always used ("bot", "queued", "faq_answer", …).
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where a conversation is: with the bot, waiting for a person, with a person, or done."""

    BOT = "bot"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"


OPEN_STATUSES = (Status.BOT, Status.QUEUED, Status.ASSIGNED)
WITH_A_PERSON = (Status.QUEUED, Status.ASSIGNED)


class ResolvedBy(StrEnum):
    """Who closed the conversation (stats tell confirmed bot resolutions from assumed ones)."""

    BOT = "bot"  # the customer confirmed an FAQ answer helped
    AGENT = "agent"
    TIMEOUT = "timeout"  # the customer went silent after the bot: an assumed bot resolution
    SYSTEM = "system"  # closed by carebot itself: the customer's data was erased


class Actor(StrEnum):
    """Who did a step."""

    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"


class Kind(StrEnum):
    """Touchpoint kinds: one row of the event log each."""

    MESSAGE_IN = "message_in"
    FAQ_ANSWER = "faq_answer"
    FAQ_SUGGEST = "faq_suggest"
    FAQ_FEEDBACK = "faq_feedback"
    SMALL_TALK = "small_talk"
    UNKNOWN_BUTTON = "unknown_button"
    UNSUPPORTED = "unsupported"
    HANDOFF = "handoff"
    ASSIGNED = "assigned"
    AGENT_REPLY = "agent_reply"
    NOTE = "note"
    TRANSFER = "transfer"
    HANDBACK = "handback"
    REQUEUED = "requeued"  # its agent was disabled or went away: back to the queue
    REOPENED = "reopened"
    RESOLVED = "resolved"
    SLA_BREACHED = "sla_breached"  # a queue stay outlasted the queue SLA
    # Assigned, and the customer waited for the agent's answer longer than the assigned SLA.
    ASSIGNED_SLA_BREACHED = "assigned_sla_breached"
    SURVEY_SENT = "survey_sent"
    SURVEY_ANSWERED = "survey_answered"
    SURVEY_COMMENT = "survey_comment"
    SURVEY_EXPIRED = "survey_expired"
    SURVEY_SKIPPED = "survey_skipped"
    AVAILABILITY = "availability"
    MESSAGE_EDITED = "message_edited"
    IGNORED = "ignored"
    DELIVERY_FAILED = "delivery_failed"
    REDACTED = "redacted"  # card numbers (or IBANs, e-mails, phones) masked in the message
    REDACTION_NOTICE = "redaction_notice"  # the customer was told card numbers are refused


# Effort points a step costs the customer. Answers cost nothing; every message the customer
# has to write, every choice they have to make and every person they are passed to costs more.
EFFORT: dict[str, int] = {
    Kind.MESSAGE_IN: 1,
    Kind.FAQ_SUGGEST: 1,  # the customer has to pick from a list
    Kind.HANDOFF: 2,  # explaining the problem again to a person
    Kind.TRANSFER: 3,  # passed on once more
    Kind.REOPENED: 3,  # the problem came back
    Kind.UNSUPPORTED: 1,  # sent something the bot cannot read
    Kind.UNKNOWN_BUTTON: 1,  # pressed a button that no longer means anything
}


# The conversation's own steps: what the customer, the bot and the people did in it (not
# surveys, SLA alerts, notes or delivery reports). How a timeout ended is read from the last
# of them before the resolution (carebot.stats.outcomes).
STEP_KINDS: frozenset[str] = frozenset({
    Kind.MESSAGE_IN, Kind.FAQ_ANSWER, Kind.FAQ_SUGGEST, Kind.FAQ_FEEDBACK, Kind.SMALL_TALK,
    Kind.UNSUPPORTED, Kind.UNKNOWN_BUTTON, Kind.HANDOFF, Kind.ASSIGNED, Kind.AGENT_REPLY,
    Kind.TRANSFER, Kind.HANDBACK, Kind.REQUEUED, Kind.REOPENED, Kind.RESOLVED,
})


class SurveyStatus(StrEnum):
    """scheduled -> sent -> answered | expired; cancelled when the rules say no at send time."""

    SCHEDULED = "scheduled"
    SENT = "sent"
    ANSWERED = "answered"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
