"""Who a conversation is with and what was said last: the customer's name and a preview of
the last message a person wrote (the customer or an agent; never the bot, never a private
note), read for many conversations in two statements, for
lists and for live events."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Contact, Conversation, Customer, Message
from carebot.domain.events import Event, preview


@dataclass(frozen=True)
class Glance:
    """A conversation at a glance: the customer's name and its last message."""

    customer_name: str
    preview: dict[str, Any] | None


async def glances(session: AsyncSession, conversation_ids: Iterable[int]) -> dict[int, Glance]:
    """The glance of each conversation (missing ids are left out)."""
    ids = sorted(set(conversation_ids))
    if not ids:
        return {}
    names = await session.execute(
        select(Conversation.id, Contact.display_name, Customer.display_name)
        .join(Contact, Contact.id == Conversation.contact_id)
        .join(Customer, Customer.id == Conversation.customer_id)
        .where(Conversation.id.in_(ids))
    )
    last = (
        select(func.max(Message.id))
        # What a person said last: the bot's own notices ("you're number 1 in the queue")
        # would hide the customer's question in every queue item.
        .where(Message.conversation_id.in_(ids), Message.direction != "note",
               Message.sender.in_(("customer", "agent")))
        .group_by(Message.conversation_id)
    )
    rows = await session.execute(
        select(Message.conversation_id, Message.sender, Message.text, Message.payload,
               Message.created_at).where(Message.id.in_(last))
    )
    previews = {r.conversation_id: preview(r.sender, r.text, r.created_at, r.payload)
                for r in rows}
    # The contact's name is the customer's latest on that channel; the customer row keeps
    # the name first seen.
    return {cid: Glance(contact_name or customer_name or "", previews.get(cid))
            for cid, contact_name, customer_name in names}


async def with_glances(session: AsyncSession, events: Sequence[Event]) -> list[Event]:
    """The events, those about a conversation with its customer's name and last message as
    they are in this transaction now."""
    found = await glances(session, (e.conversation_id for e in events
                                    if e.conversation_id is not None))
    out = []
    for event in events:
        glance = found.get(event.conversation_id) if event.conversation_id is not None else None
        if glance is not None:
            event = dataclasses.replace(event, customer_name=glance.customer_name,
                                        preview=glance.preview)
        out.append(event)
    return out
