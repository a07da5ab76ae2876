"""The decision core, rule by rule: state + input -> decision, no database, no HTTP.

Each row is one rule: the conversation before, what happens, and what a customer or agent
would notice afterwards (the status, the touchpoints on record, what the bot says).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from carebot.domain.hours import BusinessHours
from carebot.domain.messages import OutboundMessage
from carebot.matching.faq import Candidate, FaqDoc
from carebot.routing import core, replies
from carebot.routing.decision import (
    AgentFacts,
    AgentPresence,
    ConvState,
    Decision,
    Facts,
    Knowledge,
    NotAllowed,
    SurveyState,
    Turn,
)
from carebot.routing.policy import Policy, ResolutionCode
from carebot.routing.smalltalk import load_small_talk
from carebot.settings import Settings

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = Policy.from_settings(Settings())  # the shipped defaults, from their one home
ORDER = FaqDoc("order-status", "Where is my order?", "Follow it under Account -> Orders.")
RETURN = FaqDoc("return-how", "How do I return an item?", "Print the label in Account.")
KB = Knowledge({d.id: d for d in (ORDER, RETURN)},
               load_small_talk(Path(__file__).resolve().parents[1] / "knowledge" / "smalltalk"))
CODES = {"answered": ResolutionCode("answered", "Answered"),
         "spam": ResolutionCode("spam", "Spam", survey=False, may_reopen=False)}
ALEX = AgentFacts(7, "Alex", capacity=3, load=0)
BEA = AgentFacts(8, "Bea", capacity=3, load=0)
NO_ONE: tuple[AgentFacts, ...] = ()
FACTS = Facts(surveyed_recently=False, agents=NO_ONE, queue_position=4, codes=CODES,
              card_notice_given=False)


def conv(**kw: Any) -> ConvState:
    """A conversation with the bot, opened an hour ago, with `kw` changed."""
    base = ConvState(1, 10, 20, "http", "bot", NOW - timedelta(hours=1),
                     NOW - timedelta(minutes=5), customer_messages=1)
    return replace(base, **kw)


def resolved(minutes_ago: float = 30, **kw: Any) -> ConvState:
    """A conversation the bot resolved `minutes_ago`."""
    fields: dict[str, Any] = {"status": "resolved", "resolved_by": "bot",
                              "resolved_at": NOW - timedelta(minutes=minutes_ago), **kw}
    return conv(**fields)


def pending_survey(**kw: Any) -> SurveyState:
    """A CSAT question sent ten minutes ago, waiting for the score."""
    base = SurveyState(5, "csat", 5, "sent", "bot", None, NOW - timedelta(minutes=10),
                       NOW - timedelta(minutes=10), awaiting="score",
                       sent_at=NOW - timedelta(minutes=10), expires_at=NOW + timedelta(days=3),
                       conversation_id=1, customer_id=10, channel="http")
    return replace(base, **kw)


def say(text: str = "", payload: str | None = None, *matches: tuple[str, float]) -> Turn:
    return Turn("http", text, payload, NOW, [Candidate(f, s) for f, s in matches])


def masked(text: str, *kinds: str, matches: tuple[tuple[str, float], ...] = ()) -> Turn:
    """A message in which the channel masked `kinds` (card numbers, e-mails, …)."""
    return Turn("http", text, None, NOW, [Candidate(f, s) for f, s in matches],
                frozenset(kinds))


# Monday 2 March 2026, 12:00 UTC is 13:00 in Berlin: the team below starts at 14:00.
LATER_TODAY = replace(POLICY, hours=BusinessHours.parse("mon-fri 14:00-17:00", "Europe/Berlin"))


@dataclass
class Row:
    """One rule: before, input, and what must follow."""

    name: str
    latest: ConvState | None
    turn: Turn
    facts: Facts = FACTS
    policy: Policy = POLICY
    status: str = "bot"
    kinds: list[str] = field(default_factory=list)
    says: list[str] = field(default_factory=list)  # the start of each reply, in order
    new_conversation: bool = False
    check: Callable[[Decision], Any] | None = None


ROWS = [
    # --- reopening --------------------------------------------------------------------------
    Row("a resolved conversation reopens within the window", resolved(), say("one more thing"),
        status="queued", kinds=["reopened", "message_in", "handoff"],
        says=["I'm passing you to a person"]),
    Row("spam never reopens: a new conversation starts",
        resolved(resolved_by="agent", resolution_code="spam"), say("hello?? anyone", None),
        status="queued", kinds=["message_in", "handoff"], new_conversation=True,
        says=["I'm passing you to a person"]),
    Row("after the window a new conversation starts", resolved(minutes_ago=25 * 60),
        say("where is my order", None, ("order-status", 0.9)), kinds=["message_in", "faq_answer"],
        new_conversation=True, says=["Follow it under"]),
    # --- surveys ----------------------------------------------------------------------------
    Row("a typed score answers the pending survey", resolved(),
        say("4/5"), facts=replace(FACTS, survey=pending_survey()), status="resolved",
        kinds=["survey_answered"], says=["$survey"],  # the comment question, with Skip
        check=lambda d: (d.surveys[0].score, d.surveys[0].awaiting) == (4, "comment")),
    Row("text that is not a score is the survey's comment, never a new contact", resolved(),
        say("the courier was rude"), facts=replace(FACTS, survey=pending_survey()),
        status="resolved", kinds=["survey_comment"], says=["Thank you for your feedback!"],
        check=lambda d: (d.conv.reopen_count, d.conv.customer_messages) == (0, 1)),
    Row("asking for a person while a survey waits reopens", resolved(), say("/human"),
        facts=replace(FACTS, survey=pending_survey()), status="queued",
        kinds=["reopened", "message_in", "handoff"], says=["I'm passing you"]),
    Row("a reply after the survey expired is an ordinary message", resolved(),
        say("the courier was rude"),
        facts=replace(FACTS, survey=pending_survey(expires_at=NOW - timedelta(minutes=1))),
        status="queued", kinds=["survey_expired", "reopened", "message_in", "handoff"],
        says=["I'm passing you"]),
    Row("a late survey button is told the survey closed", resolved(), say("", "survey:5:4"),
        facts=replace(FACTS, survey=pending_survey(expires_at=NOW - timedelta(minutes=1))),
        status="resolved", kinds=["survey_expired"], says=["That survey has closed"]),
    # --- small talk and commands ------------------------------------------------------------
    Row("a greeting gets a greeting, not a handoff", None, say("Hi!"),
        kinds=["message_in", "small_talk"], says=["Hi! How can I help"], new_conversation=True),
    Row("thanks without a pending answer is small talk", conv(), say("thanks!"),
        kinds=["message_in", "small_talk"], says=["You're welcome"]),
    Row("thanks after a resolution is answered and reopens nothing", resolved(), say("bye"),
        status="resolved", kinds=["small_talk"], says=["Bye!"]),
    Row("/help is answered while queued, and the agent still sees it",
        conv(status="queued", queued_at=NOW, queue_ack_at=NOW), say("/help"),
        status="queued", kinds=["message_in"], says=["Just type your question"],
        check=lambda d: [e.kind for e in d.events] == ["message"]),
    Row("/start after a resolution greets without reopening", resolved(), say("/start"),
        status="resolved", kinds=[], says=["Hi! I'm the support assistant"]),
    # --- buttons ----------------------------------------------------------------------------
    Row("a Yes the bot offered resolves the conversation",
        conv(pending_faq_id="order-status",
             offered_payloads=["yes:order-status", "no:order-status"]),
        say("", "yes:order-status"), status="resolved",
        kinds=["message_in", "faq_feedback", "resolved", "survey_sent"],
        says=["Glad I could help!", "$survey"]),
    Row("a forged Yes is recorded, and resolves nothing", conv(), say("", "yes:order-status"),
        kinds=["message_in", "unknown_button"], says=["That button is no longer active"],
        check=lambda d: d.conv.resolved_by is None and d.conv.effort_score == 2),
    Row("a stale pick of an unknown FAQ id is read as what was typed",
        conv(offered_payloads=["faq:order-status"]), say("where is my order", "faq:nope",
                                                         ("order-status", 0.9)),
        kinds=["message_in", "unknown_button", "faq_answer"], says=["Follow it under"]),
    Row("a picked suggestion that was offered is answered",
        conv(offered_payloads=["faq:return-how", "handoff"]), say("", "faq:return-how"),
        kinds=["message_in", "faq_answer"], says=["Print the label"]),
    # --- the queue --------------------------------------------------------------------------
    Row("writing while queued: told the position once", conv(status="queued", queued_at=NOW),
        say("hello? anyone?"), status="queued", kinds=["message_in"],
        says=["You're still in the queue (number 4)"]),
    Row("... and not again within a few minutes",
        conv(status="queued", queued_at=NOW, queue_ack_at=NOW - timedelta(minutes=1)),
        say("hello??"), status="queued", kinds=["message_in"], says=[]),
    Row("... but again after them",
        conv(status="queued", queued_at=NOW, queue_ack_at=NOW - timedelta(minutes=4)),
        say("still there?"), status="queued", kinds=["message_in"],
        says=["You're still in the queue"]),
    Row("a handoff goes to the least loaded online agent",
        conv(), say("/human"), facts=replace(FACTS, agents=(replace(ALEX, load=2), BEA)),
        status="assigned", kinds=["message_in", "handoff", "assigned"],
        says=["I've passed your conversation to Bea"]),
    # --- masked card numbers (and IBANs, e-mails, phones) ------------------------------------
    Row("a card number: told once that cards are refused, then answered as usual", conv(),
        masked("where is my order, card [card number removed]", "card",
               matches=(("order-status", 0.9),)),
        kinds=["message_in", "faq_answer", "redacted", "redaction_notice"],
        says=["For your safety, please don't send card numbers", "Follow it under"]),
    Row("... and not told again in the same conversation", conv(),
        masked("where is my order [card number removed]", "card",
               matches=(("order-status", 0.9),)),
        facts=replace(FACTS, card_notice_given=True),
        kinds=["message_in", "faq_answer", "redacted"], says=["Follow it under"]),
    Row("a card number while a person has it: told all the same (the bot is otherwise silent)",
        conv(status="assigned", assigned_agent_id=ALEX.id),
        masked("my card is [card number removed]", "card"), status="assigned",
        kinds=["message_in", "redacted", "redaction_notice"], says=["For your safety"]),
    Row("a masked e-mail is on record, without a notice",
        conv(status="queued", queued_at=NOW, queue_ack_at=NOW), masked("[email removed]", "email"),
        status="queued", kinds=["message_in", "redacted"], says=[]),
    # --- business hours ----------------------------------------------------------------------
    Row("outside business hours a handoff queues and says when a person will reply", conv(),
        say("/human"), policy=LATER_TODAY, status="queued", kinds=["message_in", "handoff"],
        says=["Our support team is away right now, so I've put you in the queue (number 4). "
              "A person will reply here today at 14:00. You can keep writing: they will see "
              "everything. Our hours: Mon-Fri 14:00-17:00 (Europe/Berlin)."],
        check=lambda d: d.touches[-1].details == {"reason": "requested", "outside_hours": True}
        and d.events[0].data == {"reason": "requested", "outside_hours": True}),
    Row("... but someone online outside hours takes it", conv(), say("/human"),
        facts=replace(FACTS, agents=(BEA,)), policy=LATER_TODAY, status="assigned",
        kinds=["message_in", "handoff", "assigned"], says=["I've passed your conversation"]),
    Row("... and a customer waiting outside hours is reminded when",
        conv(status="queued", queued_at=NOW - timedelta(hours=1)), say("hello?"),
        policy=LATER_TODAY, status="queued", kinds=["message_in"],
        says=["You're still in the queue (number 4). Our team is away right now; a person "
              "will reply here today at 14:00."]),
    Row("a handoff with nobody free waits in the queue with its position", conv(),
        say("no match at all here", None, ("order-status", 0.05)), status="queued",
        kinds=["message_in", "handoff"], says=["I'm passing you to a person from our support "
                                               "team. You're number 4"]),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_message_rules(row: Row) -> None:
    d = core.decide_message(row.latest, row.turn, row.facts, row.policy, KB)
    assert not d.needs
    assert d.conv.status == row.status
    assert [str(t.kind) for t in d.touches] == row.kinds
    said = [r.message.text if r.message else "$survey" for r in d.replies]
    assert len(said) == len(row.says), said
    for text, start in zip(said, row.says, strict=True):
        assert text.startswith(start), (text, start)
    assert d.new_conversation == row.new_conversation
    if row.check is not None:
        assert row.check(d)


def test_the_core_never_changes_what_it_was_given() -> None:
    before = conv(pending_faq_id="order-status", offered_payloads=["yes:order-status"])
    snapshot = replace(before)
    core.decide_message(before, say("", "yes:order-status"), FACTS, POLICY, KB)
    assert before == snapshot


def test_a_decision_asks_for_facts_it_was_not_given() -> None:
    unloaded = Facts()
    assert core.decide_message(conv(), say("/human"), unloaded, POLICY, KB).needs == {"queue"}
    card = masked("[card number removed]", "card", matches=(("order-status", 0.9),))
    assert core.decide_message(conv(), card, replace(FACTS, card_notice_given=None), POLICY,
                               KB).needs == {"card_notice"}
    # A first message has no earlier notice to look for.
    first = core.decide_message(None, card, replace(FACTS, card_notice_given=None), POLICY, KB)
    assert not first.needs and first.replies[0].message == OutboundMessage(replies.CARD_NOTICE)
    unmatched = Turn("http", "where is it", None, NOW, candidates=None)
    assert core.decide_message(conv(), unmatched, unloaded, POLICY, KB).needs == {"match"}


# --- agents ----------------------------------------------------------------------------------


def test_transfer_to_an_offline_or_disabled_agent_is_refused() -> None:
    held = conv(status="assigned", assigned_agent_id=ALEX.id)
    with pytest.raises(NotAllowed, match="Bea is offline; pick an online agent"):
        core.transfer(held, ALEX, replace(BEA, status="offline"), None, NOW, ())
    with pytest.raises(NotAllowed, match="Bea is disabled"):
        core.transfer(held, ALEX, replace(BEA, disabled=True), None, NOW, ())


def test_transfer_carries_a_note_for_the_next_agent_only() -> None:
    held = conv(status="assigned", assigned_agent_id=ALEX.id)
    d = core.transfer(held, ALEX, BEA, "refund promised", NOW, ())
    assert (d.conv.status, d.conv.assigned_agent_id, d.conv.transfers) == ("assigned", BEA.id, 1)
    note, joined = d.replies
    assert (note.private, note.message and note.message.text) == (True, "refund promised")
    assert (joined.private, joined.message and joined.message.text) == (
        False, "Bea has joined the conversation.")


def test_back_to_the_queue_never_goes_straight_back_to_the_releasing_agent() -> None:
    held = conv(status="assigned", assigned_agent_id=ALEX.id, queued_at=NOW)
    d = core.transfer(held, ALEX, None, None, NOW, (ALEX,))
    assert (d.conv.status, d.conv.released_by_agent_id) == ("queued", ALEX.id)
    assert core.assign_waiting(d.conv, (ALEX,), NOW).assigned == []
    assert core.assign_waiting(d.conv, (ALEX, BEA), NOW).assigned == [BEA]


def test_resolving_from_the_queue_credits_the_resolver() -> None:
    waiting = conv(status="queued", queued_at=NOW)
    d = core.resolve_by_agent(waiting, ALEX, CODES["answered"], NOW, FACTS, POLICY)
    assert (d.conv.status, d.conv.resolved_agent_id, d.conv.assigned_agent_id) == (
        "resolved", ALEX.id, None)


def test_spam_is_resolved_without_a_survey() -> None:
    held = conv(status="assigned", assigned_agent_id=ALEX.id)
    d = core.resolve_by_agent(held, ALEX, CODES["spam"], NOW, FACTS, POLICY)
    assert d.surveys == [] and [str(t.kind) for t in d.touches] == ["resolved"]


def test_claim_respects_capacity_and_status() -> None:
    with pytest.raises(NotAllowed, match="capacity of 3"):
        core.claim(conv(status="queued"), replace(ALEX, load=3), NOW)
    with pytest.raises(NotAllowed, match="not queued"):
        core.claim(conv(status="assigned", assigned_agent_id=BEA.id), ALEX, NOW)
    d = core.claim(conv(status="queued", queued_at=NOW - timedelta(seconds=30)), ALEX, NOW)
    assert [str(t.kind) for t in d.touches] == ["assigned"]
    assert d.touches[0].wait_ms == 30_000


def test_replies_go_through_an_assignment_only() -> None:
    with pytest.raises(NotAllowed, match="claim it before replying"):
        core.reply(conv(status="queued"), ALEX, "hi", NOW, None)
    with pytest.raises(NotAllowed, match="not assigned to you"):
        core.reply(conv(status="assigned", assigned_agent_id=BEA.id), ALEX, "hi", NOW, None)


# How a timeout ended is read from the step before its resolution, kept as steps are
# recorded: (name, the conversation before, what happens, last step, the step before the
# resolution, the conversation's effort after each touchpoint).
STEP_ROWS: list[tuple[str, ConvState, Callable[[ConvState], Decision], str, str | None,
                      list[int]]] = [
    ("an answered question: the answer is the last step", conv(effort_score=2),
     lambda c: core.decide_message(c, say("where is it", None, ("order-status", 0.95)), FACTS,
                                   POLICY, KB), "faq_answer", None, [3, 3]),
    ("a timeout after an answer: the answer comes before the resolution",
     conv(last_step_kind="faq_answer"), lambda c: core.time_out(c, NOW), "resolved",
     "faq_answer", [0]),
    ("a timeout after suggestions only", conv(last_step_kind="faq_suggest"),
     lambda c: core.time_out(c, NOW), "resolved", "faq_suggest", [0]),
]


@pytest.mark.parametrize(("before", "act", "last", "before_resolution", "efforts"),
                         [r[1:] for r in STEP_ROWS], ids=[r[0] for r in STEP_ROWS])
def test_the_last_steps_and_running_effort_are_kept(
    before: ConvState, act: Callable[[ConvState], Decision], last: str,
    before_resolution: str | None, efforts: list[int],
) -> None:
    d = act(before)
    assert (d.conv.last_step_kind, d.conv.resolved_after_kind) == (last, before_resolution)
    assert [t.effort_total for t in d.touches] == efforts


def test_timers() -> None:
    d = core.time_out(conv(), NOW)
    assert (d.conv.status, d.conv.resolved_by, d.conv.resolution_code) == (
        "resolved", "timeout", "timeout")
    with pytest.raises(NotAllowed):
        core.time_out(conv(status="queued"), NOW)
    breach = core.sla_breached(conv(status="queued", queued_at=NOW - timedelta(minutes=6)),
                               NOW, POLICY)
    assert breach.touches[0].wait_ms == 360_000 and breach.events[0].kind == "sla_breached"


def test_a_reply_says_the_decision_status_for_every_rule() -> None:
    """Every handoff reply names the queue or the agent: no silent handoff."""
    for row in ROWS:
        d = core.decide_message(row.latest, row.turn, row.facts, row.policy, KB)
        if "handoff" in [str(t.kind) for t in d.touches]:
            assert any(r.message and (replies.HANDOFF_QUEUED[:20] in r.message.text
                                      or replies.HANDOFF_AWAY[:20] in r.message.text
                                      or "passed your conversation" in r.message.text)
                       for r in d.replies), row.name


# --- presence ----------------------------------------------------------------------------------

GRACE = timedelta(seconds=60)
AUTO, CHOSEN = True, False
# (name, the agent before, what happens, the status they get or None: unchanged)
CONNECT_ROWS = [
    ("made away by presence: online again", AgentPresence(7, "away", AUTO), "online"),
    ("made offline by presence: online again", AgentPresence(7, "offline", AUTO), "online"),
    ("away by choice: kept", AgentPresence(7, "away", CHOSEN), None),
    ("offline by choice (or never chose): kept", AgentPresence(7, "offline", CHOSEN), None),
    ("already online: nothing", AgentPresence(7, "online", AUTO), None),
    ("disabled: nothing", AgentPresence(7, "offline", AUTO, disabled=True), None),
]
GONE_ROWS = [
    ("online, last heartbeat within the grace: stays",
     AgentPresence(7, "online", presence_at=NOW - GRACE), None),
    ("online, last heartbeat older than the grace: away",
     AgentPresence(7, "online", presence_at=NOW - GRACE - timedelta(seconds=1)), "away"),
    ("online and never connected a console: away", AgentPresence(7, "online"), "away"),
    ("away by choice: presence leaves it", AgentPresence(7, "away"), None),
    ("offline: presence leaves it", AgentPresence(7, "offline"), None),
]


@pytest.mark.parametrize(("agent", "status"), [r[1:] for r in CONNECT_ROWS],
                         ids=[r[0] for r in CONNECT_ROWS])
def test_a_console_connecting(agent: AgentPresence, status: str | None) -> None:
    change = core.console_connected(agent)
    assert (change and change.status) == status
    if change is not None:
        assert change.event.kind == "agent_status" and change.event.agent_ids == (7,)
        assert change.event.data == {"agent_id": 7, "status": "online", "auto": True,
                                     "reason": "console_connected", "previous": agent.status}


@pytest.mark.parametrize(("agent", "status"), [r[1:] for r in GONE_ROWS],
                         ids=[r[0] for r in GONE_ROWS])
def test_no_console_for_the_grace_period(agent: AgentPresence, status: str | None) -> None:
    change = core.console_gone(agent, NOW, GRACE)
    assert (change and change.status) == status
    if change is not None:
        assert (change.reason, change.event.data["auto"]) == ("no_console", True)
    assert core.console_gone(agent, NOW, None) is None, "grace None: presence is off"


ASSIGNED_AT = NOW - timedelta(minutes=20)
HELD = conv(status="assigned", assigned_agent_id=ALEX.id, assigned_at=ASSIGNED_AT,
            queued_at=ASSIGNED_AT - timedelta(minutes=1))
# (name, last agent reply, first customer message after it, waiting since)
WAITING_ROWS = [
    ("no reply since the assignment: waiting since it", None, None, ASSIGNED_AT),
    ("a reply before the assignment (another agent's) does not count",
     ASSIGNED_AT - timedelta(minutes=1), ASSIGNED_AT - timedelta(seconds=30), ASSIGNED_AT),
    ("replied, nothing new from the customer: answered",
     NOW - timedelta(minutes=10), None, None),
    ("replied, then the customer wrote: since their first message after the reply",
     NOW - timedelta(minutes=10), NOW - timedelta(minutes=8), NOW - timedelta(minutes=8)),
]


@pytest.mark.parametrize(("last_reply", "first_after", "since"),
                         [r[1:] for r in WAITING_ROWS], ids=[r[0] for r in WAITING_ROWS])
def test_how_long_the_customer_has_waited_for_a_person(
    last_reply: datetime | None, first_after: datetime | None, since: datetime | None
) -> None:
    assert core.waiting_since(HELD, last_reply, first_after) == since
    assert core.waiting_since(replace(HELD, status="queued"), None, None) is None


FIVE_MIN = timedelta(minutes=5)
# (name, the agent holding it, waiting since, requeued?)
REQUEUE_ROWS = [
    ("away by presence, unanswered 5 min: requeued", replace(ALEX, status="away"),
     NOW - FIVE_MIN, True),
    ("offline by choice, unanswered 6 min: requeued", replace(ALEX, status="offline"),
     NOW - timedelta(minutes=6), True),
    ("disabled: requeued", replace(ALEX, disabled=True), NOW - FIVE_MIN, True),
    ("away, unanswered 4:59: not yet", replace(ALEX, status="away"),
     NOW - FIVE_MIN + timedelta(seconds=1), False),
    ("away, but answered: stays", replace(ALEX, status="away"), None, False),
    ("online: stays however long the customer waits", ALEX, NOW - timedelta(hours=1), False),
]


@pytest.mark.parametrize(("holder", "since", "requeued"), [r[1:] for r in REQUEUE_ROWS],
                         ids=[r[0] for r in REQUEUE_ROWS])
def test_an_absent_agents_unanswered_customer_goes_back_to_the_queue(
    holder: AgentFacts, since: datetime | None, requeued: bool
) -> None:
    if not requeued:
        with pytest.raises(NotAllowed):
            core.requeue_unanswered(HELD, holder, since, NOW, FIVE_MIN)
        return
    d = core.requeue_unanswered(HELD, holder, since, NOW, FIVE_MIN)
    assert (d.conv.status, d.conv.assigned_agent_id, d.conv.released_by_agent_id) == (
        "queued", None, ALEX.id)
    assert d.conv.queued_at == HELD.queued_at, "first response still runs from the handoff"
    [touch] = d.touches
    status = "disabled" if holder.disabled else holder.status
    assert (str(touch.kind), touch.effort, touch.details) == ("requeued", 0, {
        "from_agent_id": ALEX.id, "reason": "unanswered", "agent_status": status,
        "waited_ms": int((NOW - since).total_seconds() * 1000) if since else None})
    assert [(e.kind, e.agent_ids, e.queue) for e in d.events] == [
        ("unassigned", (ALEX.id,), False), ("queued", (), True)]
    assert d.replies == [], "the customer hears from whoever takes it next"
    # Assignment from the queue never gives it straight back to the agent who had it.
    assert core.assign_waiting(d.conv, (ALEX,), NOW).assigned == []
    assert core.assign_waiting(d.conv, (ALEX, BEA), NOW).assigned == [BEA]


def test_the_assigned_sla() -> None:
    with pytest.raises(NotAllowed):
        core.assigned_sla_breached(HELD, NOW - FIVE_MIN + timedelta(seconds=1), NOW, FIVE_MIN)
    with pytest.raises(NotAllowed):
        core.assigned_sla_breached(HELD, None, NOW, FIVE_MIN)  # answered
    d = core.assigned_sla_breached(HELD, NOW - timedelta(minutes=7), NOW, FIVE_MIN)
    [touch] = d.touches
    assert (str(touch.kind), touch.agent_id, touch.wait_ms, touch.effort, touch.details) == (
        "assigned_sla_breached", ALEX.id, 420_000, 0, {"sla_seconds": 300.0})
    [event] = d.events
    assert (event.kind, event.agent_ids, event.data) == (
        "assigned_sla_breached", (ALEX.id,), {"agent_id": ALEX.id, "waited_ms": 420_000})
    assert d.conv.status == "assigned" and d.replies == []


# --- who may read what ------------------------------------------------------------------------

BOSS = replace(BEA, id=9, name="Boss", role="manager")
HELD_BY_BEA = conv(status="assigned", assigned_agent_id=BEA.id)
ACCESS = [
    # name, reader, conversation, involved in it, holds the customer's open one -> may read
    ("their own conversation", BEA, HELD_BY_BEA, False, False, True),
    ("a queued conversation, to pick it up", ALEX, conv(status="queued"), False, False, True),
    ("another agent's conversation", ALEX, HELD_BY_BEA, False, False, False),
    ("a conversation with the bot", ALEX, conv(), False, False, False),
    ("one they replied to, transferred or handed back", ALEX, HELD_BY_BEA, True, False, True),
    ("one they resolved", ALEX, resolved(resolved_by="agent"), True, False, True),
    ("a returning customer's earlier one, while holding the new one", ALEX,
     resolved(resolved_by="agent"), False, True, True),
    ("managers read everything", BOSS, HELD_BY_BEA, False, False, True),
    ("admins read everything", replace(BOSS, role="admin"), conv(), False, False, True),
]


@pytest.mark.parametrize(("reader", "state", "involved", "holds", "expected"),
                         [row[1:] for row in ACCESS], ids=[row[0] for row in ACCESS])
def test_who_may_read_a_conversation(
    reader: AgentFacts, state: ConvState, involved: bool, holds: bool, expected: bool
) -> None:
    assert core.can_access(reader, state, involved=involved, holds_customer=holds) is expected


def test_reading_a_conversation_never_lets_an_agent_act_on_it() -> None:
    assert core.can_access(ALEX, HELD_BY_BEA, involved=True, holds_customer=True)
    assert not core.can_act(ALEX, HELD_BY_BEA)
    assert core.can_act(BEA, HELD_BY_BEA) and core.can_act(BOSS, HELD_BY_BEA)


CUSTOMER_ACCESS = [
    # name, reader, one of theirs assigned to the reader, involved in one, one of theirs
    # queued -> may read
    ("an agent holding one of their conversations", ALEX, True, False, False, True),
    ("an agent involved in one of them earlier", ALEX, False, True, False, True),
    ("an agent who may pick their queued conversation", ALEX, False, False, True, True),
    ("an agent with nothing to do with them", ALEX, False, False, False, False),
    ("a manager", BOSS, False, False, False, True),
]


@pytest.mark.parametrize(("reader", "assigned", "involved", "queued", "expected"),
                         [row[1:] for row in CUSTOMER_ACCESS],
                         ids=[row[0] for row in CUSTOMER_ACCESS])
def test_who_may_read_a_customer(
    reader: AgentFacts, assigned: bool, involved: bool, queued: bool, expected: bool
) -> None:
    assert core.can_see_customer(
        reader, assigned_one=assigned, involved_in_one=involved, one_queued=queued) is expected


SLA = timedelta(minutes=5)
SLA_ROWS = [
    # name, conversation, SLA state now
    ("just queued", conv(status="queued", queued_at=NOW), "ok"),
    ("four minutes in: the last fifth", conv(status="queued", queued_at=NOW - 4 * SLA / 5),
     "warning"),
    ("five minutes in: breached", conv(status="queued", queued_at=NOW - SLA), "breached"),
    ("not in the queue: no SLA", conv(status="assigned", queued_at=NOW - 2 * SLA), None),
]


@pytest.mark.parametrize(("state", "expected"), [row[1:] for row in SLA_ROWS],
                         ids=[row[0] for row in SLA_ROWS])
def test_queue_sla_state(state: ConvState, expected: str | None) -> None:
    standing = core.queue_sla(state, NOW, SLA)
    assert (standing.state if standing else None) == expected
    if standing is not None:
        assert standing.breach_at == state.queued_at + SLA


def test_sla_and_first_response_count_business_time_when_told() -> None:
    """Queued on Friday 16:58 in Berlin, the team back on Monday 09:00: at 09:02 the customer
    has waited 4 business minutes (not 64 hours), within a 5-minute SLA; at 09:04, 6 minutes:
    breached."""
    hours = BusinessHours.parse("mon-fri 09:00-17:00", "Europe/Berlin")
    business = replace(POLICY, hours=hours, business_time=True)
    friday = datetime(2026, 3, 6, 15, 58, tzinfo=UTC)  # 16:58 Berlin (UTC+1)
    monday = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)  # 09:00 Berlin
    waiting = conv(status="queued", queued_at=friday)
    assert core.sla_due(waiting, monday, POLICY)  # wall-clock: long breached
    assert not core.sla_due(waiting, monday + timedelta(minutes=2), business)
    assert core.sla_due(waiting, monday + timedelta(minutes=4), business)
    with pytest.raises(NotAllowed):
        core.sla_breached(waiting, monday + timedelta(minutes=2), business)
    breach = core.sla_breached(waiting, monday + timedelta(minutes=4), business)
    assert breach.touches[0].details == {"sla_seconds": 300.0, "business_ms": 360_000}
    held = conv(status="assigned", assigned_agent_id=ALEX.id, queued_at=friday)
    first = core.reply(held, ALEX, "Good morning!", monday + timedelta(minutes=2), None,
                       business)
    assert first.conv.first_human_response_ms == 240_000
    wall = core.reply(held, ALEX, "Good morning!", monday + timedelta(minutes=2), None, POLICY)
    assert wall.conv.first_human_response_ms == (64 * 60 + 4) * 60_000
