"""Inbound updates that are noted but not routed: an edited message, a message in a group chat.

They get a touchpoint (so what the customer did is on record and, for an edit, in front of the
agent), sometimes a short reply, and nothing else: no conversation is opened or reopened and the
bot does not answer again. A redelivered update changes nothing (`channel_receipts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db import touchpoints
from carebot.db.models import ChannelReceipt, Contact, Conversation
from carebot.db.previews import with_glances
from carebot.delivery.outbox import enqueue_notice
from carebot.domain.clock import Clock
from carebot.domain.events import Effects, Event
from carebot.domain.messages import OutboundMessage


@dataclass(frozen=True)
class UnroutedMessage:
    """What a channel noted about an update it does not route."""

    channel: str
    # The update's id, unique per channel, so a redelivery is recognised.
    external_id: str
    # Touchpoint kind: "message_edited", "ignored", …
    kind: str
    # The sender's id on the channel (their contact's external id), when there is a sender.
    user_id: str | None = None
    # Attach the touchpoint to the sender's latest conversation (a private chat), or only to
    # the customer (a group chat is not part of their support conversation).
    in_conversation: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    # An optional reply and where to send it (a chat id on the channel).
    reply: OutboundMessage | None = None
    reply_to: str | None = None
    # The sender's language as the channel knows it: the reply is said in it.
    language: str | None = None


async def note_unrouted(
    sessions: async_sessionmaker[AsyncSession], note: UnroutedMessage, clock: Clock
) -> tuple[bool, Effects]:
    """Record the note's touchpoint and queue its reply, once.

    Returns (False, no effects) for a redelivery. Agents with the conversation are told about
    an edit (a `message` event marked `edited`).
    """
    effects = Effects()
    try:
        async with sessions.begin() as session:
            seen = await session.scalar(
                select(ChannelReceipt.id).where(
                    ChannelReceipt.channel == note.channel,
                    ChannelReceipt.external_id == note.external_id,
                )
            )
            if seen is not None:
                return False, Effects()
            now = clock()
            session.add(ChannelReceipt(
                channel=note.channel, external_id=note.external_id, created_at=now
            ))
            await session.flush()  # the unique (channel, external_id) guard fires here
            await _record(session, note, now, effects)
            if note.reply is not None and note.reply_to is not None:
                enqueue_notice(session, note.channel, note.reply_to, note.reply, now)
                effects.outbox_pending = True
    except IntegrityError:
        return False, Effects()  # a concurrent redelivery got there first
    return True, effects


async def latest_conversation(session: AsyncSession, contact: Contact) -> Conversation | None:
    """The contact's most recent conversation."""
    return await session.scalar(
        select(Conversation)
        .where(Conversation.contact_id == contact.id)
        .order_by(Conversation.id.desc())
        .limit(1)
    )


async def _record(
    session: AsyncSession, note: UnroutedMessage, now: datetime, effects: Effects
) -> None:
    contact = None
    if note.user_id is not None:
        contact = await session.scalar(
            select(Contact).where(
                Contact.channel == note.channel, Contact.external_id == note.user_id
            )
        )
    conv: Conversation | None = None
    if contact is not None and note.in_conversation:
        conv = await latest_conversation(session, contact)
    touchpoints.record(
        session, conv, note.kind, actor="customer", channel=note.channel, at=now,
        details=note.details or None,
        customer_id=contact.customer_id if contact is not None else None,
    )
    if conv is not None and conv.status in {"queued", "assigned"}:
        event = Event(
            "message", conv.id,
            agent_ids=(conv.assigned_agent_id,) if conv.assigned_agent_id else (),
            queue=conv.status == "queued",
            data={**note.details, "edited": note.kind == "message_edited",
                  "status": conv.status},
        )
        for glanced in await with_glances(session, [event]):
            effects.emit(glanced)
