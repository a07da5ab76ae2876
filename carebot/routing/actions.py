"""What agents do in the console: read conversations, reply, note, transfer, resolve, claim.

Every action is a touchpoint with the acting agent. Access: agents see and act on the
conversations assigned to them and on the queue; managers and admins on everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents import assignment
from carebot.db.models import Agent, Contact, Conversation, Message, Touchpoint
from carebot.delivery.outbox import enqueue
from carebot.domain.clock import ms_between
from carebot.domain.events import Effects, Event
from carebot.domain.messages import OutboundMessage
from carebot.routing import surveys, touchpoints
from carebot.routing.conversations import OPEN_STATUSES, resolve
from carebot.routing.surveys import SurveyPolicy

STATUSES = ("bot", "queued", "assigned", "resolved")
MAX_RESOLUTION_CODE = 64
BACK_TO_BOT = "You're back with the assistant. Ask me anything, or send /human for a person."


class ConsoleError(Exception):
    """An action that cannot be done; `status` is the HTTP status that fits."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_supervisor(agent: Agent) -> bool:
    """Managers and admins see and act on every conversation."""
    return agent.role in {"manager", "admin"}


def can_access(agent: Agent, conv: Conversation) -> bool:
    """Whether the agent may see and act on this conversation."""
    return (
        is_supervisor(agent)
        or conv.assigned_agent_id == agent.id
        or conv.status == "queued"
    )


@dataclass(frozen=True)
class Page:
    """One page of a listing."""

    items: list[Conversation]
    total: int


async def list_conversations(
    session: AsyncSession,
    agent: Agent,
    *,
    status: str | None = None,
    assignee: int | None = None,
    channel: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Conversations the agent may see, newest activity first, filtered and paginated."""
    stmt = select(Conversation)
    if not is_supervisor(agent):
        stmt = stmt.where(
            (Conversation.assigned_agent_id == agent.id) | (Conversation.status == "queued")
        )
    if status is not None:
        stmt = stmt.where(Conversation.status == status)
    if assignee is not None:
        stmt = stmt.where(Conversation.assigned_agent_id == assignee)
    if channel is not None:
        stmt = stmt.where(Conversation.channel == channel)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = await session.scalars(
        stmt.order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return Page(list(rows), int(total or 0))


async def load_for(
    session: AsyncSession, agent: Agent, conversation_id: int, *, lock: bool = False
) -> Conversation:
    """The conversation if it exists and the agent may access it (404 / 403 otherwise)."""
    stmt = select(Conversation).where(Conversation.id == conversation_id)
    if lock:
        stmt = stmt.with_for_update()
    conv = await session.scalar(stmt)
    if conv is None:
        raise ConsoleError(404, f"conversation {conversation_id} not found")
    if not can_access(agent, conv):
        raise ConsoleError(403, f"conversation {conversation_id} is not yours")
    return conv


async def conversation_detail(
    session: AsyncSession, agent: Agent, conversation_id: int
) -> dict[str, Any]:
    """The conversation with its messages, touchpoints and the customer's other conversations."""
    conv = await load_for(session, agent, conversation_id)
    messages = await session.scalars(
        select(Message).where(Message.conversation_id == conv.id).order_by(Message.id)
    )
    tps = await session.scalars(
        select(Touchpoint).where(Touchpoint.conversation_id == conv.id).order_by(Touchpoint.id)
    )
    contact = await session.get(Contact, conv.contact_id)
    earlier = await session.scalars(
        select(Conversation)
        .where(Conversation.customer_id == conv.customer_id, Conversation.id != conv.id)
        .order_by(Conversation.id.desc())
        .limit(50)
    )
    return {
        **conversation_summary(conv),
        "customer": {
            "id": conv.customer_id,
            "name": contact.display_name if contact else "",
            "channel": conv.channel,
            "external_id": contact.external_id if contact else None,
        },
        "messages": [message_dict(m) for m in messages],
        "touchpoints": [touchpoint_dict(t) for t in tps],
        "other_conversations": [conversation_summary(c) for c in earlier],
    }


async def reply(
    session: AsyncSession, agent: Agent, conversation_id: int, text: str, now: datetime,
    effects: Effects,
) -> Message:
    """Send the agent's reply to the customer through the outbox."""
    conv = await load_for(session, agent, conversation_id, lock=True)
    if conv.status == "queued":
        raise ConsoleError(409, "conversation is in the queue; claim it before replying")
    if conv.status != "assigned" or (
        conv.assigned_agent_id != agent.id and not is_supervisor(agent)
    ):
        raise ConsoleError(409, f"conversation is {conv.status}, not assigned to you")
    contact = await session.get(Contact, conv.contact_id)
    assert contact is not None
    last_reply = await session.scalar(
        select(func.max(Message.created_at)).where(
            Message.conversation_id == conv.id, Message.sender == "agent",
            Message.direction == "out",
        )
    )
    waiting_since = conv.last_customer_message_at
    if last_reply is not None and waiting_since is not None and waiting_since <= last_reply:
        waiting_since = None  # the customer already had an answer to their last message
    message = await enqueue(
        session, conv, contact.external_id, OutboundMessage(text), now,
        sender="agent", agent_id=agent.id,
    )
    effects.outbox_pending = True
    conv.agent_messages += 1
    conv.updated_at = now
    if conv.first_human_response_ms is None:
        # Human first response runs from the handoff, never from the bot's time.
        conv.first_human_response_ms = ms_between(conv.queued_at, now)
    touchpoints.record(
        session, conv, "agent_reply", actor="agent", channel=conv.channel, at=now,
        agent_id=agent.id, message_id=message.id, wait_ms=ms_between(waiting_since, now),
    )
    effects.emit(_status_event("agent_reply", conv, {"text": text, "agent_id": agent.id}))
    return message


async def note(
    session: AsyncSession, agent: Agent, conversation_id: int, text: str, now: datetime,
    effects: Effects,
) -> Message:
    """A private note on the conversation: stored and shown to agents, never sent."""
    conv = await load_for(session, agent, conversation_id, lock=True)
    message = Message(
        conversation_id=conv.id, channel=conv.channel, direction="note", sender="agent",
        agent_id=agent.id, text=text, created_at=now,
    )
    session.add(message)
    await session.flush()
    touchpoints.record(
        session, conv, "note", actor="agent", channel=conv.channel, at=now,
        agent_id=agent.id, message_id=message.id,
    )
    effects.emit(_status_event("note", conv, {"text": text, "agent_id": agent.id}))
    return message


async def claim(
    session: AsyncSession, agent: Agent, conversation_id: int, now: datetime, effects: Effects
) -> Conversation:
    """Take a queued conversation by hand (within the agent's capacity)."""
    conv = await session.scalar(
        select(Conversation).where(Conversation.id == conversation_id).with_for_update()
    )
    if conv is None:
        raise ConsoleError(404, f"conversation {conversation_id} not found")
    if conv.status != "queued":
        # Anyone may claim from the queue, so losing a race is a conflict, not a secret.
        taken = " by another agent" if conv.assigned_agent_id not in (None, agent.id) else ""
        raise ConsoleError(409, f"conversation is {conv.status}{taken}, not queued")
    locked = await session.scalar(select(Agent).where(Agent.id == agent.id).with_for_update())
    assert locked is not None
    if await assignment.agent_load(session, agent.id) >= agent.capacity:
        raise ConsoleError(409, f"you are at your capacity of {agent.capacity} conversations")
    assignment.assign(
        session, conv, locked, now, effects, actor="agent", actor_agent_id=agent.id
    )
    return conv


async def transfer(
    session: AsyncSession, agent: Agent, conversation_id: int, to_agent_id: int | None,
    now: datetime, effects: Effects,
) -> Conversation:
    """Pass the conversation to another agent, or back to the queue (`to_agent_id` None)."""
    conv = await load_for(session, agent, conversation_id, lock=True)
    if conv.status not in {"assigned", "queued"}:
        raise ConsoleError(409, f"conversation is {conv.status}; only a person's can be moved")
    previous = conv.assigned_agent_id
    target: Agent | None = None
    if to_agent_id is not None:
        target = await session.scalar(
            select(Agent).where(Agent.id == to_agent_id).with_for_update()
        )
        if target is None or target.disabled:
            raise ConsoleError(404, f"agent {to_agent_id} not found")
        if target.id == previous:
            raise ConsoleError(409, "conversation is already assigned to that agent")
        if await assignment.agent_load(session, target.id) >= target.capacity:
            raise ConsoleError(409, f"{target.name} has no free capacity")
    conv.transfers += 1
    touchpoints.record(
        session, conv, "transfer", actor="agent", channel=conv.channel, at=now,
        agent_id=agent.id,
        details={"from_agent_id": previous, "to_agent_id": to_agent_id},
    )
    if target is not None:
        assignment.assign(session, conv, target, now, effects, actor="agent",
                          actor_agent_id=agent.id)
    else:
        conv.status = "queued"
        conv.assigned_agent_id = None
        conv.queued_at = now
        conv.updated_at = now
        await session.flush()
        exclude = {previous} if previous is not None else set()
        picked = await assignment.pick_agent(session, exclude=exclude)
        if picked is not None:
            assignment.assign(session, conv, picked, now, effects)
        else:
            effects.emit(Event("queued", conv.id, queue=True, data={"reason": "transfer"}))
    if previous is not None:
        effects.emit(Event("unassigned", conv.id, agent_ids=(previous,)))
        await _refill(session, now, effects)
    return conv


async def hand_back(
    session: AsyncSession, agent: Agent, conversation_id: int, now: datetime, effects: Effects
) -> Conversation:
    """Give the conversation back to the bot and tell the customer."""
    conv = await load_for(session, agent, conversation_id, lock=True)
    if conv.status not in {"assigned", "queued"}:
        raise ConsoleError(409, f"conversation is {conv.status}, not with a person")
    previous = conv.assigned_agent_id
    conv.status = "bot"
    conv.assigned_agent_id = None
    conv.failed_bot_turns = 0
    conv.updated_at = now
    touchpoints.record(
        session, conv, "handback", actor="agent", channel=conv.channel, at=now,
        agent_id=agent.id,
    )
    contact = await session.get(Contact, conv.contact_id)
    assert contact is not None
    await enqueue(session, conv, contact.external_id, OutboundMessage(BACK_TO_BOT), now,
                  sender="system", agent_id=agent.id)
    effects.outbox_pending = True
    effects.emit(_status_event("handback", conv, {"agent_id": agent.id}, previous))
    await _refill(session, now, effects)
    return conv


async def resolve_by_agent(
    session: AsyncSession, agent: Agent, conversation_id: int, code: str, now: datetime,
    effects: Effects, survey_policy: SurveyPolicy,
) -> Conversation:
    """Resolve with a resolution code (e.g. `answered`, `refund_issued`, `spam`)."""
    conv = await load_for(session, agent, conversation_id, lock=True)
    if conv.status not in OPEN_STATUSES:
        raise ConsoleError(409, "conversation is already resolved")
    resolve(session, conv, now, by="agent", actor="agent", code=code, agent_id=agent.id)
    effects.emit(_status_event("resolved", conv, {"agent_id": agent.id, "code": code}))
    question = await surveys.on_resolved(session, conv, now, survey_policy)
    if question is not None:
        contact = await session.get(Contact, conv.contact_id)
        assert contact is not None
        await enqueue(session, conv, contact.external_id, question, now, sender="system")
        effects.outbox_pending = True
    await _refill(session, now, effects)
    return conv


async def set_availability(
    session: AsyncSession, agent: Agent, status: str, now: datetime, effects: Effects
) -> Agent:
    """Go online, away or offline; going online pulls waiting conversations."""
    locked = await session.scalar(select(Agent).where(Agent.id == agent.id).with_for_update())
    assert locked is not None
    if locked.status != status:
        if status == "online":
            locked.idle_since = now
        locked.status = status
        touchpoints.record(
            session, None, "availability", actor="agent", channel="console", at=now,
            agent_id=agent.id, details={"status": status},
        )
        effects.emit(Event("availability", None, agent_ids=(agent.id,),
                           data={"agent_id": agent.id, "status": status}))
    await session.flush()
    if status == "online":
        await _refill(session, now, effects)
    return locked


async def _refill(session: AsyncSession, now: datetime, effects: Effects) -> None:
    # Capacity may have freed up: the oldest waiting conversations go first.
    await session.flush()
    await assignment.assign_waiting(session, now, effects)


def _status_event(
    kind: str, conv: Conversation, data: dict[str, Any], also: int | None = None
) -> Event:
    agents = {a for a in (conv.assigned_agent_id, also) if a is not None}
    return Event(kind, conv.id, agent_ids=tuple(sorted(agents)),
                 data={"status": conv.status, **data})


def conversation_summary(conv: Conversation) -> dict[str, Any]:
    """A conversation's summary fields as JSON."""
    return {
        "id": conv.id,
        "customer_id": conv.customer_id,
        "channel": conv.channel,
        "status": conv.status,
        "assigned_agent_id": conv.assigned_agent_id,
        "opened_at": _iso(conv.opened_at),
        "updated_at": _iso(conv.updated_at),
        "queued_at": _iso(conv.queued_at),
        "assigned_at": _iso(conv.assigned_at),
        "resolved_at": _iso(conv.resolved_at),
        "resolved_by": conv.resolved_by,
        "resolution_code": conv.resolution_code,
        "customer_messages": conv.customer_messages,
        "bot_answers": conv.bot_answers,
        "agent_messages": conv.agent_messages,
        "handoffs": conv.handoffs,
        "transfers": conv.transfers,
        "reopen_count": conv.reopen_count,
        "effort_score": conv.effort_score,
        "first_bot_response_ms": conv.first_bot_response_ms,
        "first_human_response_ms": conv.first_human_response_ms,
    }


def message_dict(m: Message) -> dict[str, Any]:
    """A message as JSON."""
    return {
        "id": m.id,
        "direction": m.direction,
        "sender": m.sender,
        "agent_id": m.agent_id,
        "text": m.text,
        "payload": m.payload,
        "buttons": m.buttons or [],
        "created_at": _iso(m.created_at),
    }


def touchpoint_dict(t: Touchpoint) -> dict[str, Any]:
    """A touchpoint as JSON."""
    return {
        "id": t.id,
        "kind": t.kind,
        "actor": t.actor,
        "agent_id": t.agent_id,
        "faq_id": t.faq_id,
        "score": t.score,
        "effort": t.effort,
        "wait_ms": t.wait_ms,
        "outcome": t.outcome,
        "details": t.details,
        "created_at": _iso(t.created_at),
    }


def agent_dict(agent: Agent, load: int | None = None) -> dict[str, Any]:
    """An agent as JSON (never the token hash)."""
    data: dict[str, Any] = {
        "id": agent.id,
        "name": agent.name,
        "role": agent.role,
        "capacity": agent.capacity,
        "status": agent.status,
        "disabled": agent.disabled,
    }
    if load is not None:
        data["open_conversations"] = load
    return data


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
