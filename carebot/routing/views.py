"""What the console reads: conversation lists and the queue, one conversation, one customer,
and the question agent assist answers.

Who may read what is the core's rule (`core.can_access` for a conversation,
`core.can_see_customer` for a customer); this module loads the facts those rules take (one
statement) and the rows to show. Reading never lets anyone act: actions check
`core.can_act` (`carebot.routing.actions.load_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import (
    Agent,
    Contact,
    Conversation,
    Customer,
    Message,
    Survey,
    Touchpoint,
    WebVisitor,
)
from carebot.db.previews import Glance, glances
from carebot.routing import core
from carebot.routing.actions import (
    ConsoleError,
    _iso,
    _state,
    conversation_summary,
    message_dict,
    touchpoint_dict,
    viewer,
)
from carebot.routing.linked import group_ids
from carebot.routing.policy import Policy

STATUSES = ("bot", "queued", "assigned", "resolved")
SORTS = ("oldest", "newest")
# A customer panel lists this many of the customer's conversations, newest first.
PANEL_CONVERSATIONS = 100
OTHER_CONVERSATIONS = 50
# Agent assist looks this far back for the customer's last question.
QUESTION_LOOKBACK = 20
_INVOLVING = sorted(str(k) for k in core.INVOLVING)


@dataclass(frozen=True)
class Page:
    """One page of a listing: the items as JSON, and how many there are in all."""

    items: list[dict[str, Any]]
    total: int


def _order(status: str | None, sort: str | None) -> tuple[Any, ...]:
    """The queue: longest waiter first unless `newest`; any other listing: latest activity
    first unless `oldest`."""
    if status == "queued":
        key = Conversation.queued_at
        newest = sort == "newest"
    else:
        key = Conversation.updated_at
        newest = sort != "oldest"
    if newest:
        return key.desc(), Conversation.id.desc()
    return key.asc(), Conversation.id.asc()


async def list_conversations(
    session: AsyncSession,
    agent: Agent,
    now: datetime,
    policy: Policy,
    *,
    status: str | None = None,
    assignee: int | None = None,
    channel: str | None = None,
    sort: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Conversations the agent works on (their own and the queue; managers and admins all),
    filtered, sorted and paginated, each with its customer's name, last message and, in the
    queue, waiting time and SLA standing."""
    stmt = select(Conversation)
    if status is not None:
        stmt = stmt.where(Conversation.status == status)
    # An agent sees the queue and their own. Spelled per status, so each listing is one index
    # lookup: "(mine OR queued) AND status = X" made the planner scan every conversation.
    if not viewer(agent).supervisor and status != "queued":
        mine = Conversation.assigned_agent_id == agent.id
        stmt = stmt.where(mine if status is not None else mine | (Conversation.status == "queued"))
    if assignee is not None:
        stmt = stmt.where(Conversation.assigned_agent_id == assignee)
    if channel is not None:
        stmt = stmt.where(Conversation.channel == channel)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = list(await session.scalars(
        stmt.order_by(*_order(status, sort)).limit(limit).offset(offset)
    ))
    return Page(await listed(session, rows, now, policy), int(total or 0))


async def listed(
    session: AsyncSession, convs: Sequence[Conversation], now: datetime, policy: Policy
) -> list[dict[str, Any]]:
    """Conversations as list items (two statements for the names and previews of all)."""
    found = await glances(session, [c.id for c in convs])
    return [_item(c, found.get(c.id), now, policy) for c in convs]


def _item(conv: Conversation, glance: Glance | None, now: datetime, policy: Policy
          ) -> dict[str, Any]:
    sla = core.queue_sla(_state(conv), now, policy.queue_sla)
    waiting = None
    if conv.status == "queued" and conv.queued_at is not None:
        waiting = max(0, int((now - conv.queued_at).total_seconds()))
    return {
        **conversation_summary(conv),
        "customer_name": glance.customer_name if glance else "",
        "preview": glance.preview if glance else None,
        "waiting_seconds": waiting,
        "sla": None if sla is None else {
            "state": sla.state, "warning_at": _iso(sla.warning_at),
            "breach_at": _iso(sla.breach_at),
        },
    }


# --- access ----------------------------------------------------------------------------


async def load_readable(session: AsyncSession, agent: Agent, conversation_id: int
                        ) -> Conversation:
    """The conversation if it exists (404) and the agent may read it (403)."""
    conv = await session.get(Conversation, conversation_id)
    if conv is None:
        raise ConsoleError(404, f"conversation {conversation_id} not found")
    me, state = viewer(agent), _state(conv)
    if core.can_act(me, state):
        return conv  # no need to look further
    involved = (
        select(Touchpoint.id)
        .where(Touchpoint.conversation_id == conv.id, Touchpoint.agent_id == agent.id,
               Touchpoint.kind.in_(_INVOLVING))
        .exists()
    )
    holds = (
        select(Conversation.id)
        .where(Conversation.customer_id == conv.customer_id,
               Conversation.assigned_agent_id == agent.id, Conversation.status == "assigned")
        .exists()
    )
    row = (await session.execute(select(involved, holds))).one()
    if not core.can_access(me, state, involved=bool(row[0]), holds_customer=bool(row[1])):
        raise ConsoleError(403, f"conversation {conversation_id} is not yours")
    return conv


async def _may_see_customer(session: AsyncSession, agent: Agent, customer_id: int) -> bool:
    me = viewer(agent)
    if core.can_see_customer(me, assigned_one=False, involved_in_one=False, one_queued=False):
        return True  # managers and admins: nothing to look up
    assigned = (
        select(Conversation.id)
        .where(Conversation.customer_id == customer_id,
               Conversation.assigned_agent_id == agent.id)
        .exists()
    )
    involved = (
        select(Touchpoint.id)
        .where(Touchpoint.agent_id == agent.id, Touchpoint.customer_id == customer_id,
               Touchpoint.kind.in_(_INVOLVING))
        .exists()
    )
    queued = (
        select(Conversation.id)
        .where(Conversation.customer_id == customer_id, Conversation.status == "queued")
        .exists()
    )
    row = (await session.execute(select(assigned, involved, queued))).one()
    return core.can_see_customer(
        me, assigned_one=bool(row[0]), involved_in_one=bool(row[1]), one_queued=bool(row[2])
    )


# --- one conversation, one customer -------------------------------------------------------


async def conversation_detail(
    session: AsyncSession, agent: Agent, conversation_id: int, now: datetime, policy: Policy
) -> dict[str, Any]:
    """The conversation as a list item, with its contact, messages (notes included),
    touchpoint timeline, customer panel and the customer's other conversations."""
    conv = await load_readable(session, agent, conversation_id)
    messages = await session.scalars(
        select(Message).where(Message.conversation_id == conv.id).order_by(Message.id)
    )
    tps = await session.scalars(
        select(Touchpoint).where(Touchpoint.conversation_id == conv.id).order_by(Touchpoint.id)
    )
    contact = await session.get(Contact, conv.contact_id)
    # Whoever reads one of the customer's conversations may read the customer
    # (`core.can_see_customer`), so the panel needs no check of its own here.
    panel = await customer_panel(session, conv.customer_id)
    item = (await listed(session, [conv], now, policy))[0]
    # How far a web chat visitor has read what was sent to them (the console's "Read").
    read_up_to = await session.scalar(
        select(WebVisitor.visitor_read_up_to).where(WebVisitor.contact_id == conv.contact_id)
    )
    return {
        **item,
        "customer_read_up_to": read_up_to,
        "contact": _contact_dict(contact) if contact is not None else None,
        "customer": panel,
        "messages": [message_dict(m) for m in messages],
        "touchpoints": [touchpoint_dict(t) for t in tps],
        "other_conversations": [c for c in panel["conversations"]
                                if c["id"] != conv.id][:OTHER_CONVERSATIONS],
        # What the console's language selector offers (PUT …/language).
        "languages": list(policy.languages.supported),
    }


async def customer_detail(session: AsyncSession, agent: Agent, customer_id: int
                          ) -> dict[str, Any]:
    """The customer panel, for whoever may read one of the customer's conversations."""
    if await session.get(Customer, customer_id) is None:
        raise ConsoleError(404, f"customer {customer_id} not found")
    if not await _may_see_customer(session, agent, customer_id):
        raise ConsoleError(403, f"customer {customer_id} is not one of yours: none of their "
                                "conversations is assigned to you, queued, or was worked "
                                "on by you")
    return await customer_panel(session, customer_id)


async def customer_panel(session: AsyncSession, customer_id: int) -> dict[str, Any]:
    """Who the customer is and how it went for them: name, contacts on each channel, first
    seen, their conversations (newest first) with outcome and effort, and their survey
    answers."""
    customer = await session.get(Customer, customer_id)
    assert customer is not None
    # The person: this customer and every customer linked with them (another channel).
    person = await group_ids(session, customer_id)
    contacts = list(await session.scalars(
        select(Contact).where(Contact.customer_id.in_(person)).order_by(Contact.id)
    ))
    convs = list(await session.scalars(
        select(Conversation).where(Conversation.customer_id.in_(person))
        .order_by(Conversation.id.desc()).limit(PANEL_CONVERSATIONS)
    ))
    total, effort = (await session.execute(
        select(func.count(), func.coalesce(func.sum(Conversation.effort_score), 0))
        .where(Conversation.customer_id.in_(person))
    )).one()
    surveys = await session.scalars(
        select(Survey).where(Survey.customer_id.in_(person), Survey.score.is_not(None))
        .order_by(Survey.id.desc())
    )
    return {
        "id": customer.id,
        # Linked customers are one person: the group's first customer names it.
        "person_id": person[0],
        "customer_ids": person,
        "name": _name(customer, contacts, convs),
        "first_seen_at": _iso(customer.created_at),
        "contacts": [_contact_dict(c) for c in contacts],
        "conversations": [conversation_summary(c) for c in convs],
        "conversations_total": int(total),
        "total_effort": int(effort),
        "surveys": [_survey_dict(s) for s in surveys],
    }


def _name(customer: Customer, contacts: list[Contact], convs: list[Conversation]) -> str:
    """The name on the contact they wrote from last, else any contact's, else the first."""
    by_id = {c.id: c for c in contacts}
    latest = by_id.get(convs[0].contact_id) if convs else None
    if latest is not None and latest.display_name:
        return latest.display_name
    named = [c.display_name for c in reversed(contacts) if c.display_name]
    return named[0] if named else customer.display_name


def _contact_dict(c: Contact) -> dict[str, Any]:
    return {"channel": c.channel, "external_id": c.external_id,
            "display_name": c.display_name, "first_seen_at": _iso(c.created_at)}


def _survey_dict(s: Survey) -> dict[str, Any]:
    return {"id": s.id, "conversation_id": s.conversation_id, "kind": s.kind,
            "scale": s.scale, "score": s.score, "comment": s.comment,
            "agent_id": s.agent_id, "sent_at": _iso(s.sent_at),
            "answered_at": _iso(s.answered_at)}


# --- agent assist --------------------------------------------------------------------------


async def last_customer_question(
    session: AsyncSession, agent: Agent, conversation_id: int
) -> Message | None:
    """The customer's last typed question in the conversation: commands, requests for a
    person and button presses are passed over (the bot would not match them either).
    None when there is none among their last `QUESTION_LOOKBACK` messages."""
    conv = await load_readable(session, agent, conversation_id)
    rows = await session.scalars(
        select(Message)
        .where(Message.conversation_id == conv.id, Message.direction == "in",
               Message.sender == "customer", Message.text != "")
        .order_by(Message.id.desc()).limit(QUESTION_LOOKBACK)
    )
    return next((m for m in rows if core.needs_match(m.text, m.payload)), None)
