"""Erasing a person: their texts and identifiers go, the anonymous counts the statistics need
stay.

In one transaction, for every customer linked as the person (`carebot.routing.linked`):

- open conversations are resolved by the system (code `erased`, no survey) and open surveys
  withdrawn, through the decision core, so nothing more is said or sent to them;
- every message of their conversations loses its text, payload and channel message id (which
  holds the chat id on Telegram); survey comments go; touchpoint details lose the keys that
  hold what they typed (`PERSONAL_DETAIL_KEYS`);
- outbox rows for them lose text and recipient, and those not yet sent are cancelled;
- their contacts' channel ids become `erased:<contact id>:<random>` (a later message from the
  same account is a new, unknown customer) and names are emptied; receipts of their edited
  messages (whose ids embed the chat id) are deleted;
- the rows themselves remain: conversations with their timestamps, counters and codes,
  touchpoints with their kinds, efforts and waits, surveys with their scores. So every
  statistic of a past period reads the same numbers before and after.

Erasing twice changes nothing the second time. SQLite runs with `secure_delete`, so old
texts are overwritten in the file, and the WAL is truncated after the commit
(`carebot.db.checkpoint.truncate_wal`); PostgreSQL keeps dead row versions until VACUUM
(docs/data-protection.md).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, case, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents import audit
from carebot.db.models import (
    Agent,
    Base,
    ChannelReceipt,
    Contact,
    Conversation,
    Customer,
    CustomerErasure,
    Message,
    OutboxMessage,
    Survey,
    Touchpoint,
)
from carebot.domain.events import Effects
from carebot.routing import apply, core
from carebot.routing.actions import _state, _survey_state
from carebot.routing.linked import group_ids
from carebot.routing.policy import Policy

log = logging.getLogger(__name__)

# Touchpoint detail keys that can hold what a customer typed or their channel ids: the typed
# text of a handoff or an edit, a button payload, a channel message id ("chat:message").
PERSONAL_DETAIL_KEYS = frozenset({"text", "payload", "message_id", "comment", "name"})
ERASED_PREFIX = "erased:"
CANCELLED = "cancelled: the customer's data was erased"
UNSENT = ("pending", "sending")


@dataclass
class ErasureReport:
    """What an erasure changed (all zero, with `already_erased`, the second time)."""

    customer_id: int
    customer_ids: list[int] = field(default_factory=list)
    already_erased: bool = False
    conversations: int = 0
    closed: int = 0
    messages: int = 0
    touchpoints: int = 0
    surveys: int = 0
    outbox: int = 0
    contacts: int = 0
    receipts: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def strip_details(details: dict[str, Any] | None) -> dict[str, Any] | None:
    """Touchpoint details without what a customer typed (None when nothing is left)."""
    if not details:
        return details
    kept = {k: v for k, v in details.items() if k not in PERSONAL_DETAIL_KEYS}
    return kept or None


async def erase(
    session: AsyncSession, customer_id: int, now: datetime, actor: Agent | audit.AuditActor,
    effects: Effects, policy: Policy,
) -> ErasureReport:
    """Erase the person `customer_id` belongs to, in the session's transaction."""
    ids = await group_ids(session, customer_id, lock=True)
    report = ErasureReport(customer_id, ids)
    done = set(await session.scalars(
        select(CustomerErasure.customer_id).where(CustomerErasure.customer_id.in_(ids))))
    contacts = list(await session.scalars(
        select(Contact).where(Contact.customer_id.in_(ids)).order_by(Contact.id)
        .with_for_update()))
    conv_ids = await _lock_conversations(session, ids)
    report.conversations = len(conv_ids)
    report.closed = await _close_open(session, conv_ids, contacts, now, effects, policy)
    in_convs = select(Conversation.id).where(Conversation.customer_id.in_(ids))

    report.messages = await _rowcount(session, update(Message).where(
        Message.conversation_id.in_(in_convs),
        or_(Message.text != "", Message.payload.is_not(None), Message.external_id.is_not(None)),
    ).values(text="", payload=None, external_id=None))
    report.surveys = await _rowcount(session, update(Survey).where(
        Survey.conversation_id.in_(in_convs), Survey.comment.is_not(None),
    ).values(comment=None))
    report.touchpoints = await _strip_touchpoints(session, ids, in_convs)
    report.outbox = await _clear_outbox(session, contacts)

    for contact in contacts:
        if contact.external_id.startswith(ERASED_PREFIX):
            continue
        # Receipts of the contact's edited messages carry its chat id ("chat:message:edit…"):
        # the ids from "<id>:" up to "<id>;" (the next character), an index range.
        report.receipts += await _rowcount(session, delete(ChannelReceipt).where(
            ChannelReceipt.channel == contact.channel,
            ChannelReceipt.external_id >= contact.external_id + ":",
            ChannelReceipt.external_id < contact.external_id + ";",
        ))
        contact.external_id = f"{ERASED_PREFIX}{contact.id}:{secrets.token_hex(6)}"
        contact.display_name = ""
        report.contacts += 1
    # The remembered language goes too: with the name gone, it is what is left about them.
    await _rowcount(session, update(Customer).where(
        Customer.id.in_(ids), (Customer.display_name != "") | Customer.language.is_not(None),
    ).values(display_name="", language=None))
    for cid in ids:
        if cid not in done:
            session.add(CustomerErasure(customer_id=cid, erased_at=now))
    report.already_erased = set(ids) <= done and not any(
        (report.closed, report.messages, report.surveys, report.touchpoints, report.outbox,
         report.contacts, report.receipts))
    await session.flush()
    audit.record(session, actor, "customer.erased", "customer", customer_id, {
        "customer_ids": ids, "already_erased": report.already_erased,
        "conversations": report.conversations, "closed": report.closed,
        "messages": report.messages, "touchpoints": report.touchpoints,
        "surveys": report.surveys, "outbox": report.outbox, "contacts": report.contacts,
    }, at=now)
    log.info("customer %d erased (customers %s): %d conversations, %d messages, %d outbox rows%s",
             customer_id, ids, report.conversations, report.messages, report.outbox,
             " (already erased: nothing changed)" if report.already_erased else "")
    return report


async def _lock_conversations(session: AsyncSession, ids: list[int]) -> list[int]:
    """Hold every conversation of the person (PostgreSQL), in id order, until no new one
    appears: the inbound writer then skips this customer until the erasure commits, and a
    conversation it opened meanwhile is in the set."""
    seen: list[int] = []
    while True:
        found = list(await session.scalars(
            select(Conversation.id).where(Conversation.customer_id.in_(ids))
            .order_by(Conversation.id).with_for_update()))
        if found == seen:
            return found
        seen = found


async def _close_open(
    session: AsyncSession, conv_ids: list[int], contacts: list[Contact], now: datetime,
    effects: Effects, policy: Policy,
) -> int:
    """Resolve open conversations and withdraw open surveys, through the core."""
    if not conv_ids:
        return 0
    open_surveys = select(Survey.conversation_id).where(
        Survey.conversation_id.in_(conv_ids), Survey.status.in_(("scheduled", "sent")))
    rows = list(await session.scalars(
        select(Conversation).where(
            Conversation.id.in_(conv_ids),
            or_(Conversation.status != "resolved", Conversation.id.in_(open_surveys)),
        ).order_by(Conversation.id).execution_options(populate_existing=True)))
    recipients = {c.id: c.external_id for c in contacts}
    for conv in rows:
        survey = await session.scalar(
            select(Survey).where(Survey.conversation_id == conv.id,
                                 Survey.status.in_(("scheduled", "sent")))
            .order_by(Survey.id.desc()).limit(1))
        d = core.close_for_erasure(_state(conv), _survey_state(survey), now)
        await apply.write(session, d, recipients.get(conv.contact_id, ""), policy, effects)
    return len(rows)


async def _strip_touchpoints(session: AsyncSession, ids: list[int], in_convs: Any) -> int:
    # Two indexed lookups (by conversation; outside any, by the customer): an OR of the two
    # would read every touchpoint.
    rows = [*(await session.execute(
        select(Touchpoint.id, Touchpoint.details).where(
            Touchpoint.conversation_id.in_(in_convs), Touchpoint.details.is_not(None))
    )).all(), *(await session.execute(
        select(Touchpoint.id, Touchpoint.details).where(
            Touchpoint.conversation_id.is_(None), Touchpoint.customer_id.in_(ids),
            Touchpoint.details.is_not(None))
    )).all()]
    changed = [(tid, strip_details(details)) for tid, details in rows
               if details and PERSONAL_DETAIL_KEYS & set(details)]
    if changed:
        table = Base.metadata.tables["touchpoints"]
        await session.execute(
            update(table).where(table.c.id == bindparam("b_id"))
            .values(details=bindparam("b_details")),
            [{"b_id": tid, "b_details": details} for tid, details in changed],
        )
    return len(changed)


async def _clear_outbox(session: AsyncSession, contacts: list[Contact]) -> int:
    # Everything sent to a contact is addressed to its channel id (the outbox has an index on
    # channel and recipient; a contact erased before has nothing left there).
    mine: list[ColumnElement[bool]] = [
        and_(OutboxMessage.channel == c.channel, OutboxMessage.recipient == c.external_id)
        for c in contacts if not c.external_id.startswith(ERASED_PREFIX)]
    if not mine:
        return 0
    theirs = or_(*mine)
    # Not sent yet: never will be. A worker sending one right now cannot mark it sent (its
    # claim no longer matches), and the row says why.
    await _rowcount(session, update(OutboxMessage).where(
        theirs, OutboxMessage.status.in_(UNSENT),
    ).values(status="failed", last_error=CANCELLED, claim_token=None, claimed_until=None))
    return await _rowcount(session, update(OutboxMessage).where(
        theirs,
        or_(OutboxMessage.text != "", OutboxMessage.recipient != "",
            OutboxMessage.external_message_id.is_not(None),
            and_(OutboxMessage.last_error.is_not(None), OutboxMessage.last_error != CANCELLED)),
    ).values(
        text="", recipient="", external_message_id=None,
        last_error=case((OutboxMessage.last_error == CANCELLED, CANCELLED), else_=None),
    ))


async def _rowcount(session: AsyncSession, statement: Any) -> int:
    result = await session.execute(
        statement.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
