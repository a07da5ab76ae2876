"""The decision core's survey rules: when a survey is sent, what answers it, when it expires.

Rules: at most one open survey per conversation; none after a `timeout` resolution or with a
code that suppresses it (`spam`); none while the customer had one within the cooldown. While a
question is pending, a typed text is its answer — a score the parser can read, or else the
comment — and never reopens the conversation; commands and requests for a person are not
answers. After expiry a typed reply is an ordinary message and a late button press is told
the survey has closed. A typed text counts as an answer only within the reopen window of the
question: days later it is a new request. Pure, like `carebot.routing.core`, which calls it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from carebot.domain.messages import OutboundMessage
from carebot.domain.states import Actor, Kind, ResolvedBy, Status, SurveyStatus
from carebot.domain.texts import N_, button, say
from carebot.routing import intents
from carebot.routing.decision import ConvState, Decision, Facts, SurveyState, Turn
from carebot.routing.policy import SurveyPolicy
from carebot.routing.survey_answers import parse_score

PAYLOAD_PREFIX = "survey:"
SKIP = "skip"
SCALES = {"csat": 5, "ces": 7}
MAX_COMMENT = 2000
_PAYLOAD = re.compile(r"([0-9]{1,18}):([0-9]{1,2}|skip)")
SKIP_TITLE = N_("Skip")
HARD_TITLE = N_("1 hard")
EASY_TITLE = N_("7 easy")
# The survey's texts are settings (CAREBOT_SURVEY_*_TEXT); their defaults are catalog texts,
# so they reach customers in their language. A text an installation sets itself is sent as it
# is, unless the catalogs translate it too.
DEFAULT_TEXTS = (
    N_("How satisfied are you with the help you got?"),
    N_("How easy was it to get your issue resolved?"),
    N_("Anything we could do better? Just type it, or press Skip."),
    N_("Thank you for your feedback! If you need anything else, just write."),
)


def question(survey: SurveyState, policy: SurveyPolicy, prompt: str = "score") -> OutboundMessage:
    """The survey's score question, or its comment question, with buttons (needs its id)."""
    assert survey.id is not None
    if prompt == "comment":
        return say(policy.comment_text, (
            button(SKIP_TITLE, f"{PAYLOAD_PREFIX}{survey.id}:{SKIP}"),))
    text = policy.csat_text if survey.kind == "csat" else policy.ces_text
    labels = {1: "1 😞", 3: "3 😐", 5: "5 😀"} if survey.kind == "csat" else {
        1: HARD_TITLE, 7: EASY_TITLE}
    return say(text, tuple(
        button(labels.get(n, str(n)), f"{PAYLOAD_PREFIX}{survey.id}:{n}")
        for n in range(1, survey.scale + 1)
    ))


def on_resolved(
    d: Decision, now: datetime, facts: Facts, policy: SurveyPolicy, agent_id: int | None
) -> None:
    """Schedule a CSAT survey for the just-resolved conversation when the rules allow one;
    without a delay it is sent at once, after the resolution's own reply."""
    conv = d.conv
    if conv.channel not in policy.channels or conv.resolved_by == ResolvedBy.TIMEOUT:
        return
    if facts.survey is not None and facts.survey.is_open:
        return
    survey = SurveyState(
        None, "csat", SCALES["csat"], SurveyStatus.SCHEDULED, conv.resolved_by, agent_id,
        due_at=now + policy.delay, created_at=now, conversation_id=conv.id,
        customer_id=conv.customer_id, channel=conv.channel,
    )
    d.surveys.append(survey)
    if policy.delay.total_seconds() > 0:
        return
    if facts.surveyed_recently is None:
        d.needs.add("surveys")
        return
    _send(d, survey, now, facts.surveyed_recently, policy)


def send_due(
    conv: ConvState, survey: SurveyState, now: datetime, surveyed_recently: bool,
    policy: SurveyPolicy,
) -> Decision:
    """A scheduled survey's delay has passed (timer): send it, or cancel it if the rules say no."""
    d = Decision(conv.copy())
    survey = survey.copy()
    d.surveys.append(survey)
    _send(d, survey, now, surveyed_recently, policy)
    return d


def _send(
    d: Decision, survey: SurveyState, now: datetime, surveyed_recently: bool,
    policy: SurveyPolicy,
) -> None:
    reason = "reopened" if d.conv.status != Status.RESOLVED else (
        "cooldown" if surveyed_recently else None)
    if reason is not None:
        survey.status = SurveyStatus.CANCELLED
        d.touch(Kind.SURVEY_SKIPPED, Actor.SYSTEM, now, details={"reason": reason})
        return
    survey.status = SurveyStatus.SENT
    survey.awaiting = "score"
    survey.sent_at = now
    survey.expires_at = now + policy.expiry
    d.touch(Kind.SURVEY_SENT, Actor.SYSTEM, now, survey=survey)
    d.say(None, now, sender=Actor.SYSTEM, survey=survey)


def expire(conv: ConvState, survey: SurveyState, now: datetime) -> Decision:
    """A survey past its expiry (timer): stats see it as unanswered."""
    d = Decision(conv.copy())
    survey = survey.copy()
    d.surveys.append(survey)
    _expire(d, survey, now)
    return d


def withdraw(d: Decision, survey: SurveyState, now: datetime, reason: str) -> None:
    """An open survey can no longer be answered (the customer's data is erased): a sent one
    expires (unanswered, as the stats count it), a scheduled one is cancelled."""
    survey = survey.copy()
    d.surveys.append(survey)
    if survey.status == SurveyStatus.SCHEDULED:
        survey.status = SurveyStatus.CANCELLED
        d.touch(Kind.SURVEY_SKIPPED, Actor.SYSTEM, now, details={"reason": reason})
    else:
        _expire(d, survey, now)


def _expired(survey: SurveyState, now: datetime) -> bool:
    return survey.status == SurveyStatus.EXPIRED or (
        survey.expires_at is not None and now > survey.expires_at)


def _expire(d: Decision, survey: SurveyState, now: datetime) -> None:
    survey.awaiting = None
    if survey.status == SurveyStatus.SENT:
        survey.status = SurveyStatus.EXPIRED
        d.touch(Kind.SURVEY_EXPIRED, Actor.SYSTEM, now, survey=survey)


def take_answer(
    d: Decision, latest: SurveyState | None, turn: Turn, cmd: str | None,
    policy: SurveyPolicy, window: timedelta,
) -> bool:
    """Take the message as an answer to the resolved conversation's survey, if it is one.

    Typed text answers the question only within `window` (the reopen window) of its sending:
    a customer who writes days later is starting over, not commenting."""
    payload = turn.payload or ""
    now = turn.received
    if payload.startswith(PAYLOAD_PREFIX):
        return _button(d, latest, payload.removeprefix(PAYLOAD_PREFIX), now, policy)
    if latest is None or latest.awaiting is None or payload or cmd is not None:
        return False
    if latest.sent_at is not None and now - latest.sent_at > window:
        return False
    survey = latest.copy()
    text = turn.text.strip()
    if _expired(survey, now):
        d.surveys.append(survey)
        _expire(d, survey, now)
        return False  # a late reply is an ordinary message
    if not text or intents.wants_human(text):
        return False
    d.surveys.append(survey)
    if survey.awaiting == "score":
        score = parse_score(text, survey.kind, survey.scale)
        if score is not None:
            _scored(d, survey, score, now, policy)
            return True
    # Not a score: the customer's words about how it went, i.e. the comment.
    survey.comment = text[:MAX_COMMENT]
    survey.awaiting = None
    d.touch(Kind.SURVEY_COMMENT, Actor.CUSTOMER, now, with_message=True, survey=survey)
    d.say(say(policy.thanks_text), now, sender=Actor.SYSTEM)
    return True


def _button(
    d: Decision, latest: SurveyState | None, raw: str, now: datetime, policy: SurveyPolicy
) -> bool:
    parsed = _PAYLOAD.fullmatch(raw)
    if parsed is None or latest is None or latest.id is None:
        return False
    survey_id, value = int(parsed.group(1)), parsed.group(2)
    if survey_id != latest.id:
        if survey_id < latest.id:  # an earlier question of this conversation's surveys
            d.say(say(policy.stale_text), now, sender=Actor.SYSTEM)
            return True
        return False
    survey = latest.copy()
    d.surveys.append(survey)
    if _expired(survey, now):
        # A late press carries no question to route: say so instead of opening a case.
        _expire(d, survey, now)
        d.say(say(policy.closed_text), now, sender=Actor.SYSTEM)
        return True
    if value == SKIP and survey.awaiting == "comment":
        survey.awaiting = None
        d.say(say(policy.thanks_text), now, sender=Actor.SYSTEM)
        return True
    if survey.awaiting != "score" or value == SKIP or not 1 <= int(value) <= survey.scale:
        d.say(say(policy.stale_text), now, sender=Actor.SYSTEM)
        return True
    _scored(d, survey, int(value), now, policy)
    return True


def _scored(
    d: Decision, survey: SurveyState, score: int, now: datetime, policy: SurveyPolicy
) -> None:
    survey.score = score
    survey.status = SurveyStatus.ANSWERED
    survey.answered_at = now
    survey.awaiting = None
    d.touch(Kind.SURVEY_ANSWERED, Actor.CUSTOMER, now, with_message=True, score=float(score),
            survey=survey, details={"score": score})
    d.emit("survey_answered", agents=(survey.agent_id,), kind=survey.kind, score=score)
    if survey.kind == "csat" and policy.ces_enabled:
        ces = SurveyState(
            None, "ces", SCALES["ces"], SurveyStatus.SENT, survey.resolved_by,
            survey.agent_id, due_at=now, created_at=now, awaiting="score", sent_at=now,
            expires_at=now + policy.expiry, conversation_id=survey.conversation_id,
            customer_id=survey.customer_id, channel=survey.channel,
        )
        d.surveys.append(ces)
        d.touch(Kind.SURVEY_SENT, Actor.SYSTEM, now, survey=ces)
        d.say(None, now, sender=Actor.SYSTEM, survey=ces)
    elif policy.comment_enabled:
        survey.awaiting = "comment"
        d.say(None, now, sender=Actor.SYSTEM, survey=survey, prompt="comment")
    else:
        d.say(say(policy.thanks_text), now, sender=Actor.SYSTEM)
