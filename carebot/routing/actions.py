"""What agents do in the console: reply, note, transfer, resolve, claim; and what admins do
to agents.

Each action loads the conversation (locked) and the facts it needs, asks the decision core
(`carebot.routing.core`) what happens, and writes that (`carebot.routing.apply`). Access
(`core.can_act`): agents act on the conversations assigned to them and on the queue; managers
and admins on everything. What the console reads is in `carebot.routing.views`. Lock order,
everywhere: the conversation row first, then agent rows (FOR NO KEY UPDATE, which does not
conflict with the key-share locks that inserts referencing an agent take).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents import audit
from carebot.agents.accounts import (
    AgentError,
    change_agent,
    enable_agent,
    keep_an_admin,
    lock_agent,
    revoke_web_sessions,
)
from carebot.db import touchpoints
from carebot.db.batch_sql import agent_facts_query
from carebot.db.models import Agent, Contact, Conversation, Message, Survey, Touchpoint
from carebot.db.models import ResolutionCode as ResolutionCodeRow
from carebot.domain.events import Effects, Event
from carebot.domain.redaction import mask_cards
from carebot.routing import apply, core
from carebot.routing.agent_facts import agent_facts, facts_of
from carebot.routing.decision import (
    CONV_COLUMNS,
    SURVEY_COLUMNS,
    AgentFacts,
    ConvState,
    Decision,
    Facts,
    NotAllowed,
    SurveyState,
)
from carebot.routing.policy import Policy, ResolutionCode

STATUSES = ("bot", "queued", "assigned", "resolved")
MAX_RESOLUTION_CODE = 64
# Waiting conversations one action assigns at most (agents free up one at a time).
REFILL_LIMIT = 50


class ConsoleError(Exception):
    """An action that cannot be done; `status` is the HTTP status that fits."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_supervisor(agent: Agent) -> bool:
    """Managers and admins see and act on every conversation."""
    return agent.role in {"manager", "admin"}


def viewer(agent: Agent) -> AgentFacts:
    """The agent as the core's access rules see them (their load plays no part there)."""
    return AgentFacts(agent.id, agent.name, agent.capacity, 0, agent.role, agent.status,
                      agent.disabled)


async def load_for(
    session: AsyncSession, agent: Agent, conversation_id: int, *, lock: bool = False
) -> Conversation:
    """The conversation if it exists and the agent may act on it (404 / 403 otherwise; who
    may only read it is `carebot.routing.views.load_readable`'s business).

    With `lock`, access is checked before the row is locked too: an agent acting on a
    conversation that has moved on (a stale console) is refused without making the inbound
    writer put that customer's messages off."""
    stmt = select(Conversation).where(Conversation.id == conversation_id)
    conv = _accessible(agent, conversation_id, await session.scalar(stmt))
    if lock:  # and again once locked: it may have moved while this waited for the lock
        conv = _accessible(agent, conversation_id, await session.scalar(
            stmt.with_for_update().execution_options(populate_existing=True)))
    return conv


def _accessible(agent: Agent, conversation_id: int, conv: Conversation | None) -> Conversation:
    if conv is None:
        raise ConsoleError(404, f"conversation {conversation_id} not found")
    if not core.can_act(viewer(agent), _state(conv)):
        raise ConsoleError(403, f"conversation {conversation_id} is not yours")
    return conv


async def _actor(session: AsyncSession, agent: Agent, *, lock: bool = False) -> AgentFacts:
    return await _agent_facts(session, agent.id, lock=lock)


async def _agent_facts(session: AsyncSession, agent_id: int, *, lock: bool = False) -> AgentFacts:
    """An agent's facts; `lock` holds their row (FOR NO KEY UPDATE: it does not conflict with
    the key-share locks inserts referencing the agent take) so their load is counted once."""
    if lock:
        await session.execute(
            select(Agent.id).where(Agent.id == agent_id).with_for_update(key_share=True)
        )
    return await _read_agent(session, agent_id)


async def _try_agent(session: AsyncSession, agent_id: int) -> AgentFacts | None:
    """The agent's facts under their row lock, or None while another transaction holds it
    (SKIP LOCKED: assignment never waits, so it never deadlocks on agents)."""
    locked = await session.scalar(
        select(Agent.id).where(Agent.id == agent_id)
        .with_for_update(key_share=True, skip_locked=True)
    )
    return None if locked is None else await _read_agent(session, agent_id)


async def _read_agent(session: AsyncSession, agent_id: int) -> AgentFacts:
    row = (await session.execute(
        agent_facts_query(online_only=False).where(Agent.id == agent_id)
    )).one_or_none()
    if row is None:
        raise ConsoleError(404, f"agent {agent_id} not found")
    return agent_facts(row)


async def _online_agents(session: AsyncSession) -> tuple[AgentFacts, ...]:
    return facts_of(list(await session.execute(agent_facts_query(online_only=True))))


def _survey_state(row: Survey | None) -> SurveyState | None:
    if row is None:
        return None
    return SurveyState.from_row({c: getattr(row, c) for c in SURVEY_COLUMNS})


def _state(conv: Conversation) -> ConvState:
    return ConvState.from_row({c: getattr(conv, c) for c in CONV_COLUMNS})


async def _recipient(session: AsyncSession, conv: Conversation | ConvState) -> str:
    contact = await session.get(Contact, conv.contact_id)
    assert contact is not None
    return contact.external_id


async def _commit(
    session: AsyncSession, conv: Conversation, d: Decision, policy: Policy, effects: Effects
) -> list[int]:
    ids = await apply.write(session, d, await _recipient(session, conv), policy, effects)
    await session.refresh(conv)
    return ids


def _decide(fn: Callable[[], Decision]) -> Decision:
    try:
        return fn()
    except NotAllowed as exc:
        raise ConsoleError(409, exc.message) from None


async def reply(
    session: AsyncSession, agent: Agent, conversation_id: int, text: str, now: datetime,
    effects: Effects, policy: Policy,
) -> Message:
    """Send the agent's reply to the customer through the outbox (card numbers masked: a
    chat is no place for them, whoever types one)."""
    text = mask_cards(text)
    conv = await load_for(session, agent, conversation_id, lock=True)
    last_reply = await session.scalar(
        select(func.max(Message.created_at)).where(
            Message.conversation_id == conv.id, Message.sender == "agent",
            Message.direction == "out",
        )
    )
    actor = await _actor(session, agent)
    d = _decide(lambda: core.reply(_state(conv), actor, text, now, last_reply, policy))
    return await _commit_message(session, conv, d, policy, effects)


async def note(
    session: AsyncSession, agent: Agent, conversation_id: int, text: str, now: datetime,
    effects: Effects, policy: Policy,
) -> Message:
    """A private note on the conversation: stored and shown to agents, never sent."""
    text = mask_cards(text)
    conv = await load_for(session, agent, conversation_id, lock=True)
    actor = await _actor(session, agent)
    d = _decide(lambda: core.note(_state(conv), actor, text, now))
    return await _commit_message(session, conv, d, policy, effects)


async def _commit_message(
    session: AsyncSession, conv: Conversation, d: Decision, policy: Policy, effects: Effects
) -> Message:
    """Write a decision that stores one message (a reply, a note) and return that message."""
    ids = await _commit(session, conv, d, policy, effects)
    message = await session.get(Message, ids[0])
    assert message is not None
    return message


async def claim(
    session: AsyncSession, agent: Agent, conversation_id: int, now: datetime, effects: Effects,
    policy: Policy,
) -> Conversation:
    """Take a queued conversation by hand (within the agent's capacity)."""
    conv = await session.scalar(
        select(Conversation).where(Conversation.id == conversation_id).with_for_update()
    )
    if conv is None:
        raise ConsoleError(404, f"conversation {conversation_id} not found")
    actor = await _actor(session, agent, lock=True)
    d = _decide(lambda: core.claim(_state(conv), actor, now))
    await _commit(session, conv, d, policy, effects)
    return conv


async def transfer(
    session: AsyncSession, agent: Agent, conversation_id: int, to_agent_id: int | None,
    now: datetime, effects: Effects, policy: Policy, note_text: str | None = None,
) -> Conversation:
    """Pass the conversation to another agent, or back to the queue (`to_agent_id` None)."""
    note_text = mask_cards(note_text) if note_text else note_text
    conv = await load_for(session, agent, conversation_id, lock=True)
    actor = await _actor(session, agent)
    target = None
    if to_agent_id is not None:
        target = await _agent_facts(session, to_agent_id, lock=True)
    agents = await _online_agents(session) if target is None else ()
    previous = conv.assigned_agent_id
    d = _decide(lambda: core.transfer(_state(conv), actor, target, note_text, now, agents))
    await _commit(session, conv, d, policy, effects)
    audit.record(session, agent, "conversation.transferred", "conversation", conv.id,
                 {"from_agent_id": previous, "to_agent_id": to_agent_id,
                  "assigned_agent_id": conv.assigned_agent_id}, at=now)
    await assign_waiting(session, now, effects, policy)
    return conv


async def hand_back(
    session: AsyncSession, agent: Agent, conversation_id: int, now: datetime, effects: Effects,
    policy: Policy,
) -> Conversation:
    """Give the conversation back to the bot and tell the customer."""
    conv = await load_for(session, agent, conversation_id, lock=True)
    actor = await _actor(session, agent)
    d = _decide(lambda: core.hand_back(_state(conv), actor, now))
    await _commit(session, conv, d, policy, effects)
    await assign_waiting(session, now, effects, policy)
    return conv


async def resolution_code(session: AsyncSession, code: str) -> ResolutionCode:
    """The enabled code from the managed list (400 for anything else)."""
    row = await session.get(ResolutionCodeRow, code)
    if row is None or not row.enabled:
        known = await session.scalars(
            select(ResolutionCodeRow.code).where(ResolutionCodeRow.enabled.is_(True))
            .order_by(ResolutionCodeRow.code)
        )
        raise ConsoleError(400, f"unknown resolution code {code!r}; use one of: "
                                f"{', '.join(known)}")
    return ResolutionCode(row.code, row.label, row.survey, row.may_reopen)


async def resolve_by_agent(
    session: AsyncSession, agent: Agent, conversation_id: int, code: str, now: datetime,
    effects: Effects, policy: Policy,
) -> Conversation:
    """Resolve with a code from the managed list (e.g. `answered`, `refund_issued`, `spam`)."""
    conv = await load_for(session, agent, conversation_id, lock=True)
    managed = await resolution_code(session, code)
    actor = await _actor(session, agent)
    facts = await resolve_facts(session, conv.id, conv.customer_id, now, policy)
    d = _decide(lambda: core.resolve_by_agent(_state(conv), actor, managed, now, facts, policy))
    await _commit(session, conv, d, policy, effects)
    audit.record(session, agent, "conversation.resolved", "conversation", conv.id,
                 {"code": managed.code}, at=now)
    await assign_waiting(session, now, effects, policy)
    return conv


async def resolve_facts(
    session: AsyncSession, conversation_id: int, customer_id: int, now: datetime,
    policy: Policy,
) -> Facts:
    """What a resolution needs to know to decide about the survey."""
    latest = await session.scalar(
        select(Survey).where(Survey.conversation_id == conversation_id)
        .order_by(Survey.id.desc()).limit(1)
    )
    recent = await session.scalar(
        select(Survey.id).where(
            Survey.customer_id == customer_id, Survey.sent_at.is_not(None),
            Survey.sent_at > now - policy.surveys.cooldown,
        ).limit(1)
    )
    return Facts(survey=_survey_state(latest), surveyed_recently=recent is not None)


async def set_availability(
    session: AsyncSession, agent: Agent, status: str, now: datetime, effects: Effects,
    policy: Policy,
) -> Agent:
    """Go online, away or offline; going online pulls waiting conversations. The status is
    the agent's own choice now (`status_auto` false): a console connecting keeps it."""
    locked = await session.scalar(
        select(Agent).where(Agent.id == agent.id).with_for_update(key_share=True)
    )
    assert locked is not None
    locked.status_auto = False
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
        await assign_waiting(session, now, effects, policy)
    return locked


async def disable_agent(
    session: AsyncSession, agent: Agent, now: datetime, effects: Effects, policy: Policy
) -> int:
    """Disable an agent: their token and console sessions stop working, their live feeds
    close, and their conversations go back to the queue (to another agent when one is free).
    Returns how many conversations were requeued. The last enabled admin is never disabled
    (409): nobody could manage the agents after."""
    locked = await lock_agent(session, agent.id)
    if locked.disabled:
        return 0
    try:
        await keep_an_admin(session, locked)
    except AgentError as exc:
        raise ConsoleError(exc.status, exc.message) from None
    locked.disabled = True
    locked.status = "offline"
    await revoke_web_sessions(session, agent.id)
    await session.flush()
    effects.emit(Event("agent_disabled", None, agent_ids=(agent.id,),
                       data={"agent_id": agent.id}))
    held = list(await session.scalars(
        select(Conversation)
        .where(Conversation.assigned_agent_id == agent.id, Conversation.status == "assigned")
        .order_by(Conversation.id).with_for_update()
    ))
    for conv in held:
        d = core.requeue(_state(conv), now, await _online_agents(session), "agent_disabled")
        await _commit(session, conv, d, policy, effects)
    return len(held)


async def update_agent(
    session: AsyncSession, agent_id: int, now: datetime, effects: Effects, policy: Policy, *,
    role: str | None = None, capacity: int | None = None, disabled: bool | None = None,
) -> Agent:
    """An admin changes an agent's role, capacity, or disables or enables them (None:
    unchanged). Disabling requeues their conversations (`disable_agent`); more capacity for
    an online agent pulls waiting conversations at once."""
    agent = await lock_agent(session, agent_id)
    before = agent.capacity
    try:
        await change_agent(session, agent, role=role, capacity=capacity)
    except AgentError as exc:
        raise ConsoleError(exc.status, exc.message) from None
    if disabled is True:
        await disable_agent(session, agent, now, effects, policy)
    elif disabled is False and agent.disabled:
        enable_agent(agent)
        await session.flush()
    elif agent.capacity > before and agent.status == "online" and not agent.disabled:
        await assign_waiting(session, now, effects, policy)
    await session.refresh(agent)
    return agent


async def assign_waiting(
    session: AsyncSession, now: datetime, effects: Effects, policy: Policy
) -> int:
    """Capacity may have freed up: waiting conversations, oldest first, get agents; returns
    how many were assigned."""
    await session.flush()
    skipped: list[int] = []
    busy: set[int] = set()  # agents another transaction holds right now
    assigned = 0
    for _ in range(REFILL_LIMIT):
        agents = tuple(a for a in await _online_agents(session) if a.id not in busy)
        if core.pick_agent(agents) is None:
            return assigned
        stmt = (select(Conversation).where(Conversation.status == "queued")
                .order_by(Conversation.queued_at, Conversation.id).limit(1)
                .with_for_update(skip_locked=True))
        if skipped:
            stmt = stmt.where(Conversation.id.not_in(skipped))
        conv = await session.scalar(stmt)
        if conv is None:
            return assigned
        d = core.assign_waiting(_state(conv), agents, now)
        if not d.assigned:
            skipped.append(conv.id)  # only the agent who released it is free
            continue
        # The load read above may predate another process's commit: count again under the
        # agent's lock (PostgreSQL; SQLite has one writer).
        fresh = await _try_agent(session, d.assigned[0].id)
        if fresh is None:
            busy.add(d.assigned[0].id)
        if fresh is None or not fresh.available:
            continue  # re-read the agents and try again
        await _commit(session, conv, d, policy, effects)
        assigned += 1
    return assigned


async def set_language(
    session: AsyncSession, agent: Agent, conversation_id: int, language: str | None,
    effects: Effects, policy: Policy,
) -> Conversation:
    """Override the conversation's language (None: back to detection); 400 for a language
    the installation does not serve."""
    chosen = policy.languages.normalise(language) if language is not None else None
    if language is not None and chosen is None:
        raise ConsoleError(400, f"'language' must be one of "
                                f"{', '.join(policy.languages.supported)} or null")
    conv = await load_for(session, agent, conversation_id, lock=True)
    actor = await _actor(session, agent)
    d = _decide(lambda: core.set_language(_state(conv), actor, chosen))
    await _commit(session, conv, d, policy, effects)
    return conv


def conversation_summary(conv: Conversation | ConvState) -> dict[str, Any]:
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
        "last_customer_message_at": _iso(conv.last_customer_message_at),
        "last_bot_answer_at": _iso(conv.last_bot_answer_at),
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
        "language": conv.language,
        "language_override": conv.language_override,
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


def contact_dict(c: Contact) -> dict[str, Any]:
    """A contact (a customer's identity on one channel) as JSON."""
    return {"id": c.id, "customer_id": c.customer_id, "channel": c.channel,
            "external_id": c.external_id, "display_name": c.display_name,
            "created_at": _iso(c.created_at)}


def agent_dict(agent: Agent, load: int | None = None) -> dict[str, Any]:
    """An agent as JSON (never the token hash)."""
    data: dict[str, Any] = {
        "id": agent.id,
        "name": agent.name,
        "role": agent.role,
        "capacity": agent.capacity,
        "status": agent.status,
        "disabled": agent.disabled,
        # For the admin page: whether they can log in to the console, or an invite waits.
        "password_set": agent.password_hash is not None,
        "invite_expires_at": _iso(agent.invite_expires_at),
    }
    if load is not None:
        data["open_conversations"] = load
    return data


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
