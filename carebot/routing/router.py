"""Routing one inbound message: dedupe, record, decide, reply — all in one transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.agents import assignment
from carebot.db.models import Contact, Conversation, Message
from carebot.delivery.outbox import enqueue
from carebot.domain.clock import Clock, ms_between
from carebot.domain.events import Effects, Event
from carebot.domain.messages import Button, InboundMessage, OutboundMessage, RouteResult
from carebot.matching.faq import Candidate, FaqDoc
from carebot.matching.faq_index import FaqIndex
from carebot.routing import intents, replies, surveys, touchpoints
from carebot.routing.conversations import (
    current_conversation,
    find_or_create_contact,
    latest_conversation,
    resolve,
)
from carebot.routing.surveys import SurveyPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoutingPolicy:
    """The knobs of the routing decision (from Settings)."""

    answer_threshold: float = 0.6
    suggest_threshold: float = 0.25
    max_suggestions: int = 3
    max_failed_bot_turns: int = 2
    reopen_window: timedelta = timedelta(hours=24)


@dataclass
class _Reply:
    message: OutboundMessage
    kind: str
    faq_id: str | None = None
    score: float | None = None


class Router:
    """Turns inbound messages into stored conversations, touchpoints and outbox replies."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        index: FaqIndex,
        policy: RoutingPolicy,
        clock: Clock,
        survey_policy: SurveyPolicy | None = None,
    ) -> None:
        self.sessions = sessions
        self.index = index
        self.policy = policy
        self.clock = clock
        self.surveys = survey_policy or SurveyPolicy()
        # How many FAQ candidates a decision looks at.
        self.match_limit = max(3, policy.max_suggestions)

    async def handle(
        self, msg: InboundMessage, candidates: list[Candidate] | None = None
    ) -> tuple[RouteResult, Effects]:
        """Route one message; a redelivered message returns its first result and changes nothing.

        `candidates` are the message's FAQ matches when the caller already has them."""
        for attempt in range(3):
            effects = Effects()
            try:
                async with self.sessions.begin() as session:
                    earlier = await earlier_result(session, msg)
                    if earlier is not None:
                        return earlier, Effects()
                    result = await self._route(session, msg, effects, candidates)
                return result, effects
            except IntegrityError:
                # Lost a race: the same message (or the same new customer) was stored by a
                # concurrent request. Look again; the retry finds the duplicate or the contact.
                if attempt == 2:
                    raise
                log.info("retrying inbound %s/%s after a concurrent insert", msg.channel,
                         msg.message_id)
        raise AssertionError("unreachable")

    async def _route(
        self,
        session: AsyncSession,
        msg: InboundMessage,
        effects: Effects,
        candidates: list[Candidate] | None = None,
    ) -> RouteResult:
        """Route a message in the caller's transaction; `candidates` are its FAQ matches when
        the caller already computed them (the inbound batcher matches before it writes)."""
        received = self.clock()
        contact = await find_or_create_contact(
            session, msg.channel, msg.user_id, msg.display_name, received
        )
        latest = await latest_conversation(session, contact)
        if latest is not None and latest.status == "resolved":
            answered = await self._survey_answer(session, latest, contact, msg, received, effects)
            if answered is not None:
                return answered
        conv = await current_conversation(
            session, contact, latest, received, self.policy.reopen_window
        )
        inbound = Message(
            conversation_id=conv.id,
            channel=msg.channel,
            external_id=msg.message_id,
            direction="in",
            sender="customer",
            text=msg.text,
            payload=msg.payload,
            created_at=received,
        )
        session.add(inbound)
        await session.flush()  # the unique (channel, external_id) guard fires here
        conv.customer_messages += 1
        conv.last_customer_message_at = received
        conv.updated_at = received
        touchpoints.record(
            session, conv, "message_in", actor="customer", channel=msg.channel, at=received,
            message_id=inbound.id,
            details={"payload": msg.payload} if msg.payload else None,
        )

        out = await self._decide(session, conv, msg, received, effects, candidates)

        replied_at = self.clock()
        for reply in out:
            await enqueue(
                session, conv, contact.external_id, reply.message, replied_at,
                sender="bot", in_reply_to=inbound.id, delivered_inline=msg.reply_inline,
            )
            if not msg.reply_inline:
                effects.outbox_pending = True
        bot_replied = any(r.kind in {"faq_answer", "faq_suggest"} for r in out)
        if bot_replied:
            conv.last_bot_answer_at = replied_at
            if conv.first_bot_response_ms is None:
                conv.first_bot_response_ms = ms_between(received, replied_at)
        inbound.status_after = conv.status
        if conv.status in {"queued", "assigned"}:
            effects.emit(
                Event(
                    "message",
                    conv.id,
                    agent_ids=(conv.assigned_agent_id,) if conv.assigned_agent_id else (),
                    queue=conv.status == "queued",
                    data={"text": msg.text, "payload": msg.payload, "status": conv.status},
                )
            )
        return RouteResult(conv.id, conv.status, tuple(r.message for r in out))

    async def _survey_answer(
        self,
        session: AsyncSession,
        conv: Conversation,
        contact: Contact,
        msg: InboundMessage,
        received: datetime,
        effects: Effects,
    ) -> RouteResult | None:
        """Record the message as an answer to the resolved conversation's survey, if it is one."""
        is_button = (msg.payload or "").startswith(surveys.PAYLOAD_PREFIX)
        if not is_button and await surveys.pending(session, conv) is None:
            return None
        inbound = Message(
            conversation_id=conv.id, channel=msg.channel, external_id=msg.message_id,
            direction="in", sender="customer", text=msg.text, payload=msg.payload,
            created_at=received,
        )
        session.add(inbound)
        await session.flush()
        replies_out = await surveys.answer(
            session, conv, msg.text, msg.payload, received, self.surveys, inbound.id
        )
        if replies_out is None:
            # Not an answer: the message is routed normally (it reopens help).
            await session.delete(inbound)
            await session.flush()
            return None
        inbound.status_after = conv.status
        for reply in replies_out:
            await enqueue(
                session, conv, contact.external_id, reply, received, sender="system",
                in_reply_to=inbound.id, delivered_inline=msg.reply_inline,
            )
            if not msg.reply_inline:
                effects.outbox_pending = True
        return RouteResult(conv.id, conv.status, tuple(replies_out))

    async def _decide(
        self,
        session: AsyncSession,
        conv: Conversation,
        msg: InboundMessage,
        received: datetime,
        effects: Effects,
        candidates: list[Candidate] | None = None,
    ) -> list[_Reply]:
        text = msg.text.strip()
        cmd = intents.command(text) if text else None
        payload = msg.payload or ""

        if conv.status in {"queued", "assigned"}:
            # A person has the conversation: the bot stays silent (the agent sees the message).
            return []
        if not text and not payload:
            touchpoints.record(
                session, conv, "unsupported", actor="customer", channel=msg.channel,
                at=received,
            )
            return [_Reply(OutboundMessage(replies.UNSUPPORTED), "unsupported")]
        if payload == replies.START or cmd == "start":
            return [_Reply(replies.greeting(), "greeting")]
        if payload == replies.HELP or cmd == "help":
            return [_Reply(OutboundMessage(replies.HELP_TEXT), "help")]
        if payload == replies.HANDOFF or cmd in {"human", "agent", "operator"}:
            return await self._hand_off(session, conv, received, effects, "requested")

        feedback: bool | None = None
        feedback_faq = conv.pending_faq_id
        if payload.startswith(replies.HELPFUL_YES_PREFIX):
            feedback, feedback_faq = True, payload.removeprefix(replies.HELPFUL_YES_PREFIX)
        elif payload.startswith(replies.HELPFUL_NO_PREFIX):
            feedback, feedback_faq = False, payload.removeprefix(replies.HELPFUL_NO_PREFIX)
        elif conv.pending_faq_id and text:
            feedback = intents.typed_feedback(text)
        if feedback is not None and feedback_faq:
            return await self._feedback(session, conv, received, effects, feedback, feedback_faq)

        if payload.startswith(replies.PICK_PREFIX):
            doc = self.index.docs_by_id.get(payload.removeprefix(replies.PICK_PREFIX))
            if doc is not None:
                return [self._answer(session, conv, received, doc, None, picked=True)]
        if text and intents.wants_human(text):
            return await self._hand_off(session, conv, received, effects, "requested")
        if not text:
            # A stale or unknown button: treat it like a question we could not match.
            return await self._hand_off(session, conv, received, effects, "unknown_button")

        if candidates is None:
            candidates = await self.index.match(text, limit=self.match_limit)
        top = candidates[0] if candidates else None
        if top is not None and top.score >= self.policy.answer_threshold:
            doc = self.index.docs_by_id.get(top.faq_id)
            if doc is not None:
                return [self._answer(session, conv, received, doc, top.score)]
        suggestable = [
            c for c in candidates[: self.policy.max_suggestions]
            if c.score >= self.policy.suggest_threshold and c.faq_id in self.index.docs_by_id
        ]
        if suggestable and conv.failed_bot_turns + 1 < self.policy.max_failed_bot_turns:
            return [self._suggest(session, conv, received, suggestable)]
        reason = "failed_turns" if suggestable else "no_match"
        return await self._hand_off(
            session, conv, received, effects, reason,
            details={"text": text, "top_faq_id": top.faq_id if top else None,
                     "top_score": round(top.score, 4) if top else None},
        )

    def _answer(
        self,
        session: AsyncSession,
        conv: Conversation,
        at: datetime,
        doc: FaqDoc,
        score: float | None,
        *,
        picked: bool = False,
    ) -> _Reply:
        conv.pending_faq_id = doc.id
        conv.failed_bot_turns = 0
        conv.bot_answers += 1
        touchpoints.record(
            session, conv, "faq_answer", actor="bot", channel=conv.channel, at=at,
            faq_id=doc.id, score=score, wait_ms=ms_between(at, self.clock()),
            details={"picked_from_suggestions": True} if picked else None,
        )
        return _Reply(replies.answer(doc), "faq_answer", doc.id, score)

    def _suggest(
        self, session: AsyncSession, conv: Conversation, at: datetime, cands: list[Candidate]
    ) -> _Reply:
        conv.failed_bot_turns += 1
        conv.pending_faq_id = None
        docs = [self.index.docs_by_id[c.faq_id] for c in cands]
        touchpoints.record(
            session, conv, "faq_suggest", actor="bot", channel=conv.channel, at=at,
            faq_id=cands[0].faq_id, score=cands[0].score, wait_ms=ms_between(at, self.clock()),
            details={"candidates": [[c.faq_id, round(c.score, 4)] for c in cands]},
        )
        return _Reply(replies.suggestions(docs), "faq_suggest", cands[0].faq_id, cands[0].score)

    async def _feedback(
        self,
        session: AsyncSession,
        conv: Conversation,
        at: datetime,
        effects: Effects,
        helpful: bool,
        faq_id: str,
    ) -> list[_Reply]:
        conv.pending_faq_id = None
        touchpoints.record(
            session, conv, "faq_feedback", actor="customer", channel=conv.channel, at=at,
            faq_id=faq_id, details={"helpful": helpful},
        )
        if helpful:
            resolve(session, conv, at, by="bot", actor="customer")
            effects.emit(Event("resolved", conv.id, data={"resolved_by": "bot"}))
            out = [_Reply(OutboundMessage(replies.GLAD), "resolved")]
            question = await surveys.on_resolved(session, conv, at, self.surveys)
            if question is not None:
                out.append(_Reply(question, "survey"))
            return out
        conv.failed_bot_turns += 1
        return await self._hand_off(
            session, conv, at, effects, "not_helpful", details={"faq_id": faq_id}
        )

    async def _hand_off(
        self,
        session: AsyncSession,
        conv: Conversation,
        at: datetime,
        effects: Effects,
        reason: str,
        details: dict[str, object] | None = None,
    ) -> list[_Reply]:
        conv.status = "queued"
        conv.queued_at = at
        conv.handoffs += 1
        conv.pending_faq_id = None
        conv.updated_at = at
        touchpoints.record(
            session, conv, "handoff", actor="bot", channel=conv.channel, at=at,
            details={"reason": reason, **(details or {})},
        )
        await session.flush()
        agent = await assignment.pick_agent(session)
        if agent is not None:
            assignment.assign(session, conv, agent, at, effects)
            return [_Reply(OutboundMessage(replies.HANDOFF_ASSIGNED.format(agent=agent.name)),
                           "handoff")]
        effects.emit(Event("queued", conv.id, queue=True, data={"reason": reason}))
        position = await assignment.queue_position(session, conv)
        return [_Reply(OutboundMessage(replies.HANDOFF_QUEUED.format(position=position)),
                       "handoff")]


async def earlier_result(session: AsyncSession, msg: InboundMessage) -> RouteResult | None:
    """The stored result of an inbound message already processed, if this is a redelivery."""
    inbound = await session.scalar(
        select(Message).where(
            Message.channel == msg.channel,
            Message.external_id == msg.message_id,
            Message.direction == "in",
        )
    )
    if inbound is None:
        return None
    contact = await session.scalar(
        select(Contact).where(Contact.channel == msg.channel, Contact.external_id == msg.user_id)
    )
    conv = await session.get(Conversation, inbound.conversation_id)
    if contact is None or conv is None or conv.contact_id != contact.id:
        # Same message id from another user: a broken or hostile bridge, never a redelivery.
        raise DuplicateIdConflict(msg.channel, msg.message_id)
    out = await session.scalars(
        select(Message).where(Message.in_reply_to == inbound.id).order_by(Message.id)
    )
    return RouteResult(
        inbound.conversation_id,
        inbound.status_after or conv.status,
        tuple(_stored_reply(m) for m in out),
        duplicate=True,
    )


def _stored_reply(message: Message) -> OutboundMessage:
    buttons = tuple(Button(b["title"], b["payload"]) for b in message.buttons or ())
    return OutboundMessage(message.text, buttons)


class DuplicateIdConflict(ValueError):
    """A message id was reused by a different user of the same channel."""

    def __init__(self, channel: str, message_id: str) -> None:
        super().__init__(
            f"message_id {message_id!r} was already used by another user on channel {channel!r}"
        )
