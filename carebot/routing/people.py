"""Customers as people: finding one, the customers linked as one person, their history and
export.

A customer is created per channel contact. When the same person writes on Telegram and on the
web chat, a manager links the two (`link`): the second customer then points at the first
(`customer_links`), and everything that shows a person — the customer endpoint, a
conversation's "other conversations", the export, the erasure — reads the whole group. Each
customer keeps its own contacts and conversations, so `unlink` undoes a link exactly.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents import audit
from carebot.db.models import (
    Agent,
    Contact,
    Conversation,
    Customer,
    CustomerErasure,
    CustomerLink,
    Message,
    OutboxMessage,
    Survey,
    Touchpoint,
)
from carebot.routing.actions import (
    ConsoleError,
    contact_dict,
    conversation_summary,
    message_dict,
    touchpoint_dict,
)
from carebot.routing.linked import group_ids, person_of

# A read of one person (the web layer runs it in a session).
Reader = Callable[[AsyncSession], Awaitable[dict[str, Any]]]
_ID = re.compile(r"[0-9]{1,18}")
MAX_ID = 2**62
EXPORT_FORMAT = "carebot-customer-export/1"
# The customer endpoint lists at most this many conversations (newest first); the export
# has all of them.
SHOWN_CONVERSATIONS = 200


async def find_customer(session: AsyncSession, ref: str) -> int:
    """The customer a reference names: an id, or `CHANNEL:USER_ID` (404 when unknown)."""
    ref = ref.strip()
    if _ID.fullmatch(ref) and int(ref) <= MAX_ID:
        if await session.get(Customer, int(ref)) is None:
            raise ConsoleError(404, f"customer {ref} not found")
        return int(ref)
    channel, sep, user_id = ref.partition(":")
    if not sep or not channel or not user_id:
        raise ConsoleError(400, "name a customer by id, or as CHANNEL:USER_ID (telegram:12345)")
    found = await session.scalar(
        select(Contact.customer_id).where(Contact.channel == channel,
                                          Contact.external_id == user_id)
    )
    if found is None:
        raise ConsoleError(404, f"no customer with user id {user_id!r} on channel {channel!r}")
    return int(found)


async def link(
    session: AsyncSession, customer_id: int, other_id: int, actor: Agent | audit.AuditActor,
    now: datetime,
) -> list[int]:
    """Link `other_id`'s person to `customer_id`'s (the other group joins this one); returns
    the ids of the person now. 409 when they are one person already or one was erased."""
    if customer_id == other_id:
        raise ConsoleError(409, "a customer is always the same person as themselves")
    await _exists(session, customer_id)
    await _exists(session, other_id)
    first, second = sorted((customer_id, other_id))
    # Both groups locked, always in the same order, so two links never deadlock.
    await group_ids(session, first, lock=True)
    await group_ids(session, second, lock=True)
    person = await person_of(session, customer_id)
    other_person = await person_of(session, other_id)
    if person == other_person:
        raise ConsoleError(409, f"customers {customer_id} and {other_id} are linked already")
    joining = await group_ids(session, other_id)
    erased = await session.scalars(
        select(CustomerErasure.customer_id).where(
            CustomerErasure.customer_id.in_([*await group_ids(session, customer_id),
                                             *joining]))
    )
    if list(erased):
        raise ConsoleError(409, "an erased customer cannot be linked")
    linked_by = actor.id if isinstance(actor, Agent) else None
    await session.execute(
        update(CustomerLink).where(CustomerLink.person_id == other_person)
        .values(person_id=person, linked_at=now, linked_by=linked_by)
    )
    session.add(CustomerLink(customer_id=other_person, person_id=person, linked_at=now,
                             linked_by=linked_by))
    await session.flush()
    ids = await group_ids(session, customer_id)
    audit.record(session, actor, "customer.linked", "customer", other_id,
                 {"person_id": person, "customer_ids": ids}, at=now)
    return ids


async def unlink(
    session: AsyncSession, customer_id: int, actor: Agent | audit.AuditActor, now: datetime
) -> list[int]:
    """Undo a link: the customer is a person of their own again (with the customers linked
    through them, if any were linked to this one first). Returns the rest of the group."""
    await _exists(session, customer_id)
    ids = await group_ids(session, customer_id, lock=True)
    row = await session.get(CustomerLink, customer_id)
    if row is None:
        if len(ids) > 1:
            raise ConsoleError(409, f"customer {customer_id} is the first of a linked group; "
                                    f"unlink the others ({', '.join(map(str, ids[1:]))}) "
                                    "instead")
        raise ConsoleError(409, f"customer {customer_id} is not linked to anyone")
    person = row.person_id
    await session.delete(row)
    await session.flush()
    rest = await group_ids(session, person)
    audit.record(session, actor, "customer.unlinked", "customer", customer_id,
                 {"person_id": person}, at=now)
    return rest


async def _exists(session: AsyncSession, customer_id: int) -> None:
    if await session.get(Customer, customer_id) is None:
        raise ConsoleError(404, f"customer {customer_id} not found")


# --- showing a person ----------------------------------------------------------------------


async def person_view(session: AsyncSession, customer_id: int) -> dict[str, Any]:
    """The person a customer belongs to: their customers, contacts on every channel,
    conversations (newest first) and survey answers."""
    await _exists(session, customer_id)
    ids = await group_ids(session, customer_id)
    customers = await _customers(session, ids)
    contacts = await session.scalars(
        select(Contact).where(Contact.customer_id.in_(ids)).order_by(Contact.id))
    convs = list(await session.scalars(
        select(Conversation).where(Conversation.customer_id.in_(ids))
        .order_by(Conversation.id.desc()).limit(SHOWN_CONVERSATIONS)))
    surveys = await session.scalars(
        select(Survey).where(Survey.customer_id.in_(ids), Survey.status == "answered")
        .order_by(Survey.id))
    return {
        "id": customer_id,
        "person_id": await person_of(session, customer_id),
        "customer_ids": ids,
        "customers": customers,
        "contacts": [contact_dict(c) for c in contacts],
        "conversations": [conversation_summary(c) for c in convs],
        "surveys": [survey_dict(s) for s in surveys],
    }


async def _customers(session: AsyncSession, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = (await session.execute(
        select(Customer, CustomerLink.person_id, CustomerLink.linked_at,
               CustomerErasure.erased_at)
        .outerjoin(CustomerLink, CustomerLink.customer_id == Customer.id)
        .outerjoin(CustomerErasure, CustomerErasure.customer_id == Customer.id)
        .where(Customer.id.in_(ids)).order_by(Customer.id)
    )).all()
    return [{
        "id": c.id, "display_name": c.display_name, "language": c.language,
        "created_at": _iso(c.created_at),
        "linked_to": person, "linked_at": _iso(linked_at), "erased_at": _iso(erased_at),
    } for c, person, linked_at, erased_at in rows]


def survey_dict(s: Survey) -> dict[str, Any]:
    """A survey as JSON."""
    return {"id": s.id, "conversation_id": s.conversation_id, "kind": s.kind, "scale": s.scale,
            "status": s.status, "score": s.score, "comment": s.comment,
            "resolved_by": s.resolved_by, "agent_id": s.agent_id,
            "sent_at": _iso(s.sent_at), "answered_at": _iso(s.answered_at)}


# --- export --------------------------------------------------------------------------------


async def export(session: AsyncSession, customer_id: int, now: datetime) -> dict[str, Any]:
    """Everything stored about the person, as one JSON document: their customers, contacts on
    every channel, conversations with messages, touchpoints, surveys and outbox rows, and the
    touchpoints and messages sent to them outside a conversation."""
    await _exists(session, customer_id)
    ids = await group_ids(session, customer_id)
    contacts = list(await session.scalars(
        select(Contact).where(Contact.customer_id.in_(ids)).order_by(Contact.id)))
    convs = list(await session.scalars(
        select(Conversation).where(Conversation.customer_id.in_(ids))
        .order_by(Conversation.id)))
    conv_ids = [c.id for c in convs]
    by_conv: dict[int, dict[str, list[dict[str, Any]]]] = {
        c: {"messages": [], "touchpoints": [], "surveys": [], "outbox": []} for c in conv_ids}
    for chunk in _chunks(conv_ids):
        for m in await session.scalars(
                select(Message).where(Message.conversation_id.in_(chunk)).order_by(Message.id)):
            by_conv[m.conversation_id]["messages"].append(
                {**message_dict(m), "channel": m.channel, "external_id": m.external_id})
        for t in await session.scalars(
                select(Touchpoint).where(Touchpoint.conversation_id.in_(chunk))
                .order_by(Touchpoint.id)):
            by_conv[t.conversation_id or 0]["touchpoints"].append(touchpoint_dict(t))
        for s in await session.scalars(
                select(Survey).where(Survey.conversation_id.in_(chunk)).order_by(Survey.id)):
            by_conv[s.conversation_id]["surveys"].append(survey_dict(s))
    # The outbox by recipient (indexed): everything sent to the person went to a contact.
    mailed: list[OutboxMessage] = []
    for c in contacts:
        mailed += await session.scalars(
            select(OutboxMessage).where(OutboxMessage.channel == c.channel,
                                        OutboxMessage.recipient == c.external_id)
            .order_by(OutboxMessage.id))
    notices = []
    for o in sorted(mailed, key=lambda row: row.id):
        if o.conversation_id in by_conv:
            by_conv[o.conversation_id]["outbox"].append(outbox_dict(o))
        elif o.conversation_id is None:
            notices.append(o)
    loose_touchpoints = await session.scalars(
        select(Touchpoint).where(Touchpoint.customer_id.in_(ids),
                                 Touchpoint.conversation_id.is_(None)).order_by(Touchpoint.id))
    return {
        "format": EXPORT_FORMAT,
        "exported_at": _iso(now),
        "customer_ids": ids,
        "customers": await _customers(session, ids),
        "contacts": [contact_dict(c) for c in contacts],
        "conversations": [{**conversation_summary(c), "contact_id": c.contact_id,
                           "resolved_agent_id": c.resolved_agent_id, **by_conv[c.id]}
                          for c in convs],
        "touchpoints_outside_conversations": [touchpoint_dict(t) for t in loose_touchpoints],
        "messages_outside_conversations": [outbox_dict(o) for o in notices],
    }


def outbox_dict(o: OutboxMessage) -> dict[str, Any]:
    """An outbox row as JSON (what was, or is to be, delivered)."""
    return {"id": o.id, "message_id": o.message_id, "channel": o.channel,
            "recipient": o.recipient, "text": o.text, "buttons": o.buttons or [],
            "status": o.status, "attempts": o.attempts, "last_error": o.last_error,
            "created_at": _iso(o.created_at), "sent_at": _iso(o.sent_at)}


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    # Bound the IN lists (SQLite allows ~32k parameters; PostgreSQL plans long lists slowly).
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
