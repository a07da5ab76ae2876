"""The decision core: everything that may happen to a conversation, decided in one place.

Two rules, after h11's state machine: everything that changes a conversation's state lives in
this module (and the survey rules it calls, `carebot.routing.survey_rules`), and this module
does no I/O: it takes the state (`ConvState`, `Facts`), the input (a customer `Turn`, an agent
action, a timer) and `now`, and returns a `Decision` — the new state, the rows to write and the
events to publish. The inbound batch, the console actions and the timers load, call and write.
Anything not allowed in the current state raises `NotAllowed` (HTTP 409).

Inbound, in order: a pending survey takes the message; `/start` and `/help` are answered in
every state; a conversation with a person stays with them (the bot is silent but tells a
waiting customer their position now and then); otherwise the bot turn: unsupported content,
commands, "Did this help?", picked suggestions, requests for a person, small talk, then the FAQ
match (answer, suggest, or hand off).

Presence (the end of the module): what a console connecting or staying away does to an
agent's status, and what an absent agent means for the customers waiting on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from carebot.domain.clock import ms_between
from carebot.domain.events import Event
from carebot.domain.language import choose
from carebot.domain.messages import OutboundMessage, Phrase
from carebot.domain.redaction import CARD
from carebot.domain.states import (
    OPEN_STATUSES,
    WITH_A_PERSON,
    Actor,
    Kind,
    ResolvedBy,
    Status,
)
from carebot.domain.texts import say
from carebot.matching.faq import Candidate
from carebot.routing import intents, replies, survey_rules
from carebot.routing.decision import (
    AgentFacts,
    AgentPresence,
    ConvState,
    Decision,
    Facts,
    Knowledge,
    NotAllowed,
    Reply,
    StatusChange,
    SurveyState,
    Turn,
)
from carebot.routing.policy import Policy, ResolutionCode

HUMAN_COMMANDS = frozenset({"human", "agent", "operator"})
# Payloads any bot message may carry; never stale.
GENERIC_PAYLOADS = frozenset({replies.START, replies.HELP, replies.HANDOFF})
# A queued conversation turns `warning` once it has waited this share of the queue SLA.
SLA_WARNING_SHARE = 0.8


# --- customer messages ---------------------------------------------------------------------


def needs_match(text: str, payload: str | None) -> bool:
    """Whether deciding a message may need its FAQ matches (typed, not a command/request)."""
    text = text.strip()
    if not text or payload:
        return False
    return intents.command(text) is None and not intents.wants_human(text)


def decide_message(
    latest: ConvState | None, turn: Turn, facts: Facts, policy: Policy, kb: Knowledge
) -> Decision:
    """What one customer message does to the customer's latest conversation (None: first)."""
    d = _decide_message(latest, turn, facts, policy, kb)
    if turn.redacted and not d.needs:
        _masked(d, turn, facts)
    return d


def _masked(d: Decision, turn: Turn, facts: Facts) -> None:
    """The channel masked something in the message: on record; a card number also gets the
    customer told, once per conversation and in any state, that cards are refused here."""
    now = turn.received
    given = False if d.new_conversation else facts.card_notice_given
    if CARD in turn.redacted and given is None:
        d.needs.add("card_notice")
        return
    d.touch(Kind.REDACTED, Actor.SYSTEM, now, with_message=True,
            details={"kinds": sorted(turn.redacted)})
    if CARD in turn.redacted and not given:
        d.touch(Kind.REDACTION_NOTICE, Actor.BOT, now)
        d.replies.insert(0, Reply(say(replies.CARD_NOTICE), now))


def _decide_message(
    latest: ConvState | None, turn: Turn, facts: Facts, policy: Policy, kb: Knowledge
) -> Decision:
    now = turn.received
    text = turn.text.strip()
    cmd = intents.command(text) if text else None
    if latest is not None and latest.status == Status.RESOLVED:
        d = Decision(latest.copy())
        _speak(d, turn, facts, policy)
        answered = survey_rules.take_answer(
            d, facts.survey, turn, cmd, policy.surveys, policy.routing.reopen_window
        )
        if answered:
            return d
        if _closing_words(d, turn, cmd, kb):
            return d
        if _may_reopen(latest, now, policy, facts.codes):
            previous = {"resolved_by": d.conv.resolved_by,
                        "resolution_code": d.conv.resolution_code}
            _reopen(d.conv, now)
            d.touch(Kind.REOPENED, Actor.CUSTOMER, now, details=previous)
        else:
            d = _new(latest, now)
            _speak(d, turn, facts, policy)
    elif latest is None:
        conv = ConvState.fresh(None, None, turn.channel, now)
        d = Decision(conv, new_conversation=True)
        _speak(d, turn, facts, policy)
    else:
        d = Decision(latest.copy())
        _speak(d, turn, facts, policy)
    conv = d.conv
    conv.customer_messages += 1
    conv.last_customer_message_at = now
    conv.updated_at = now
    d.touch(Kind.MESSAGE_IN, Actor.CUSTOMER, now, with_message=True,
            details={"payload": turn.payload} if turn.payload else None)
    if conv.status in WITH_A_PERSON:
        _with_a_person(d, turn, cmd, facts, policy)
    else:
        _bot_turn(d, turn, cmd, facts, policy, kb)
        if conv.status in WITH_A_PERSON:
            # Handed off: the person who gets it sees what the customer asked.
            _message_event(d, turn)
    offered = [b.payload for r in d.replies if r.message is not None for b in r.message.buttons]
    if offered and not d.needs:
        # The buttons in front of the customer now; a reply without buttons leaves the
        # earlier ones pressable (they are still on screen).
        conv.offered_payloads = offered
    return d


def _speak(d: Decision, turn: Turn, facts: Facts, policy: Policy) -> None:
    """The language of the bot's words from this message on (carebot.domain.language); a
    button press carries no text to detect, so it keeps the conversation's."""
    choice = choose(
        policy.languages, text=turn.text, override=d.conv.language_override,
        detected=turn.detected, remembered=facts.customer_language or d.conv.language,
        hint=turn.language_hint,
    )
    d.conv.language = choice.language
    if choice.remember is not None and choice.remember != facts.customer_language:
        d.customer_language = choice.remember


def _new(latest: ConvState, now: datetime) -> Decision:
    conv = ConvState.fresh(latest.customer_id, latest.contact_id, latest.channel, now)
    return Decision(conv, new_conversation=True)


def _may_reopen(
    conv: ConvState, now: datetime, policy: Policy, codes: Mapping[str, ResolutionCode]
) -> bool:
    if conv.resolved_at is None or now - conv.resolved_at > policy.routing.reopen_window:
        return False
    code = codes.get(conv.resolution_code) if conv.resolution_code else None
    return code is None or code.may_reopen


def _reopen(conv: ConvState, now: datetime) -> None:
    conv.status = Status.BOT
    conv.reopen_count += 1
    conv.resolved_at = None
    conv.resolved_by = None
    conv.resolution_code = None
    conv.resolved_agent_id = None
    conv.pending_faq_id = None
    conv.offered_payloads = None
    conv.failed_bot_turns = 0
    conv.assigned_agent_id = None
    conv.updated_at = now


def _closing_words(d: Decision, turn: Turn, cmd: str | None, kb: Knowledge) -> bool:
    """`/start`, `/help` or "thanks!" after a resolution: answered, nothing reopened."""
    now = turn.received
    if cmd in ("start", "help") or turn.payload in (replies.START, replies.HELP):
        d.say(_command_reply(cmd, turn.payload), now)
        return True
    small = (kb.small_talk.reply_for(turn.text.strip(), d.conv.language)
             if not turn.payload else None)
    if small is None:
        return False
    d.touch(Kind.SMALL_TALK, Actor.BOT, now, with_message=True, details={"id": small.id})
    d.say(OutboundMessage(small.reply), now)
    return True


def _command_reply(cmd: str | None, payload: str | None) -> OutboundMessage:
    if cmd == "start" or payload == replies.START:
        return replies.greeting()
    return say(replies.HELP_TEXT)


def _with_a_person(
    d: Decision, turn: Turn, cmd: str | None, facts: Facts, policy: Policy
) -> None:
    """A person has the conversation: they see the message; the bot only answers commands
    and, now and then, tells a waiting customer where they are in the queue."""
    conv, now = d.conv, turn.received
    if cmd in ("start", "help") or turn.payload in (replies.START, replies.HELP):
        d.say(_command_reply(cmd, turn.payload), now)
    elif conv.status == Status.QUEUED and (
        conv.queue_ack_at is None
        or now - conv.queue_ack_at >= policy.routing.queue_ack_interval
    ):
        if facts.queue_position is None:
            d.needs.add("position")
            return
        conv.queue_ack_at = now
        if is_closed(policy, now):
            d.say(say(replies.STILL_WAITING_AWAY, position=facts.queue_position,
                      when=_when_back(policy, now)), now)
        else:
            d.say(say(replies.STILL_WAITING, position=facts.queue_position), now)
    _message_event(d, turn)


def _message_event(d: Decision, turn: Turn) -> None:
    conv = d.conv
    d.emit("message", agents=(conv.assigned_agent_id,), queue=conv.status == Status.QUEUED,
           text=turn.text, payload=turn.payload, status=conv.status)


def _bot_turn(
    d: Decision, turn: Turn, cmd: str | None, facts: Facts, policy: Policy, kb: Knowledge
) -> None:
    conv, now = d.conv, turn.received
    text = turn.text.strip()
    payload = turn.payload or ""
    if not text and not payload:
        d.touch(Kind.UNSUPPORTED, Actor.CUSTOMER, now)
        d.say(say(replies.UNSUPPORTED), now)
        return
    if payload in (replies.START, replies.HELP) or cmd in ("start", "help"):
        d.say(_command_reply(cmd, payload), now)
        return
    if payload == replies.HANDOFF or cmd in HUMAN_COMMANDS:
        hand_off(d, now, "requested", facts, policy)
        return
    if payload and payload not in (conv.offered_payloads or ()):
        # Stale or forged (`yes:<faq>` never offered here, an unknown FAQ id): it proves
        # nothing, so it is recorded and the message is handled as what was typed.
        d.touch(Kind.UNKNOWN_BUTTON, Actor.CUSTOMER, now, details={"payload": payload[:200]})
        if not text:
            d.say(say(replies.STALE_BUTTON), now)
            return
        turn = Turn(turn.channel, text, None, now, turn.candidates)
        payload = ""
    if _feedback(d, turn, payload, facts, policy):
        return
    if payload.startswith(replies.PICK_PREFIX):
        doc = kb.docs.get(payload.removeprefix(replies.PICK_PREFIX))
        if doc is not None:
            _answer(d, now, doc.id, None, kb, policy, picked=True)
            return
    if text and intents.wants_human(text):
        hand_off(d, now, "requested", facts, policy)
        return
    small = kb.small_talk.reply_for(text, conv.language)
    if small is not None:
        d.touch(Kind.SMALL_TALK, Actor.BOT, now, details={"id": small.id})
        d.say(OutboundMessage(small.reply), now)
        return
    if not text:
        d.say(say(replies.STALE_BUTTON), now)
        return
    if turn.candidates is None:
        d.needs.add("match")
        return
    _matched(d, now, text, turn.candidates, facts, policy, kb)


def _feedback(d: Decision, turn: Turn, payload: str, facts: Facts, policy: Policy) -> bool:
    """ "Did this help?": a Yes resolves (by the bot), a No hands off."""
    conv, now = d.conv, turn.received
    helpful: bool | None = None
    faq_id = conv.pending_faq_id
    if payload.startswith(replies.HELPFUL_YES_PREFIX):
        helpful, faq_id = True, payload.removeprefix(replies.HELPFUL_YES_PREFIX)
    elif payload.startswith(replies.HELPFUL_NO_PREFIX):
        helpful, faq_id = False, payload.removeprefix(replies.HELPFUL_NO_PREFIX)
    elif conv.pending_faq_id and turn.text.strip():
        helpful = intents.typed_feedback(turn.text)
    if helpful is None or not faq_id:
        return False
    conv.pending_faq_id = None
    d.touch(Kind.FAQ_FEEDBACK, Actor.CUSTOMER, now, faq_id=faq_id, details={"helpful": helpful})
    if helpful:
        _resolve(d, now, by=ResolvedBy.BOT, actor=Actor.CUSTOMER)
        d.say(say(replies.GLAD), now)
        survey_rules.on_resolved(d, now, facts, policy.surveys, None)
    else:
        conv.failed_bot_turns += 1
        hand_off(d, now, "not_helpful", facts, policy, {"faq_id": faq_id})
    return True


def _answer(
    d: Decision, now: datetime, faq_id: str, score: float | None, kb: Knowledge,
    policy: Policy, *, picked: bool = False,
) -> None:
    conv = d.conv
    conv.pending_faq_id = faq_id
    conv.failed_bot_turns = 0
    conv.bot_answers += 1
    _bot_replied(conv, now)
    d.touch(Kind.FAQ_ANSWER, Actor.BOT, now, faq_id=faq_id, score=score, wait_ms=0,
            details={"picked_from_suggestions": True} if picked else None)
    d.say(replies.answer(kb.docs[faq_id], conv.language, policy.languages.default), now)


def _bot_replied(conv: ConvState, now: datetime) -> None:
    conv.last_bot_answer_at = now
    if conv.first_bot_response_ms is None:
        conv.first_bot_response_ms = 0  # the pipeline sets the measured time when it writes


def _matched(
    d: Decision, now: datetime, text: str, candidates: Sequence[Candidate], facts: Facts,
    policy: Policy, kb: Knowledge,
) -> None:
    rp = policy.routing
    top = candidates[0] if candidates else None
    if top is not None and top.score >= rp.answer_threshold and top.faq_id in kb.docs:
        _answer(d, now, top.faq_id, top.score, kb, policy)
        return
    offer = [c for c in candidates[: rp.max_suggestions]
             if c.score >= rp.suggest_threshold and c.faq_id in kb.docs]
    conv = d.conv
    if offer and conv.failed_bot_turns + 1 < rp.max_failed_bot_turns:
        conv.failed_bot_turns += 1
        conv.pending_faq_id = None
        _bot_replied(conv, now)
        d.touch(Kind.FAQ_SUGGEST, Actor.BOT, now, faq_id=offer[0].faq_id, score=offer[0].score,
                wait_ms=0, details={"candidates": [[c.faq_id, round(c.score, 4)] for c in offer]})
        d.say(replies.suggestions([kb.docs[c.faq_id] for c in offer], conv.language), now)
        return
    hand_off(d, now, "failed_turns" if offer else "no_match", facts, policy, {
        "text": text, "top_faq_id": top.faq_id if top else None,
        "top_score": round(top.score, 4) if top else None,
    })


# --- handoff and assignment ----------------------------------------------------------------


def pick_agent(
    agents: Sequence[AgentFacts] | None, exclude: int | None = None
) -> AgentFacts | None:
    """An available agent: least loaded first, then the one idle longest, then by id."""
    free = [a for a in agents or () if a.available and a.id != exclude]
    if not free:
        return None
    return min(free, key=lambda a: (a.load, a.idle_since is not None, a.idle_since, a.id))


def hand_off(
    d: Decision, now: datetime, reason: str, facts: Facts, policy: Policy,
    details: dict[str, Any] | None = None,
) -> None:
    """Queue the conversation for a person; an available agent takes it at once."""
    if facts.agents is None or facts.queue_position is None:
        d.needs.add("queue")
        return
    conv = d.conv
    conv.status = Status.QUEUED
    conv.queued_at = now
    if conv.handed_off_at is None:
        conv.handed_off_at = now
    conv.handoffs += 1
    conv.pending_faq_id = None
    conv.offered_payloads = None
    conv.released_by_agent_id = None
    conv.updated_at = now
    d.touch(Kind.HANDOFF, Actor.BOT, now, details={"reason": reason, **(details or {})})
    agent = pick_agent(facts.agents)
    if agent is not None:
        # Someone is working (even outside business hours): they take it.
        assign(d, agent, now)
        d.say(say(replies.HANDOFF_ASSIGNED, agent=agent.name), now)
        return
    conv.queue_ack_at = now
    if is_closed(policy, now):
        # Outside business hours: queued all the same, and told when a person will reply.
        assert policy.hours is not None
        d.touches[-1].details = {**(d.touches[-1].details or {}), "outside_hours": True}
        d.emit("queued", queue=True, reason=reason, outside_hours=True)
        d.say(say(replies.HANDOFF_AWAY, position=facts.queue_position,
                  when=_when_back(policy, now), hours=policy.hours.describe()), now)
        return
    d.emit("queued", queue=True, reason=reason)
    d.say(say(replies.HANDOFF_QUEUED, position=facts.queue_position), now)


def is_closed(policy: Policy, now: datetime) -> bool:
    """Outside business hours (never, without a schedule)."""
    return policy.hours is not None and not policy.hours.is_open(now)


def _when_back(policy: Policy, now: datetime) -> str | Phrase:
    back = policy.hours.next_open(now) if policy.hours is not None else None
    return Phrase(replies.WHEN_BACK) if back is None or policy.hours is None else (
        policy.hours.when(back, now))


def assign(
    d: Decision, agent: AgentFacts, now: datetime, *, by_agent: int | None = None,
    announce: bool = False,
) -> None:
    """Give the conversation to the agent and tell them (and, `announce`, the customer)."""
    conv = d.conv
    # Every console shows the queue: a conversation leaving it must leave every queue view.
    left_queue = d.initial_status == Status.QUEUED
    conv.status = Status.ASSIGNED
    conv.assigned_agent_id = agent.id
    conv.assigned_at = now
    conv.released_by_agent_id = None
    conv.updated_at = now
    d.assigned.append(agent)
    d.touch(Kind.ASSIGNED, Actor.AGENT if by_agent else Actor.SYSTEM, now, agent_id=agent.id,
            wait_ms=ms_between(conv.queued_at, now),
            details={"by_agent_id": by_agent} if by_agent else None)
    d.emit("assigned", agents=(agent.id,), queue=left_queue, agent_id=agent.id)
    if announce:
        d.say(say(replies.JOINED, agent=agent.name), now, sender=Actor.SYSTEM)


def assign_waiting(conv: ConvState, agents: Sequence[AgentFacts], now: datetime) -> Decision:
    """A queued conversation gets an agent who freed up (never the one who just released it)."""
    d = Decision(conv.copy())
    if conv.status != Status.QUEUED:
        raise NotAllowed(f"conversation is {conv.status}, not queued")
    agent = pick_agent(agents, exclude=conv.released_by_agent_id)
    if agent is not None:
        assign(d, agent, now, announce=True)
    return d


def _resolve(
    d: Decision, now: datetime, *, by: ResolvedBy, actor: Actor, code: str | None = None,
    agent_id: int | None = None,
) -> None:
    conv = d.conv
    conv.status = Status.RESOLVED
    conv.resolved_at = now
    conv.resolved_by = by
    conv.resolution_code = code
    conv.resolved_agent_id = agent_id
    conv.pending_faq_id = None
    conv.offered_payloads = None
    conv.updated_at = now
    d.touch(Kind.RESOLVED, actor, now, agent_id=agent_id,
            details={"resolved_by": str(by), "resolution_code": code})
    data: dict[str, Any] = {"agent_id": agent_id, "code": code} if agent_id else {}
    d.emit("resolved", agents=(conv.assigned_agent_id, agent_id), resolved_by=str(by),
           status=conv.status, **data)


# --- agents --------------------------------------------------------------------------------


# What an agent does to a conversation that keeps it readable for them afterwards.
INVOLVING = frozenset({Kind.AGENT_REPLY, Kind.NOTE, Kind.TRANSFER, Kind.HANDBACK, Kind.RESOLVED})


def can_act(agent: AgentFacts, conv: ConvState) -> bool:
    """Agents act on their own conversations and the queue; managers and admins on all."""
    return agent.supervisor or conv.assigned_agent_id == agent.id or conv.status == Status.QUEUED


def can_access(
    agent: AgentFacts, conv: ConvState, *, involved: bool, holds_customer: bool
) -> bool:
    """Who may read a conversation: whoever may act on it, an agent who was `involved` in
    it (replied, wrote a note, transferred or handed it back, resolved it: see `INVOLVING`),
    and an agent who `holds_customer`, an open conversation of the same customer assigned to
    them (a returning customer's history). Reading never lets them act."""
    return can_act(agent, conv) or involved or holds_customer


def can_see_customer(
    agent: AgentFacts, *, assigned_one: bool, involved_in_one: bool, one_queued: bool
) -> bool:
    """Who may read a customer (contacts, every conversation's outcome, survey answers):
    managers and admins, and an agent to whom one of the customer's conversations is (or was,
    when it was resolved) assigned, who was involved in one, or who may pick one up from the
    queue. Exactly the agents who may read at least one of the customer's conversations, so
    a conversation's customer panel shows nobody more than the conversation does."""
    return agent.supervisor or assigned_one or involved_in_one or one_queued


@dataclass(frozen=True)
class QueueSla:
    """Where a queued conversation stands against the queue SLA, and when that changes."""

    state: str  # ok, warning (the last fifth of the SLA), breached
    warning_at: datetime
    breach_at: datetime


def queue_sla(conv: ConvState, now: datetime, sla: timedelta) -> QueueSla | None:
    """The SLA standing of a conversation waiting in the queue (None for any other)."""
    if conv.status != Status.QUEUED or conv.queued_at is None:
        return None
    warning_at = conv.queued_at + sla * SLA_WARNING_SHARE
    breach_at = conv.queued_at + sla
    # Breached from the moment the timer records `sla_breached` (queued_at <= now - sla).
    state = "breached" if now >= breach_at else "warning" if now >= warning_at else "ok"
    return QueueSla(state, warning_at, breach_at)


def claim(conv: ConvState, agent: AgentFacts, now: datetime) -> Decision:
    """The agent takes a queued conversation by hand, within their capacity."""
    if conv.status != Status.QUEUED:
        # Anyone may claim from the queue, so losing a race is a conflict, not a secret.
        taken = " by another agent" if conv.assigned_agent_id not in (None, agent.id) else ""
        raise NotAllowed(f"conversation is {conv.status}{taken}, not queued")
    if agent.load >= agent.capacity:
        raise NotAllowed(f"you are at your capacity of {agent.capacity} conversations")
    d = Decision(conv.copy())
    assign(d, agent, now, by_agent=agent.id, announce=True)
    return d


def reply(
    conv: ConvState, agent: AgentFacts, text: str, now: datetime,
    last_agent_reply_at: datetime | None, policy: Policy | None = None,
) -> Decision:
    """The agent's reply to the customer. The first one sets the human first response time:
    from the handoff, in business hours only when the policy says so."""
    if conv.status == Status.QUEUED:
        raise NotAllowed("conversation is in the queue; claim it before replying")
    if conv.status != Status.ASSIGNED or (
        conv.assigned_agent_id != agent.id and not agent.supervisor
    ):
        raise NotAllowed(f"conversation is {conv.status}, not assigned to you")
    d = Decision(conv.copy())
    c = d.conv
    waiting_since = c.last_customer_message_at
    if last_agent_reply_at is not None and waiting_since is not None and (
        waiting_since <= last_agent_reply_at
    ):
        waiting_since = None  # the customer already had an answer to their last message
    c.agent_messages += 1
    c.updated_at = now
    if c.first_human_response_ms is None:
        # Human first response runs from the first handoff, never from the bot's time nor
        # from a later queue entry (a transfer or requeue back to the queue), whoever replies.
        since = c.handed_off_at or c.queued_at
        c.first_human_response_ms = (
            policy.elapsed_ms(since, now) if policy is not None else ms_between(since, now))
    d.say(OutboundMessage(text), now, sender=Actor.AGENT, agent_id=agent.id)
    d.touch(Kind.AGENT_REPLY, Actor.AGENT, now, agent_id=agent.id, with_message=True,
            wait_ms=ms_between(waiting_since, now))
    d.emit("agent_reply", agents=(c.assigned_agent_id,), status=c.status, text=text,
           agent_id=agent.id)
    return d


def note(conv: ConvState, agent: AgentFacts, text: str, now: datetime) -> Decision:
    """A private note: stored and shown to agents, never sent."""
    d = Decision(conv.copy())
    d.say(OutboundMessage(text), now, sender=Actor.AGENT, agent_id=agent.id, private=True)
    d.touch(Kind.NOTE, Actor.AGENT, now, agent_id=agent.id, with_message=True)
    d.emit("note", agents=(conv.assigned_agent_id,), status=conv.status, text=text,
           agent_id=agent.id)
    return d


def transfer(
    conv: ConvState, agent: AgentFacts, target: AgentFacts | None, note_text: str | None,
    now: datetime, agents: Sequence[AgentFacts],
) -> Decision:
    """To another agent (online, enabled, with room), or back to the queue (`target` None),
    never straight back to the agent who let it go; an optional note goes to the next agent."""
    if conv.status not in WITH_A_PERSON:
        raise NotAllowed(f"conversation is {conv.status}; only a person's can be moved")
    previous = conv.assigned_agent_id
    if target is not None:
        if target.disabled:
            raise NotAllowed(f"{target.name} is disabled")
        if target.status != "online":
            raise NotAllowed(f"{target.name} is {target.status}; pick an online agent")
        if target.id == previous:
            raise NotAllowed("conversation is already assigned to that agent")
        if target.load >= target.capacity:
            raise NotAllowed(f"{target.name} has no free capacity")
    d = Decision(conv.copy())
    c = d.conv
    c.transfers += 1
    if note_text:
        d.say(OutboundMessage(note_text), now, sender=Actor.AGENT, agent_id=agent.id,
              private=True)
    d.touch(Kind.TRANSFER, Actor.AGENT, now, agent_id=agent.id, with_message=bool(note_text),
            details={"from_agent_id": previous, "to_agent_id": target.id if target else None,
                     **({"note": True} if note_text else {})})
    if target is not None:
        assign(d, target, now, by_agent=agent.id, announce=True)
    else:
        c.status = Status.QUEUED
        c.assigned_agent_id = None
        c.updated_at = now
        picked = pick_agent(agents, exclude=previous)
        if picked is not None:
            assign(d, picked, now, announce=True)
        else:
            c.released_by_agent_id = previous
            d.emit("queued", queue=True, reason="transfer")
    if previous is not None:
        d.emit("unassigned", agents=(previous,))
    return d


def requeue(
    conv: ConvState, now: datetime, agents: Sequence[AgentFacts], reason: str,
    details: Mapping[str, Any] | None = None,
) -> Decision:
    """Its agent was disabled (or went away): the conversation goes back to the queue and to
    another available agent if there is one, never the one who had it; the customer is not
    charged for it. `details` go on the touchpoint and the `unassigned` event."""
    if conv.status != Status.ASSIGNED:
        raise NotAllowed(f"conversation is {conv.status}, not assigned")
    d = Decision(conv.copy())
    c = d.conv
    previous = c.assigned_agent_id
    c.status = Status.QUEUED
    c.assigned_agent_id = None
    c.released_by_agent_id = previous
    c.updated_at = now
    d.touch(Kind.REQUEUED, Actor.SYSTEM, now, details={"from_agent_id": previous,
                                                       "reason": reason, **(details or {})})
    d.emit("unassigned", agents=(previous,), reason=reason, **(details or {}))
    picked = pick_agent(agents, exclude=previous)
    if picked is not None:
        assign(d, picked, now, announce=True)
    else:
        d.emit("queued", queue=True, reason=reason)
    return d


def hand_back(conv: ConvState, agent: AgentFacts, now: datetime) -> Decision:
    """Give the conversation back to the bot and tell the customer."""
    if conv.status not in WITH_A_PERSON:
        raise NotAllowed(f"conversation is {conv.status}, not with a person")
    d = Decision(conv.copy())
    c = d.conv
    previous = c.assigned_agent_id
    c.status = Status.BOT
    c.assigned_agent_id = None
    c.failed_bot_turns = 0
    c.updated_at = now
    d.touch(Kind.HANDBACK, Actor.AGENT, now, agent_id=agent.id)
    d.say(say(replies.BACK_TO_BOT), now, sender=Actor.SYSTEM, agent_id=agent.id)
    d.emit("handback", agents=(previous,), status=c.status, agent_id=agent.id)
    return d


def set_language(conv: ConvState, agent: AgentFacts, language: str | None) -> Decision:
    """The agent says which language the customer speaks (None: let the rule decide again).
    The override wins over detection until cleared; the bot's next words use it at once.
    `language` is one the installation serves (the caller checks it against the policy)."""
    d = Decision(conv.copy())
    c = d.conv
    c.language_override = language
    if language is not None:
        c.language = language
    d.emit("language", agents=(c.assigned_agent_id,), queue=c.status == Status.QUEUED,
           language=c.language, override=language, agent_id=agent.id)
    return d


def resolve_by_agent(
    conv: ConvState, agent: AgentFacts, code: ResolutionCode, now: datetime, facts: Facts,
    policy: Policy,
) -> Decision:
    """Resolve with a code from the managed list; credited to the agent who resolved it."""
    if conv.status not in OPEN_STATUSES:
        raise NotAllowed("conversation is already resolved")
    d = Decision(conv.copy())
    _resolve(d, now, by=ResolvedBy.AGENT, actor=Actor.AGENT, code=code.code, agent_id=agent.id)
    if code.survey:
        survey_rules.on_resolved(d, now, facts, policy.surveys, agent.id)
    return d


# --- data protection -----------------------------------------------------------------------

# The resolution code of conversations closed because their customer's data was erased (not in
# the managed list: no agent resolves with it).
ERASED_CODE = "erased"


def close_for_erasure(conv: ConvState, survey: SurveyState | None, now: datetime) -> Decision:
    """The customer's data is being erased: an open conversation is resolved by the system
    (code `erased`, no survey) and an open survey withdrawn. Nothing is said to the customer,
    and nothing is sent later: there is nobody left to send it to."""
    d = Decision(conv.copy())
    if conv.status in OPEN_STATUSES:
        _resolve(d, now, by=ResolvedBy.SYSTEM, actor=Actor.SYSTEM, code=ERASED_CODE)
    if survey is not None and survey.is_open:
        survey_rules.withdraw(d, survey, now, "erased")
    return d


# --- timers --------------------------------------------------------------------------------


def time_out(conv: ConvState, now: datetime) -> Decision:
    """The customer went silent after the bot: an assumed, not confirmed, bot resolution."""
    if conv.status != Status.BOT:
        raise NotAllowed(f"conversation is {conv.status}, not with the bot")
    d = Decision(conv.copy())
    _resolve(d, now, by=ResolvedBy.TIMEOUT, actor=Actor.SYSTEM, code="timeout")
    return d


def sla_due(conv: ConvState, now: datetime, policy: Policy) -> bool:
    """Whether a queue stay has outlasted the SLA (counted in business hours only when the
    policy says so: a customer who wrote at night is not late at nine)."""
    waited = policy.elapsed_ms(conv.queued_at, now)
    return waited is not None and waited > policy.queue_sla.total_seconds() * 1000


def sla_breached(conv: ConvState, now: datetime, policy: Policy) -> Decision:
    """A queue stay outlasted the SLA: on record, and managers are told."""
    if conv.status != Status.QUEUED or not sla_due(conv, now, policy):
        raise NotAllowed("the queue stay is within the SLA")
    d = Decision(conv.copy())
    waited = ms_between(conv.queued_at, now)
    details: dict[str, Any] = {"sla_seconds": policy.queue_sla.total_seconds()}
    if policy.business_time:
        details["business_ms"] = policy.elapsed_ms(conv.queued_at, now)
    d.touch(Kind.SLA_BREACHED, Actor.SYSTEM, now, wait_ms=waited, details=details)
    # No agent ids: only managers and admins (who see every event) get it.
    d.emit("sla_breached", waited_ms=waited)
    return d


# --- presence ------------------------------------------------------------------------------
# An agent is online while a console (the live-event WebSocket) is connected, in any tab and
# any process; the processes write its heartbeat. These rules say what presence does to the
# agent's status, and what the absence of the person holding a conversation does to it.


def console_connected(agent: AgentPresence) -> StatusChange | None:
    """A console of the agent is connected: an agent presence had made away or offline is
    online again; a status the agent chose (`status_auto` false) is kept."""
    if agent.disabled or agent.status == "online" or not agent.status_auto:
        return None
    return _status_change(agent, "online", "console_connected")


def console_gone(
    agent: AgentPresence, now: datetime, grace: timedelta | None
) -> StatusChange | None:
    """An online agent whose consoles have all been gone for the grace period (or who never
    connected one) is away; `grace` None: presence is off."""
    if grace is None or agent.disabled or agent.status != "online":
        return None
    if agent.presence_at is not None and now - agent.presence_at <= grace:
        return None
    return _status_change(agent, "away", "no_console")


def _status_change(agent: AgentPresence, status: str, reason: str) -> StatusChange:
    event = Event("agent_status", None, agent_ids=(agent.id,), data={
        "agent_id": agent.id, "status": status, "auto": True, "reason": reason,
        "previous": agent.status})
    return StatusChange(agent.id, status, reason, event)


def waiting_since(
    conv: ConvState, last_reply_at: datetime | None, first_unanswered_at: datetime | None
) -> datetime | None:
    """Since when the customer of an assigned conversation has waited for a person's answer:
    from the assignment if no agent replied since, else from their first message after the
    last reply (`first_unanswered_at`); None: they have their answer."""
    if conv.status != Status.ASSIGNED or conv.assigned_at is None:
        return None
    if last_reply_at is None or last_reply_at < conv.assigned_at:
        return conv.assigned_at
    return first_unanswered_at


def requeue_unanswered(
    conv: ConvState, holder: AgentFacts, since: datetime | None, now: datetime,
    after: timedelta,
) -> Decision:
    """The agent holding the conversation is away (by presence or by choice), offline or
    disabled, and the customer has waited `after` for an answer: back to the queue, never
    straight back to that agent. Assignment from the queue follows (`assign_waiting`)."""
    if conv.status != Status.ASSIGNED or conv.assigned_agent_id != holder.id:
        raise NotAllowed(f"conversation is {conv.status}, not assigned to {holder.name}")
    if holder.status == "online" and not holder.disabled:
        raise NotAllowed(f"{holder.name} is online")
    if since is None or now - since < after:
        raise NotAllowed("the customer has not waited that long for an answer")
    return requeue(conv, now, (), "unanswered", {
        "agent_status": "disabled" if holder.disabled else holder.status,
        "waited_ms": ms_between(since, now),
    })


def assigned_sla_breached(
    conv: ConvState, since: datetime | None, now: datetime, sla: timedelta
) -> Decision:
    """The customer has waited for the answer of the agent who holds the conversation longer
    than the assigned SLA: on record, and managers (and that agent) are told. The timer
    records it once per assignment."""
    if conv.status != Status.ASSIGNED:
        raise NotAllowed(f"conversation is {conv.status}, not assigned")
    if since is None or now - since < sla:
        raise NotAllowed("the customer has not waited that long for an answer")
    d = Decision(conv.copy())
    waited = ms_between(since, now)
    agent_id = conv.assigned_agent_id
    d.touch(Kind.ASSIGNED_SLA_BREACHED, Actor.SYSTEM, now, agent_id=agent_id, wait_ms=waited,
            details={"sla_seconds": sla.total_seconds()})
    d.emit("assigned_sla_breached", agents=(agent_id,), agent_id=agent_id, waited_ms=waited)
    return d
