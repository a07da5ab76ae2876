"""The inbound batch's SQL, built once per dialect.

Building a select and computing its cache key cost more per batch than running it
(SQLAlchemy memoises both per statement object), so the catalogue is built once per dialect.
On PostgreSQL lookups by a list of keys are written as LATERAL lookups (`_each`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Select,
    Table,
    bindparam,
    func,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.sql.expression import Executable

from carebot.db.models import Agent, Base, Conversation

_T = Base.metadata.tables
CUSTOMERS: Table = _T["customers"]
CONTACTS: Table = _T["contacts"]
CONVERSATIONS: Table = _T["conversations"]
MESSAGES: Table = _T["messages"]
TOUCHPOINTS: Table = _T["touchpoints"]
OUTBOX: Table = _T["outbox"]
SURVEYS: Table = _T["surveys"]
AGENTS: Table = _T["agents"]
CODES: Table = _T["resolution_codes"]


def _in(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """`column IN :name` (a list, expanded); PostgreSQL uses `_each` instead."""
    return column.in_(bindparam(name, expanding=True))


def _each(
    param: str, key: ColumnElement[Any], query: Select[Any], *, one: bool = False
) -> tuple[Any, Any]:
    """PostgreSQL: `query` run once per value of the array parameter `param` (matched on
    `key`), as (its LATERAL subquery, the FROM clause joining it to the values).

    A young database has no statistics; from them PostgreSQL guessed that `channel = $1`
    selects a handful of rows and planned `key = ANY($2)` as a scan of the whole channel
    (42 ms a batch after 14,000 messages, growing, and kept as the generic plan). LIMIT or
    OFFSET stop the subquery being merged back into a join, so each value is one index
    lookup whatever the statistics say.
    """
    values = func.unnest(bindparam(param, type_=ARRAY(key.type))).table_valued("v")
    values = values.render_derived(name=f"{param}_v")
    fenced = query.where(key == values.c.v)
    fenced = fenced.limit(literal_column("1")) if one else fenced.offset(literal_column("0"))
    each = fenced.lateral(f"{param}_each")
    return each, values.join(each, true())


def agent_facts_query(*, online_only: bool) -> Select[Any]:
    """Agents (online and enabled, or all) with their open load and last assignment."""
    load = (
        select(func.count()).select_from(Conversation)
        .where(Conversation.assigned_agent_id == Agent.id, Conversation.status == "assigned")
        .scalar_subquery()
    )
    last = (
        select(func.max(Conversation.assigned_at))
        .where(Conversation.assigned_agent_id == Agent.id)
        .scalar_subquery()
    )
    stmt = select(
        Agent.id, Agent.name, Agent.capacity, Agent.role, Agent.status, Agent.disabled,
        Agent.idle_since, load.label("load"), last.label("last_assigned"),
    ).order_by(Agent.id)
    if online_only:
        stmt = stmt.where(Agent.status == "online", Agent.disabled.is_(False))
    return stmt


@dataclass(frozen=True)
class Statements:
    """The batch's statements, built once per dialect: building a select and computing its
    cache key cost more per batch than running it (SQLAlchemy memoises both per object)."""

    stored: Executable
    stored_replies: Executable
    contacts: Executable
    customer_languages: Executable
    set_customer_language: Executable
    latest_convs: Executable
    # PostgreSQL: the newest conversation id per contact (no lock), and those rows locked
    # unless another transaction holds them (SKIP LOCKED), or waiting for them.
    newest_ids: Executable | None
    lock_convs: Executable | None
    lock_convs_waiting: Executable | None
    queued: Executable
    queue_ahead: Executable
    recent_surveys: Executable
    latest_surveys: Executable
    codes: Executable
    lock_agent: Executable
    online_agents: Executable
    next_ids: Executable
    next_id_tables: tuple[Table, ...]
    rename_contact: Executable


@functools.cache
def statements(dialect: str) -> Statements:
    next_id_tables = (CUSTOMERS, CONTACTS, CONVERSATIONS, SURVEYS, MESSAGES)
    latest = (
        select(func.max(CONVERSATIONS.c.id))
        .where(_in(CONVERSATIONS.c.contact_id, "contact_ids"))
        .group_by(CONVERSATIONS.c.contact_id)
    )
    queued_at = CONVERSATIONS.c.queued_at.type
    queued = (
        select(func.count()).select_from(CONVERSATIONS)
        .where(CONVERSATIONS.c.status == "queued")
    )
    queue_ahead = (
        select(func.count()).select_from(CONVERSATIONS)
        .where(
            CONVERSATIONS.c.status == "queued",
            (CONVERSATIONS.c.queued_at < bindparam("queued_at", type_=queued_at))
            | ((CONVERSATIONS.c.queued_at == bindparam("queued_at", type_=queued_at))
               & (CONVERSATIONS.c.id < bindparam("id"))),
        )
    )
    latest_survey = (
        select(func.max(SURVEYS.c.id))
        .where(_in(SURVEYS.c.conversation_id, "ids"))
        .group_by(SURVEYS.c.conversation_id)
    )
    base = Statements(
        stored=(
            select(MESSAGES.c.id, MESSAGES.c.external_id, MESSAGES.c.conversation_id,
                   MESSAGES.c.status_after, CONVERSATIONS.c.status,
                   CONTACTS.c.external_id.label("user_id"))
            .join(CONVERSATIONS, CONVERSATIONS.c.id == MESSAGES.c.conversation_id)
            .join(CONTACTS, CONTACTS.c.id == CONVERSATIONS.c.contact_id)
            .where(
                MESSAGES.c.channel == bindparam("channel"),
                _in(MESSAGES.c.external_id, "ids"),
                MESSAGES.c.direction == "in",
                CONTACTS.c.channel == bindparam("channel"),
            )
        ),
        stored_replies=(
            select(MESSAGES.c.in_reply_to, MESSAGES.c.text, MESSAGES.c.buttons)
            .where(_in(MESSAGES.c.in_reply_to, "ids"))
            .order_by(MESSAGES.c.id)
        ),
        contacts=select(CONTACTS).where(
            CONTACTS.c.channel == bindparam("channel"),
            _in(CONTACTS.c.external_id, "users"),
        ),
        # The languages remembered for the batch's customers (one index lookup each).
        customer_languages=select(CUSTOMERS.c.id, CUSTOMERS.c.language).where(
            _in(CUSTOMERS.c.id, "ids")),
        set_customer_language=(
            update(CUSTOMERS).where(CUSTOMERS.c.id == bindparam("b_id"))
            .values(language=bindparam("language"))
        ),
        # Locked (PostgreSQL) in id order so two processes never interleave one customer's
        # turns.
        latest_convs=(
            select(CONVERSATIONS)
            .where(CONVERSATIONS.c.id.in_(latest))
            .order_by(CONVERSATIONS.c.id)
            .with_for_update()
        ),
        queued=queued,
        queue_ahead=queue_ahead,
        recent_surveys=select(SURVEYS.c.customer_id).where(
            _in(SURVEYS.c.customer_id, "ids"),
            SURVEYS.c.sent_at.is_not(None),
            SURVEYS.c.sent_at > bindparam("since", type_=SURVEYS.c.sent_at.type),
        ),
        latest_surveys=select(SURVEYS).where(SURVEYS.c.id.in_(latest_survey)),
        codes=select(CODES),
        newest_ids=None,
        lock_convs=None,
        lock_convs_waiting=None,
        online_agents=agent_facts_query(online_only=True),
        lock_agent=(
            select(AGENTS.c.id, select(func.count()).select_from(CONVERSATIONS).where(
                CONVERSATIONS.c.assigned_agent_id == AGENTS.c.id,
                CONVERSATIONS.c.status == "assigned",
            ).scalar_subquery().label("load"))
            .where(AGENTS.c.id == bindparam("id"))
            .with_for_update(of=AGENTS, key_share=True, skip_locked=True)
        ),
        next_ids=select(*(
            select(func.coalesce(func.max(t.c.id), 0)).scalar_subquery()
            for t in next_id_tables
        )),
        next_id_tables=next_id_tables,
        rename_contact=(
            update(CONTACTS).where(CONTACTS.c.id == bindparam("b_id"))
            .values(display_name=bindparam("name"))
        ),
    )
    return _pg_lookups(base) if dialect == "postgresql" else base


def _pg_lookups(base: Statements) -> Statements:
    """`base` with the batch's lookups by a list of keys as one index lookup per key (see
    `_each`)."""
    msg, each_msg = _each("ids", MESSAGES.c.external_id, select(
        MESSAGES.c.id, MESSAGES.c.external_id, MESSAGES.c.conversation_id,
        MESSAGES.c.status_after,
    ).where(MESSAGES.c.channel == bindparam("channel"), MESSAGES.c.direction == "in"), one=True)
    stored = (
        select(msg.c.id, msg.c.external_id, msg.c.conversation_id, msg.c.status_after,
               CONVERSATIONS.c.status, CONTACTS.c.external_id.label("user_id"))
        .select_from(each_msg)
        .join(CONVERSATIONS, CONVERSATIONS.c.id == msg.c.conversation_id)
        .join(CONTACTS, CONTACTS.c.id == CONVERSATIONS.c.contact_id)
    )
    reply, each_reply = _each("ids", MESSAGES.c.in_reply_to, select(
        MESSAGES.c.id, MESSAGES.c.in_reply_to, MESSAGES.c.text, MESSAGES.c.buttons
    ))
    stored_replies = (
        select(reply.c.in_reply_to, reply.c.text, reply.c.buttons)
        .select_from(each_reply).order_by(reply.c.id)
    )
    contact, each_contact = _each("users", CONTACTS.c.external_id, select(CONTACTS).where(
        CONTACTS.c.channel == bindparam("channel")
    ), one=True)
    contacts = select(contact).select_from(each_contact)
    # Locked one contact at a time in the order of the (sorted) ids, so two processes never
    # interleave one customer's turns nor deadlock. Joining the locked rows back to
    # conversations by id would let the planner hash-join a scan of the whole table.
    newest, each_newest = _each("contact_ids", CONVERSATIONS.c.contact_id, select(CONVERSATIONS)
                                .order_by(CONVERSATIONS.c.id.desc()).with_for_update(), one=True)
    latest_convs = select(newest).select_from(each_newest)
    newest_id, each_newest_id = _each("contact_ids", CONVERSATIONS.c.contact_id, select(
        CONVERSATIONS.c.id, CONVERSATIONS.c.contact_id).order_by(CONVERSATIONS.c.id.desc()),
        one=True)
    newest_ids = select(newest_id.c.id, newest_id.c.contact_id).select_from(each_newest_id)
    by_ids = (select(CONVERSATIONS)
              .where(CONVERSATIONS.c.id == func.any(bindparam("conv_ids", type_=ARRAY(
                  CONVERSATIONS.c.id.type))))
              .order_by(CONVERSATIONS.c.id))
    lock_convs = by_ids.with_for_update(skip_locked=True)
    lock_convs_waiting = by_ids.with_for_update()
    newest_survey, each_survey = _each("ids", SURVEYS.c.conversation_id, select(SURVEYS)
                                       .order_by(SURVEYS.c.id.desc()), one=True)
    latest_surveys = select(newest_survey).select_from(each_survey)
    sent, each_sent = _each("ids", SURVEYS.c.customer_id, select(SURVEYS.c.customer_id).where(
        SURVEYS.c.sent_at.is_not(None),
        SURVEYS.c.sent_at > bindparam("since", type_=SURVEYS.c.sent_at.type),
    ))
    recent_surveys = select(sent.c.customer_id).select_from(each_sent)
    return dataclasses.replace(
        base, stored=stored, stored_replies=stored_replies, contacts=contacts,
        latest_convs=latest_convs, recent_surveys=recent_surveys, newest_ids=newest_ids,
        lock_convs=lock_convs, lock_convs_waiting=lock_convs_waiting,
        latest_surveys=latest_surveys,
    )


