"""The outbox: outbound messages written in the same transaction as the decision behind them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from carebot.care.messages import OutboundMessage
from carebot.db.models import Conversation, Message, OutboxMessage


async def enqueue(
    session: AsyncSession,
    conv: Conversation,
    recipient: str,
    reply: OutboundMessage,
    now: datetime,
    *,
    sender: str,
    in_reply_to: int | None = None,
    agent_id: int | None = None,
    delivered_inline: bool = False,
) -> Message:
    """Store the reply as a message and an outbox row; inline replies are already delivered."""
    buttons = [b.to_dict() for b in reply.buttons] or None
    message = Message(
        conversation_id=conv.id,
        channel=conv.channel,
        direction="out",
        sender=sender,
        agent_id=agent_id,
        text=reply.text,
        buttons=buttons,
        in_reply_to=in_reply_to,
        created_at=now,
    )
    session.add(message)
    await session.flush()
    session.add(
        OutboxMessage(
            message_id=message.id,
            conversation_id=conv.id,
            channel=conv.channel,
            recipient=recipient,
            text=reply.text,
            buttons=buttons,
            status="sent" if delivered_inline else "pending",
            attempts=1 if delivered_inline else 0,
            next_attempt_at=now,
            created_at=now,
            sent_at=now if delivered_inline else None,
        )
    )
    return message
