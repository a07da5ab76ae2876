"""What the decision core reads and returns: plain data, no I/O.

The loaders (the inbound batch, the console actions, the timers) turn database rows into
these, call the core, and write what it returns.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from carebot.domain.events import Event
from carebot.domain.language import Detected
from carebot.domain.messages import OutboundMessage
from carebot.domain.states import EFFORT, STEP_KINDS, Actor, Kind, Status, SurveyStatus
from carebot.matching.faq import Candidate, FaqDoc
from carebot.routing.policy import ResolutionCode
from carebot.routing.smalltalk import NO_SMALL_TALK, SmallTalk


class NotAllowed(Exception):
    """The action is not allowed in the conversation's current state (HTTP 409)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class ConvState:
    """A conversation as the core sees it: the `conversations` row's columns."""

    id: int | None
    customer_id: int | None
    contact_id: int | None
    channel: str
    status: str
    opened_at: datetime
    updated_at: datetime
    last_customer_message_at: datetime | None = None
    last_bot_answer_at: datetime | None = None
    queued_at: datetime | None = None
    # The first handoff to a person (never moved by transfers): human first response's start.
    handed_off_at: datetime | None = None
    assigned_agent_id: int | None = None
    assigned_at: datetime | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution_code: str | None = None
    resolved_agent_id: int | None = None
    pending_faq_id: str | None = None
    # Payloads of the buttons the bot showed last: a press of anything else is stale or forged.
    offered_payloads: list[Any] | None = None
    failed_bot_turns: int = 0
    customer_messages: int = 0
    bot_answers: int = 0
    agent_messages: int = 0
    handoffs: int = 0
    transfers: int = 0
    reopen_count: int = 0
    effort_score: int = 0
    first_bot_response_ms: int | None = None
    first_human_response_ms: int | None = None
    queue_ack_at: datetime | None = None
    released_by_agent_id: int | None = None
    # The language the bot speaks here (carebot.domain.language), and an agent's override.
    language: str | None = None
    language_override: str | None = None
    # The kind of its latest step (STEP_KINDS), and of the step just before its latest
    # resolution: how a timeout ended (carebot.stats.outcomes).
    last_step_kind: str | None = None
    resolved_after_kind: str | None = None

    @classmethod
    def fresh(
        cls, customer_id: int | None, contact_id: int | None, channel: str, now: datetime
    ) -> ConvState:
        """A new conversation with the bot."""
        return cls(None, customer_id, contact_id, channel, Status.BOT, now, now)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ConvState:
        """From a row (mapping) of `conversations`."""
        return cls(**{name: row[name] for name in CONV_COLUMNS})

    def to_row(self) -> dict[str, Any]:
        """The row's values (plain strings for the enums)."""
        return {name: getattr(self, name) for name in CONV_COLUMNS}

    def copy(self) -> ConvState:
        """A copy the core may change without touching the caller's."""
        return copy.copy(self)


CONV_COLUMNS = tuple(f.name for f in dataclasses.fields(ConvState))
# What a decision may change (the rest is fixed when the conversation is created).
CONV_MUTABLE = tuple(c for c in CONV_COLUMNS if c not in ("id", "customer_id", "contact_id"))


@dataclass
class SurveyState:
    """A survey as the core sees it (`id` None until written)."""

    id: int | None
    kind: str
    scale: int
    status: str
    resolved_by: str | None
    agent_id: int | None
    due_at: datetime
    created_at: datetime
    awaiting: str | None = None
    sent_at: datetime | None = None
    expires_at: datetime | None = None
    answered_at: datetime | None = None
    score: int | None = None
    comment: str | None = None
    # Filled in by the writer for a survey of a conversation not written yet.
    conversation_id: int | None = None
    customer_id: int | None = None
    channel: str = ""
    # The state this one was copied from, first of the line: two copies of a survey not yet
    # written are one row.
    origin: SurveyState | None = field(default=None, compare=False, repr=False)

    def copy(self) -> SurveyState:
        """A copy the core may change; it remembers what it was copied from."""
        return dataclasses.replace(self, origin=self.origin or self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SurveyState:
        """From a row (mapping) of `surveys`."""
        return cls(**{name: row[name] for name in SURVEY_COLUMNS})

    def to_row(self) -> dict[str, Any]:
        """The row's values."""
        return {name: getattr(self, name) for name in SURVEY_COLUMNS}

    @property
    def is_open(self) -> bool:
        """Scheduled or sent: the conversation gets no second one."""
        return self.status in (SurveyStatus.SCHEDULED, SurveyStatus.SENT)


SURVEY_COLUMNS = tuple(f.name for f in dataclasses.fields(SurveyState) if f.name != "origin")


@dataclass(frozen=True)
class AgentFacts:
    """An agent as assignment sees them."""

    id: int
    name: str
    capacity: int
    load: int  # open conversations assigned now
    role: str = "agent"
    status: str = "online"
    disabled: bool = False
    idle_since: datetime | None = None

    @property
    def supervisor(self) -> bool:
        """Managers and admins see and act on every conversation."""
        return self.role in ("manager", "admin")

    @property
    def available(self) -> bool:
        """Online, enabled and below capacity."""
        return self.status == "online" and not self.disabled and self.load < self.capacity


@dataclass(frozen=True)
class AgentPresence:
    """An agent as presence sees them: their status, who set it, their last console heartbeat."""

    id: int
    status: str
    # The status was set by presence (no console for the grace period), not by the agent.
    status_auto: bool = False
    disabled: bool = False
    # The last heartbeat of a connected console; None: never connected.
    presence_at: datetime | None = None


@dataclass(frozen=True)
class StatusChange:
    """A status presence gives an agent (`status_auto`), and the event announcing it."""

    agent_id: int
    status: str
    reason: str  # "console_connected" or "no_console"
    event: Event


@dataclass(frozen=True)
class Knowledge:
    """What the bot can say: FAQ entries by id, and small talk."""

    docs: Mapping[str, FaqDoc]
    small_talk: SmallTalk = NO_SMALL_TALK


@dataclass(frozen=True)
class Turn:
    """One inbound customer message as the core sees it."""

    channel: str
    text: str
    payload: str | None
    received: datetime
    # The message's FAQ matches (None: not matched; the core asks for them only when needed).
    candidates: Sequence[Candidate] | None = None
    # What the channel masked in it ("card", "iban", "email", "phone").
    redacted: frozenset[str] = frozenset()
    # The detector's guess at the text's language (None: not detected, e.g. a button press).
    detected: Detected | None = None
    # The channel's idea of the customer's language (Telegram's language_code, the page's).
    language_hint: str | None = None


@dataclass(frozen=True)
class Facts:
    """What the loader knows around the conversation."""

    # The latest survey of the conversation the message would belong to (any status).
    survey: SurveyState | None = None
    # Facts left None were not loaded: a decision that needs one says so (`Decision.needs`)
    # and the loader loads it and decides again, so common turns cost no extra queries.
    # The customer was sent a survey within the cooldown.
    surveyed_recently: bool | None = None
    # Agents online and enabled (assignment picks among those with room).
    agents: tuple[AgentFacts, ...] | None = None
    # The conversation's place in the queue, or the place it would get if queued now.
    queue_position: int | None = None
    # The managed resolution codes, by code.
    codes: Mapping[str, ResolutionCode] = field(default_factory=dict)
    # The customer was already told in this conversation that card numbers are refused.
    card_notice_given: bool | None = None
    # The language remembered for the customer (any channel, any earlier conversation).
    customer_language: str | None = None


@dataclass
class Touch:
    """A touchpoint to write."""

    kind: str
    actor: Actor
    at: datetime
    outcome: str
    effort: int
    agent_id: int | None = None
    faq_id: str | None = None
    score: float | None = None
    wait_ms: int | None = None
    details: dict[str, Any] | None = None
    # Linked to the inbound message of the turn (or to the reply/note written with it).
    with_message: bool = False
    # Its details get this survey's id and kind once the survey is written.
    survey: SurveyState | None = None
    # The conversation's effort once this touchpoint is counted (the journey's marks).
    effort_total: int = 0


@dataclass
class Reply:
    """A message to store and deliver (or, `private`, a note that is only stored)."""

    # None: a survey's question, built when written (its buttons carry the survey's id)
    message: OutboundMessage | None
    at: datetime
    sender: Actor = Actor.BOT
    agent_id: int | None = None
    survey: SurveyState | None = None
    # Which of the survey's questions: "score", or "comment" (with a Skip button).
    prompt: str = "score"
    private: bool = False


@dataclass
class Decision:
    """Everything one step changes: the conversation, and the rows and events it produces."""

    conv: ConvState
    new_conversation: bool = False
    touches: list[Touch] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    surveys: list[SurveyState] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Agents who got work in this step (their `idle_since` moves).
    assigned: list[AgentFacts] = field(default_factory=list)
    # Facts the decision needs and did not have ("match", "queue", "position", "surveys",
    # "card_notice"): the
    # loader gets them and decides again; this decision is discarded.
    needs: set[str] = field(default_factory=set)
    # A language to remember for the customer (None: keep the remembered one).
    customer_language: str | None = None
    # The status before this step: whether the conversation was in everyone's queue view.
    initial_status: str = field(init=False)

    def __post_init__(self) -> None:
        self.initial_status = self.conv.status

    def touch(self, kind: str, actor: Actor, at: datetime, **extra: Any) -> Touch:
        """Record a touchpoint; its effort is added to the conversation's."""
        effort = EFFORT.get(kind, 0)
        self.conv.effort_score += effort
        if kind == Kind.RESOLVED:
            self.conv.resolved_after_kind = self.conv.last_step_kind
        if kind in STEP_KINDS:
            self.conv.last_step_kind = str(kind)
        tp = Touch(kind, actor, at, self.conv.status, effort,
                   effort_total=self.conv.effort_score, **extra)
        self.touches.append(tp)
        return tp

    def say(self, message: OutboundMessage | None, at: datetime, **extra: Any) -> Reply:
        """Send a message to the customer."""
        reply = Reply(message, at, **extra)
        self.replies.append(reply)
        return reply

    def emit(self, kind: str, /, *, agents: tuple[int | None, ...] = (), queue: bool = False,
             **data: Any) -> None:
        """A live event for consoles (the conversation id is filled in when written)."""
        ids = tuple(sorted({a for a in agents if a is not None}))
        self.events.append(Event(kind, self.conv.id, agent_ids=ids, queue=queue, data=data))
