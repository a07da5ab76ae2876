"""SQLAlchemy 2 models: the schema. Changes to it go through an alembic revision in migrations/."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from carebot.db.types import BigId, UTCDateTime
from carebot.domain.journey import MARKS

# Stable constraint names so alembic batch mode on SQLite can alter tables.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the shared metadata."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Customer(Base):
    """A person who writes to support, possibly on several channels."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    # The language the customer was last spoken to in (detected, or the channel's hint):
    # a new conversation starts in it. None: never known (the default language).
    language: Mapped[str | None] = mapped_column(String(16))


class Contact(Base):
    """A customer's identity on one channel."""

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]


class Agent(Base):
    """A support agent, manager or admin who authenticates with a bearer token."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="agent")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    capacity: Mapped[int] = mapped_column(Integer, default=3)
    status: Mapped[str] = mapped_column(String(16), default="offline")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    # When the agent last got work (or came online): ties in assignment go to the longest idle.
    idle_since: Mapped[datetime | None]
    # Console login: a memory-hard hash (argon2id), or None until a password is set.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # A one-time invite (SHA-256 of its token) that lets the agent choose a password.
    invite_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    invite_expires_at: Mapped[datetime | None]
    # Last heartbeat of a connected console (any tab, any process); None: never connected.
    presence_at: Mapped[datetime | None]
    # The status was set by presence (no console for the grace period), not by the agent:
    # a console connecting again restores `online`; a status the agent chose is kept.
    status_auto: Mapped[bool] = mapped_column(Boolean, default=False)


class WebSession(Base):
    """A person's login to the console or dashboard: a cookie whose token is stored hashed."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    # Sent back in the X-CSRF-Token header on every state change (the cookie alone is not
    # enough, so a form posted from another site does nothing).
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class CannedReply(Base):
    """A prepared answer agents insert with `/shortcut`; managers maintain the list."""

    __tablename__ = "canned_replies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shortcut: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Conversation(Base):
    """A support case on one channel, with running summaries the stats read."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_contact_status", "contact_id", "status"),
        Index("ix_conversations_status_queued_at", "status", "queued_at"),
        Index("ix_conversations_status_handed_off_at", "status", "handed_off_at"),
        Index("ix_conversations_customer_opened_at", "customer_id", "opened_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    channel: Mapped[str] = mapped_column(String(32))
    # bot -> queued -> assigned -> resolved
    status: Mapped[str] = mapped_column(String(16), default="bot")
    opened_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    last_customer_message_at: Mapped[datetime | None]
    last_bot_answer_at: Mapped[datetime | None]
    # The latest entry into the queue (a handoff, a transfer or requeue back to it).
    queued_at: Mapped[datetime | None]
    # The first handoff to a person: the human first response runs from here, whatever
    # transfers follow.
    handed_off_at: Mapped[datetime | None]
    assigned_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    assigned_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None] = mapped_column(index=True)
    resolved_by: Mapped[str | None] = mapped_column(String(16))
    resolution_code: Mapped[str | None] = mapped_column(String(64))
    # The agent who resolved it (credited in the stats), whoever held it.
    resolved_agent_id: Mapped[int | None] = mapped_column(BigId, index=True)
    # The FAQ the bot last answered with, while it waits for "Did this help?".
    pending_faq_id: Mapped[str | None] = mapped_column(String(100))
    # Payloads of the buttons the bot showed last: a press of anything else is stale or forged.
    offered_payloads: Mapped[list[Any] | None]
    # When a queued customer was last told their position (at most every few minutes).
    queue_ack_at: Mapped[datetime | None]
    # The agent who put it back in the queue: it is never handed straight back to them.
    released_by_agent_id: Mapped[int | None] = mapped_column(BigId)
    failed_bot_turns: Mapped[int] = mapped_column(Integer, default=0)
    customer_messages: Mapped[int] = mapped_column(Integer, default=0)
    bot_answers: Mapped[int] = mapped_column(Integer, default=0)
    agent_messages: Mapped[int] = mapped_column(Integer, default=0)
    handoffs: Mapped[int] = mapped_column(Integer, default=0)
    transfers: Mapped[int] = mapped_column(Integer, default=0)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    effort_score: Mapped[int] = mapped_column(Integer, default=0)
    first_bot_response_ms: Mapped[int | None]
    first_human_response_ms: Mapped[int | None]
    # Receipt of the customer's message -> the end of the transaction writing the bot's first
    # reply (microseconds, written by the inbound batch). first_bot_response_ms only says the
    # bot replied at all.
    first_bot_response_us: Mapped[int | None] = mapped_column(BigInteger)
    # The language the bot speaks in this conversation (see carebot.domain.language), and
    # the one an agent set by hand, which wins over detection until cleared.
    language: Mapped[str | None] = mapped_column(String(16))
    language_override: Mapped[str | None] = mapped_column(String(16))
    # The kind of its latest step (carebot.domain.states.STEP_KINDS) and of the step just
    # before its latest resolution, kept as touchpoints are written: a timeout's outcome.
    last_step_kind: Mapped[str | None] = mapped_column(String(32))
    resolved_after_kind: Mapped[str | None] = mapped_column(String(32))


# One row per conversation: its journey's marks (carebot.domain.journey), kept up to date as
# its touchpoints are written (carebot.db.journey_marks). For each mark: its place among the
# conversation's marked touchpoints (`seq`, the log's order), when it happened and the effort
# the customer had spent by then; NULL while the conversation has not reached it.
journey_marks = Table(
    "journey_marks",
    Base.metadata,
    Column("conversation_id", BigId, ForeignKey("conversations.id"), primary_key=True),
    # How many of the conversation's touchpoints were marks so far.
    Column("seq", Integer, nullable=False, default=0),
    *(
        column
        for mark in MARKS
        for column in (
            Column(f"{mark}_seq", Integer),
            Column(f"{mark}_at", UTCDateTime()),
            Column(f"{mark}_effort", Integer),
        )
    ),
)


class ResolutionCode(Base):
    """The managed list of codes an agent resolves a conversation with."""

    __tablename__ = "resolution_codes"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(200))
    # False for codes like `spam`: no survey is sent.
    survey: Mapped[bool] = mapped_column(Boolean, default=True)
    # False for codes like `spam`: a new message starts a new conversation instead.
    may_reopen: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class Message(Base):
    """One message in a conversation, either direction."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    # The channel's id of an inbound message; unique per channel, so a redelivery is recognised.
    external_id: Mapped[str | None] = mapped_column(String(128))
    direction: Mapped[str] = mapped_column(String(8))  # in / out / note (private)
    sender: Mapped[str] = mapped_column(String(16))  # customer / bot / agent / system
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    text: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[str | None] = mapped_column(String(200))
    buttons: Mapped[list[Any] | None]
    # For replies: the inbound message that produced them (replayed on a duplicate delivery).
    in_reply_to: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    # For inbound messages: the conversation status the routing left behind.
    status_after: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime]


class Touchpoint(Base):
    """The event log: one row per interaction; every statistic is computed from these."""

    __tablename__ = "touchpoints"
    __table_args__ = (
        # The touchpoints of some kinds over a time range, with what the statistics' windows
        # over them read (their conversation and place in its log, the agent, the FAQ): the
        # per-agent, per-FAQ and queue statistics read the index alone instead of filtering
        # every touchpoint since the period's start out of the table.
        Index("ix_touchpoints_kind_log", "kind", "created_at",
              postgresql_include=["conversation_id", "id", "agent_id", "faq_id"]),
        Index("ix_touchpoints_conversation_kind", "conversation_id", "kind"),
        # A conversation's log in order, with each step's kind and time: the next queue step
        # after a queue entry (carebot.stats.segments.queue_stays) is one probe that reads
        # no table rows.
        Index("ix_touchpoints_conversation_log", "conversation_id", "id",
              postgresql_include=["kind", "created_at"]),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Indexed by ix_touchpoints_conversation_log (with the id).
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(16))  # customer / bot / agent / system
    channel: Mapped[str] = mapped_column(String(32))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    faq_id: Mapped[str | None] = mapped_column(String(100), index=True)
    score: Mapped[float | None] = mapped_column(Float)
    # Points this step cost the customer (see carebot.domain.states.EFFORT).
    effort: Mapped[int] = mapped_column(Integer, default=0)
    # How long the customer waited for this response, in milliseconds.
    wait_ms: Mapped[int | None]
    # The conversation's status after this step.
    outcome: Mapped[str | None] = mapped_column(String(16))
    details: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(index=True)


class FaqEntry(Base):
    """A knowledge-base entry imported from knowledge/*.yaml; removed entries are disabled."""

    __tablename__ = "faq_entries"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    phrasings: Mapped[list[Any]]
    tags: Mapped[list[Any]]
    source: Mapped[str] = mapped_column(String(255), default="")
    # {"de": {"question": …, "phrasings": […], "answer": …}, …}; None: only the default language.
    translations: Mapped[dict[str, Any] | None]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class OutboxMessage(Base):
    """A message to deliver; the sender worker claims pending rows and retries with backoff."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        # The worker keeps each chat's messages in order: it looks up a recipient's unsent rows.
        Index("ix_outbox_channel_recipient_status", "channel", "recipient", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    channel: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    buttons: Mapped[list[Any] | None]
    # pending -> sending -> sent | failed; "sent" at once for replies returned inline.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_until: Mapped[datetime | None]
    # The claim that holds a `sending` row: a worker whose lease expired (and whose row another
    # worker claimed again) can no longer record an outcome for it.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    external_message_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class ChannelReceipt(Base):
    """An inbound update that is noted but not routed (an edited message, a group message).

    Routed messages are recognised on redelivery by `messages`; these have no message row, so
    their channel id is kept here and a redelivery changes nothing.
    """

    __tablename__ = "channel_receipts"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]


class Survey(Base):
    """A post-resolution survey (CSAT 1-5 or CES 1-7) sent to the customer in the chat."""

    __tablename__ = "surveys"
    __table_args__ = (
        Index("ix_surveys_customer_sent_at", "customer_id", "sent_at"),
        Index("ix_surveys_status_due_at", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(8))  # csat / ces
    scale: Mapped[int] = mapped_column(Integer)  # highest score: 5 for CSAT, 7 for CES
    # scheduled -> sent -> answered | expired; cancelled when the rules say no at send time.
    status: Mapped[str] = mapped_column(String(16))
    # While sent: what the customer's next message answers ("score", then "comment").
    awaiting: Mapped[str | None] = mapped_column(String(16))
    # Who resolved the conversation, as it was when the survey was created.
    resolved_by: Mapped[str | None] = mapped_column(String(16))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    due_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    score: Mapped[int | None]
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class KnowledgeGapDone(Base):
    """A knowledge-gap cluster a manager marked done (an FAQ was added or the question was
    judged out of scope): its questions asked up to `done_at` are handled; newer ones show the
    cluster again."""

    __tablename__ = "knowledge_gaps_done"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The cluster's question, normalised as the clusters are (matching.textnorm + casefold).
    question: Mapped[str] = mapped_column(String(500), unique=True)
    note: Mapped[str | None] = mapped_column(Text)
    done_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    done_at: Mapped[datetime]


# --- data protection (migration 0008): audit log, linked customers, erasures, retention ------


class AuditEntry(Base):
    """Who did what to which object, and when: an append-only log (triggers refuse UPDATE and
    DELETE). It holds ids, names of agents and small facts, never message texts or secrets
    (`carebot.agents.audit.record` checks the details it is given)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_object", "object_type", "object_id", "at"),
        Index("ix_audit_log_action_at", "action", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    # agent (an agent, manager or admin, by API or console), cli (the command line), system
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(BigId, index=True)
    # The agent's name as it was (or the operating-system user of a CLI run): the log stays
    # readable whatever happens to the agent later.
    actor_name: Mapped[str] = mapped_column(String(100), default="")
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None]


class CustomerLink(Base):
    """A customer who is the same person as another (e.g. on Telegram and on web chat).

    Each linked customer points at the group's first customer (`person_id`), which has no
    row here; its conversations, contacts and history stay its own, and unlinking deletes
    the row. Everything that shows or exports a person reads the whole group."""

    __tablename__ = "customer_links"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    linked_at: Mapped[datetime]
    linked_by: Mapped[int | None] = mapped_column(BigId)


class CustomerErasure(Base):
    """A customer whose texts and identifiers were erased (their anonymous rows remain)."""

    __tablename__ = "customer_erasures"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    erased_at: Mapped[datetime]


class RetentionProgress(Base):
    """How far the retention job got in one table: rows up to `last_id` are done.

    Ids grow with time, so each pass continues from here with a primary-key range instead of
    searching the table for old texts; its row is locked (SKIP LOCKED) while a pass runs, so
    processes never do the same table at once."""

    __tablename__ = "retention_progress"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigId, default=0)
    updated_at: Mapped[datetime]


class WebSite(Base):
    """A website whose chat widget is a channel (`web`): where it may run, how it looks, and
    the secret its server signs logged-in users' ids with."""

    __tablename__ = "web_sites"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Public: the snippet carries it (data-site); random, so sites cannot be enumerated.
    key: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Exact origins ("https://shop.example", scheme, host and port) whose pages may embed it.
    origins: Mapped[list[Any]]
    # Identity verification: the site's server sends HMAC-SHA256(secret, user_id). Kept as it
    # is (an HMAC key cannot be stored hashed); shown to admins only.
    secret: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(100))
    greeting: Mapped[str] = mapped_column(Text, default="")
    colour: Mapped[str] = mapped_column(String(7))
    # Shown in the widget while no agent is online ("we reply within a day").
    offline_text: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebVisitor(Base):
    """A web chat contact: which site, who it is (a verified user id, or anonymous), and how
    far each side has read."""

    __tablename__ = "web_visitors"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("web_sites.id"), index=True)
    # The site's own user id, when its HMAC was verified; None for an anonymous visitor.
    user_id: Mapped[str | None] = mapped_column(String(64))
    # The last message to the visitor that their widget showed while open (read marks).
    visitor_read_up_to: Mapped[int | None] = mapped_column(BigId)
    # The last message from the visitor an agent has seen in the console.
    agent_read_up_to: Mapped[int | None] = mapped_column(BigId)
    last_seen_at: Mapped[datetime]
    created_at: Mapped[datetime]
