"""Finding the customer, their contact and the conversation an inbound message belongs to."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Contact, Conversation, Customer
from carebot.routing import touchpoints

OPEN_STATUSES = ("bot", "queued", "assigned")


async def find_or_create_contact(
    session: AsyncSession, channel: str, external_id: str, display_name: str, now: datetime
) -> Contact:
    """The contact for (channel, external id), creating it and its customer on first contact."""
    contact = await session.scalar(
        select(Contact).where(Contact.channel == channel, Contact.external_id == external_id)
    )
    if contact is not None:
        if display_name and contact.display_name != display_name:
            contact.display_name = display_name
        return contact
    customer = Customer(display_name=display_name, created_at=now)
    session.add(customer)
    await session.flush()
    contact = Contact(
        customer_id=customer.id,
        channel=channel,
        external_id=external_id,
        display_name=display_name,
        created_at=now,
    )
    session.add(contact)
    await session.flush()
    return contact


async def latest_conversation(session: AsyncSession, contact: Contact) -> Conversation | None:
    """The contact's most recent conversation, locked (FOR UPDATE on PostgreSQL) so concurrent
    messages of one customer are applied one after another."""
    return await session.scalar(
        select(Conversation)
        .where(Conversation.contact_id == contact.id)
        .order_by(Conversation.id.desc())
        .limit(1)
        .with_for_update()
    )


async def current_conversation(
    session: AsyncSession,
    contact: Contact,
    conv: Conversation | None,
    now: datetime,
    reopen_window: timedelta,
) -> Conversation:
    """The open conversation: `conv` (the latest) if open, reopened if recently resolved, or new."""
    if conv is not None and conv.status in OPEN_STATUSES:
        return conv
    if (
        conv is not None
        and conv.resolved_at is not None
        and conv.resolved_by != "spam"
        and now - conv.resolved_at <= reopen_window
    ):
        previous = {"resolved_by": conv.resolved_by, "resolution_code": conv.resolution_code}
        conv.status = "bot"
        conv.reopen_count += 1
        conv.resolved_at = None
        conv.resolved_by = None
        conv.resolution_code = None
        conv.pending_faq_id = None
        conv.failed_bot_turns = 0
        conv.assigned_agent_id = None
        conv.updated_at = now
        touchpoints.record(
            session, conv, "reopened", actor="customer", channel=conv.channel, at=now,
            details=previous,
        )
        return conv
    conv = Conversation(
        customer_id=contact.customer_id,
        contact_id=contact.id,
        channel=contact.channel,
        status="bot",
        opened_at=now,
        updated_at=now,
        failed_bot_turns=0,
        customer_messages=0,
        bot_answers=0,
        agent_messages=0,
        handoffs=0,
        transfers=0,
        reopen_count=0,
        effort_score=0,
    )
    session.add(conv)
    await session.flush()
    return conv


def resolve(
    session: AsyncSession,
    conv: Conversation,
    now: datetime,
    *,
    by: str,
    actor: str,
    code: str | None = None,
    agent_id: int | None = None,
) -> None:
    """Mark the conversation resolved and log it."""
    conv.status = "resolved"
    conv.resolved_at = now
    conv.resolved_by = by
    conv.resolution_code = code
    conv.pending_faq_id = None
    conv.updated_at = now
    touchpoints.record(
        session, conv, "resolved", actor=actor, channel=conv.channel, at=now,
        agent_id=agent_id, details={"resolved_by": by, "resolution_code": code},
    )
