"""Post-resolution surveys in the chat: CSAT (1-5), optional CES (1-7), optional comment.

Rules: at most one open survey per conversation; none after a `timeout` resolution or a
conversation closed as spam; none while the customer had one within the cooldown; a survey
expires, after which a late answer is an ordinary message; a message that is not an answer
goes to normal routing (it reopens help) instead of being swallowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Contact, Conversation, Survey
from carebot.delivery.outbox import enqueue
from carebot.domain.events import Effects
from carebot.domain.messages import Button, OutboundMessage
from carebot.routing import touchpoints
from carebot.routing.survey_answers import parse_score

PAYLOAD_PREFIX = "survey:"
SKIP = "skip"
SCALES = {"csat": 5, "ces": 7}
MAX_COMMENT = 2000
NO_SURVEY_RESOLUTIONS = {"timeout"}
NO_SURVEY_CODES = {"spam"}


@dataclass(frozen=True)
class SurveyPolicy:
    """Survey settings (from Settings)."""

    channels: frozenset[str] = frozenset({"telegram", "http"})
    delay: timedelta = timedelta(0)
    cooldown: timedelta = timedelta(days=7)
    expiry: timedelta = timedelta(days=3)
    ces_enabled: bool = False
    comment_enabled: bool = True
    csat_text: str = "How satisfied are you with the help you got?"
    ces_text: str = "How easy was it to get your issue resolved?"
    comment_text: str = "Anything we could do better? Just type it, or press Skip."
    thanks_text: str = "Thank you for your feedback!"
    stale_text: str = "Thanks! We already have your answer to that survey."
    closed_text: str = "That survey has closed, thank you anyway. Write any time if you need help."


def _buttons(survey: Survey) -> tuple[Button, ...]:
    return question_buttons(survey.id, survey.kind, survey.scale)


def question_buttons(survey_id: int, kind: str, scale: int) -> tuple[Button, ...]:
    """The score buttons of a survey question (also built by the inbound batcher)."""
    labels = {1: "1 😞", 3: "3 😐", 5: "5 😀"} if kind == "csat" else {1: "1 hard", 7: "7 easy"}
    return tuple(
        Button(labels.get(n, str(n)), f"{PAYLOAD_PREFIX}{survey_id}:{n}")
        for n in range(1, scale + 1)
    )


async def on_resolved(
    session: AsyncSession, conv: Conversation, now: datetime, policy: SurveyPolicy
) -> OutboundMessage | None:
    """Schedule a CSAT survey for a just-resolved conversation when the rules allow one.

    Without a delay it is sent at once: the question is returned for the caller to deliver
    (inline or through the outbox) right after its own reply.
    """
    if (
        conv.channel not in policy.channels
        or conv.resolved_by in NO_SURVEY_RESOLUTIONS
        or (conv.resolution_code or "").lower() in NO_SURVEY_CODES
    ):
        return None
    open_one = await session.scalar(
        select(Survey.id).where(
            Survey.conversation_id == conv.id, Survey.status.in_(("scheduled", "sent"))
        )
    )
    if open_one is not None:
        return None
    survey = Survey(
        conversation_id=conv.id, customer_id=conv.customer_id, channel=conv.channel,
        kind="csat", scale=SCALES["csat"], status="scheduled",
        resolved_by=conv.resolved_by,
        agent_id=conv.assigned_agent_id if conv.resolved_by == "agent" else None,
        due_at=now + policy.delay, created_at=now,
    )
    session.add(survey)
    await session.flush()
    if policy.delay <= timedelta(0):
        return await send(session, survey, conv, now, policy)
    return None


async def send_due(
    session: AsyncSession, now: datetime, policy: SurveyPolicy, effects: Effects
) -> int:
    """Send scheduled surveys whose delay has passed (timer); returns how many went out."""
    due = list(await session.scalars(
        select(Survey)
        .where(Survey.status == "scheduled", Survey.due_at <= now)
        .order_by(Survey.due_at)
        .limit(200)
        .with_for_update(skip_locked=True)
    ))
    sent = 0
    for survey in due:
        conv = await session.get(Conversation, survey.conversation_id)
        contact = await session.get(Contact, conv.contact_id) if conv else None
        assert conv is not None and contact is not None
        question = await send(session, survey, conv, now, policy)
        if question is not None:
            await enqueue(session, conv, contact.external_id, question, now, sender="system")
            effects.outbox_pending = True
            sent += 1
    return sent


async def send(
    session: AsyncSession, survey: Survey, conv: Conversation, now: datetime,
    policy: SurveyPolicy,
) -> OutboundMessage | None:
    """Mark a scheduled survey sent and return its question, or cancel it if the rules say no."""
    reason = None
    if conv.status != "resolved":
        reason = "reopened"
    else:
        recent = await session.scalar(
            select(Survey.id).where(
                Survey.customer_id == survey.customer_id,
                Survey.sent_at.is_not(None),
                Survey.sent_at > now - policy.cooldown,
                Survey.id != survey.id,
            ).limit(1)
        )
        if recent is not None:
            reason = "cooldown"
    if reason is not None:
        survey.status = "cancelled"
        touchpoints.record(session, conv, "survey_skipped", actor="system",
                           channel=conv.channel, at=now, details={"reason": reason})
        return None
    survey.status = "sent"
    survey.awaiting = "score"
    survey.sent_at = now
    survey.expires_at = now + policy.expiry
    touchpoints.record(session, conv, "survey_sent", actor="system", channel=conv.channel,
                       at=now, details={"survey_id": survey.id, "kind": survey.kind})
    return OutboundMessage(policy.csat_text, _buttons(survey))


async def pending(session: AsyncSession, conv: Conversation) -> Survey | None:
    """The survey of this conversation waiting for an answer, if any."""
    return await session.scalar(
        select(Survey)
        .where(Survey.conversation_id == conv.id, Survey.awaiting.is_not(None))
        .order_by(Survey.id.desc())
        .limit(1)
        .with_for_update()
    )


async def answer(
    session: AsyncSession, conv: Conversation, text: str, payload: str | None,
    now: datetime, policy: SurveyPolicy, message_id: int | None = None,
) -> list[OutboundMessage] | None:
    """Take the message as a survey answer; None when it is not one (route it normally).

    Replies are returned, not enqueued, so the router stores them like its own replies.
    """
    if payload and payload.startswith(PAYLOAD_PREFIX):
        return await _button(session, conv, payload, now, policy, message_id)
    survey = await pending(session, conv)
    if survey is None or payload:
        return None
    if _expired(session, survey, conv, now):
        return None
    if survey.awaiting == "score":
        score = parse_score(text, survey.kind, survey.scale)
        if score is None:
            return None
        return await _scored(session, survey, conv, score, now, policy, message_id)
    if survey.awaiting == "comment" and text.strip():
        survey.comment = text.strip()[:MAX_COMMENT]
        survey.awaiting = None
        touchpoints.record(session, conv, "survey_comment", actor="customer",
                           channel=conv.channel, at=now, message_id=message_id,
                           details={"survey_id": survey.id})
        return [OutboundMessage(policy.thanks_text)]
    return None


async def _button(
    session: AsyncSession, conv: Conversation, payload: str, now: datetime,
    policy: SurveyPolicy, message_id: int | None,
) -> list[OutboundMessage] | None:
    parts = payload.removeprefix(PAYLOAD_PREFIX).split(":")
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    survey = await session.get(Survey, int(parts[0]), with_for_update=True)
    if survey is None or survey.conversation_id != conv.id:
        return None
    if survey.status == "expired" or _expired(session, survey, conv, now):
        # A late press carries no question to route: say so instead of opening a case.
        return [OutboundMessage(policy.closed_text)]
    if parts[1] == SKIP and survey.awaiting == "comment":
        survey.awaiting = None
        return [OutboundMessage(policy.thanks_text)]
    if survey.awaiting != "score" or not parts[1].isdigit():
        return [OutboundMessage(policy.stale_text)]
    score = int(parts[1])
    if not 1 <= score <= survey.scale:
        return None
    return await _scored(session, survey, conv, score, now, policy, message_id)


def _expired(session: AsyncSession, survey: Survey, conv: Conversation, now: datetime) -> bool:
    if survey.expires_at is None or now <= survey.expires_at:
        return False
    survey.awaiting = None
    if survey.status == "sent":
        survey.status = "expired"
        touchpoints.record(session, conv, "survey_expired", actor="system",
                           channel=conv.channel, at=now, details={"survey_id": survey.id})
    return True


async def _scored(
    session: AsyncSession, survey: Survey, conv: Conversation, score: int, now: datetime,
    policy: SurveyPolicy, message_id: int | None,
) -> list[OutboundMessage]:
    survey.score = score
    survey.status = "answered"
    survey.answered_at = now
    survey.awaiting = None
    touchpoints.record(
        session, conv, "survey_answered", actor="customer", channel=conv.channel, at=now,
        message_id=message_id, score=float(score),
        details={"survey_id": survey.id, "kind": survey.kind, "score": score},
    )
    if survey.kind == "csat" and policy.ces_enabled:
        ces = Survey(
            conversation_id=conv.id, customer_id=conv.customer_id, channel=conv.channel,
            kind="ces", scale=SCALES["ces"], status="sent", awaiting="score",
            resolved_by=survey.resolved_by, agent_id=survey.agent_id, due_at=now,
            sent_at=now, expires_at=now + policy.expiry, created_at=now,
        )
        session.add(ces)
        await session.flush()
        touchpoints.record(session, conv, "survey_sent", actor="system", channel=conv.channel,
                           at=now, details={"survey_id": ces.id, "kind": "ces"})
        return [OutboundMessage(policy.ces_text, _buttons(ces))]
    if policy.comment_enabled:
        survey.awaiting = "comment"
        return [OutboundMessage(
            policy.comment_text, (Button("Skip", f"{PAYLOAD_PREFIX}{survey.id}:{SKIP}"),)
        )]
    return [OutboundMessage(policy.thanks_text)]


async def expire_due(session: AsyncSession, now: datetime) -> int:
    """Mark surveys past their expiry (timer), so stats see them as unanswered."""
    rows = list(await session.scalars(
        select(Survey)
        .where(Survey.awaiting.is_not(None), Survey.expires_at < now)
        .limit(500)
        .with_for_update(skip_locked=True)
    ))
    for survey in rows:
        conv = await session.get(Conversation, survey.conversation_id)
        assert conv is not None
        _expired(session, survey, conv, now)
    return len(rows)
