"""Recording a touchpoint that changes no conversation state (availability, an edited or
ignored update, a failed delivery); conversation steps are written from the core's decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Conversation, Touchpoint
from carebot.domain.states import EFFORT


def record(
    session: AsyncSession,
    conversation: Conversation | None,
    kind: str,
    *,
    actor: str,
    channel: str,
    at: datetime,
    agent_id: int | None = None,
    message_id: int | None = None,
    faq_id: str | None = None,
    score: float | None = None,
    wait_ms: int | None = None,
    details: dict[str, Any] | None = None,
    customer_id: int | None = None,
) -> Touchpoint:
    """Add one touchpoint (flushed with the session) and add its effort to the conversation."""
    effort = EFFORT.get(kind, 0)
    if conversation is not None:
        conversation.effort_score += effort
        customer_id = conversation.customer_id
    tp = Touchpoint(
        conversation_id=conversation.id if conversation is not None else None,
        customer_id=customer_id,
        kind=kind,
        actor=actor,
        channel=channel,
        agent_id=agent_id,
        message_id=message_id,
        faq_id=faq_id,
        score=score,
        effort=effort,
        wait_ms=wait_ms,
        outcome=conversation.status if conversation is not None else None,
        details=details,
        created_at=at,
    )
    session.add(tp)
    return tp
