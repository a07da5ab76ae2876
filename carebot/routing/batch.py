"""One group-commit transaction of inbound messages: load state, call the core, write.

The batch loads what its messages need with a handful of set-based statements (redeliveries,
contacts, each contact's latest conversation — locked on PostgreSQL — and those
conversations' latest surveys), calls `core.decide_message` for each message in arrival order
against that state (so a customer's second message sees the first one's effect), and writes
every decision's rows with one statement per table. Facts most turns don't need (agents and
the queue, survey history, resolution codes) are loaded the first time a decision asks.
A redelivered message gets its first result again and changes nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from carebot.db import bulk, journey_marks
from carebot.db.batch_sql import (
    CONTACTS,
    CONVERSATIONS,
    CUSTOMERS,
    MESSAGES,
    OUTBOX,
    SURVEYS,
    TOUCHPOINTS,
    Statements,
    statements,
)
from carebot.domain.clock import Clock, ms_between
from carebot.domain.events import Effects, preview
from carebot.domain.journey import mark_of
from carebot.domain.language import Detected
from carebot.domain.messages import Button, InboundMessage, OutboundMessage, RouteResult
from carebot.domain.states import Kind, Status, SurveyStatus
from carebot.matching.faq import Candidate
from carebot.routing import core, survey_rules
from carebot.routing.agent_facts import facts_of
from carebot.routing.decision import (
    CONV_MUTABLE,
    SURVEY_COLUMNS,
    AgentFacts,
    ConvState,
    Decision,
    Facts,
    Knowledge,
    SurveyState,
    Turn,
)
from carebot.routing.policy import Policy, ResolutionCode

Outcome = tuple[RouteResult, Effects]
_SURVEY_MUTABLE = tuple(c for c in SURVEY_COLUMNS if c != "id")


class Busy(Exception):
    """The customer's conversation is held by another transaction (an agent acting on it):
    the message waits for the next batch instead of holding this one up."""


class DuplicateIdConflict(ValueError):
    """A message id was reused by a different user of the same channel."""

    def __init__(self, channel: str, message_id: str) -> None:
        super().__init__(
            f"message_id {message_id!r} was already used by another user on channel {channel!r}"
        )


@dataclass
class Pending:
    """A message waiting for its batch, with its FAQ matches once known."""

    msg: InboundMessage
    candidates: Sequence[Candidate] | None = None
    # When the message reached the pipeline (monotonic): the bot's first response runs from
    # here to the end of the transaction that writes the reply.
    arrived_ns: int = field(default_factory=time.perf_counter_ns)


class QueueLength:
    """How many conversations wait, counted at most once a second per process.

    A handoff tells the customer their place in the queue; counting the queue costs time in
    proportion to its length, and a backlog is exactly when every batch has handoffs. The
    count is refreshed when older than `max_age` and kept current with this process's own
    handoffs in between, so a place can be off by what other processes did in that second.
    """

    def __init__(self, max_age: timedelta = timedelta(seconds=1)) -> None:
        self.max_age = max_age
        self.value: int | None = None
        self.read_at: datetime | None = None

    def get(self, now: datetime, count: Callable[[], int]) -> int:
        """The current length: the cached one while fresh, else `count()`."""
        if self.value is None or self.read_at is None or now - self.read_at > self.max_age:
            self.value, self.read_at = count(), now
        return self.value

    def grew(self) -> None:
        """This process queued one more conversation."""
        if self.value is not None:
            self.value += 1


@dataclass(frozen=True)
class BatchContext:
    """What every batch shares: the policy, the knowledge, the clock, a matcher."""

    policy: Policy
    knowledge: Callable[[], Knowledge]
    clock: Clock
    # Matching in the writer's thread, for the rare turn that needs it and was not matched.
    match: Callable[[str, int], list[Candidate]]
    queue: QueueLength = field(default_factory=QueueLength)
    # The language of a customer's text (carebot.matching.language_detect); tens of
    # microseconds, so it runs here, per message.
    detect: Callable[[str], Detected | None] = lambda _text: None


@dataclass
class _Contact:
    row: dict[str, Any]
    new: bool = False
    renamed: bool = False
    # The customer's remembered language, and whether this batch changed it.
    language: str | None = None
    language_changed: bool = False


@dataclass
class _Conv:
    state: ConvState
    contact: _Contact
    new: bool = False
    # The row as loaded: only the columns that differ from it are written back.
    loaded: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Plan:
    index: int
    decision: Decision
    conv: _Conv
    msg: InboundMessage
    received: datetime
    inbound_id: int | None = None
    replies: list[OutboundMessage] = field(default_factory=list)
    arrived_ns: int | None = None  # set when this message got the bot's first reply


@dataclass
class _Stored:
    """An inbound message already stored: a redelivery gets its first result again."""

    conversation_id: int
    status: str
    user_id: str
    replies: list[OutboundMessage] = field(default_factory=list)


class Batch:
    """Decide and write one batch of inbound messages on one connection."""

    conn: Connection  # set by run()
    sql: Statements  # set by run()

    def __init__(
        self, ctx: BatchContext, batch: Sequence[Pending], *, wait_for_locks: bool = False
    ) -> None:
        self.ctx = ctx
        self.batch = batch
        # False: a conversation another transaction holds puts its customer's messages off
        # (Busy) rather than make the whole batch wait; True (a message written alone): wait.
        self.wait_for_locks = wait_for_locks
        self.busy: set[tuple[str, str]] = set()  # customers put off
        self.kb = ctx.knowledge()
        self.contacts: dict[tuple[str, str], _Contact] = {}
        self.latest: dict[int, _Conv] = {}  # by id(_Contact)
        self.surveys: dict[int, SurveyState] = {}  # latest survey by id(_Conv)
        self.agents: tuple[AgentFacts, ...] | None = None
        self.queued: int | None = None
        self.recently_surveyed: set[int] | None = None  # customer ids
        self.codes: dict[str, ResolutionCode] | None = None
        self.next_ids: dict[str, int] | None = None
        # Conversations (by id(_Conv)) whose customer was told card numbers are refused.
        self.card_noticed: dict[int, bool] = {}
        self.claimed: set[int] = set()  # agents whose rows this batch holds (PostgreSQL)
        self.assigned_here: dict[int, int] = {}  # conversations this batch gave each agent

    def run(self, conn: Connection) -> list[Outcome | BaseException]:
        """Decide and write the batch on `conn` (the caller commits); an outcome per message."""
        self.conn = conn
        self.sql = statements(conn.dialect.name)
        outcomes: list[Outcome | BaseException | None] = [None] * len(self.batch)
        first_of: dict[tuple[str, str], int] = {}
        stored = self._stored()
        self._load_state()
        plans: list[_Plan] = []
        for i, p in enumerate(self.batch):
            key = (p.msg.channel, p.msg.message_id)
            if (p.msg.channel, p.msg.user_id) in self.busy:
                outcomes[i] = Busy()
            elif key in stored:
                outcomes[i] = _earlier(stored[key], p.msg)
            elif key in first_of:
                continue  # answered below, once the first one's outcome is known
            else:
                first_of[key] = i
                plans.append(self._plan(i, p))
        self._write(plans)
        for plan in plans:
            outcomes[plan.index] = self._outcome(plan)
        for i, p in enumerate(self.batch):
            if outcomes[i] is None:
                outcomes[i] = _repeat(self.batch, outcomes, first_of, p.msg)
        return [o for o in outcomes if o is not None]

    # --- loading ---------------------------------------------------------------------------

    def _stored(self) -> dict[tuple[str, str], _Stored]:
        """Messages of the batch already stored (redeliveries), with what they produced."""
        by_channel: dict[str, set[str]] = {}
        for p in self.batch:
            by_channel.setdefault(p.msg.channel, set()).add(p.msg.message_id)
        found: dict[tuple[str, str], _Stored] = {}
        by_id: dict[int, _Stored] = {}
        for channel, ids in by_channel.items():
            rows = self.conn.execute(self.sql.stored, {"channel": channel, "ids": list(ids)})
            for r in rows:
                item = _Stored(r.conversation_id, r.status_after or r.status, r.user_id)
                found[(channel, r.external_id)] = by_id[r.id] = item
        if by_id:
            rows = self.conn.execute(self.sql.stored_replies, {"ids": list(by_id)})
            for r in rows:
                buttons = tuple(Button(b["title"], b["payload"]) for b in r.buttons or ())
                by_id[r.in_reply_to].replies.append(OutboundMessage(r.text, buttons))
        return found

    def _load_state(self) -> None:
        by_channel: dict[str, set[str]] = {}
        for p in self.batch:
            by_channel.setdefault(p.msg.channel, set()).add(p.msg.user_id)
        for channel, users in by_channel.items():
            rows = self.conn.execute(
                self.sql.contacts, {"channel": channel, "users": list(users)}
            )
            for r in rows.mappings():
                self.contacts[(channel, r["external_id"])] = _Contact(dict(r))
        by_id = {c.row["id"]: c for c in self.contacts.values()}
        if not by_id:
            return
        by_customer: dict[int, list[_Contact]] = {}
        for c in self.contacts.values():
            by_customer.setdefault(c.row["customer_id"], []).append(c)
        rows = self.conn.execute(self.sql.customer_languages, {"ids": sorted(by_customer)})
        for cust_id, language in rows:
            for c in by_customer[cust_id]:
                c.language = language
        convs: dict[int, _Conv] = {}
        for locked in self._lock_latest(by_id):
            row = dict(locked)
            contact = by_id[row["contact_id"]]
            conv = _Conv(ConvState.from_row(row), contact, loaded=row)
            self.latest[id(contact)] = convs[row["id"]] = conv
        # Only a conversation that was ever resolved can have a survey.
        surveyed = [i for i, c in convs.items()
                    if c.state.status == Status.RESOLVED or c.state.reopen_count]
        if surveyed:
            rows = self.conn.execute(self.sql.latest_surveys, {"ids": surveyed})
            for r in rows.mappings():
                self.surveys[id(convs[r["conversation_id"]])] = SurveyState.from_row(dict(r))

    def _lock_latest(self, by_id: dict[int, _Contact]) -> list[Any]:
        """Each contact's latest conversation, locked on PostgreSQL in id order (so two
        processes never interleave one customer's turns nor deadlock). A conversation an agent
        action holds is skipped and its customer put off, unless `wait_for_locks`."""
        sql = self.sql
        if sql.newest_ids is None or sql.lock_convs is None or sql.lock_convs_waiting is None:
            return list(self.conn.execute(
                sql.latest_convs, {"contact_ids": sorted(by_id)}).mappings())
        newest = {r.id: r.contact_id for r in self.conn.execute(
            sql.newest_ids, {"contact_ids": sorted(by_id)})}
        lock = sql.lock_convs_waiting if self.wait_for_locks else sql.lock_convs
        rows = list(self.conn.execute(lock, {"conv_ids": sorted(newest)}).mappings())
        for conv_id in set(newest) - {r["id"] for r in rows}:
            contact = by_id[newest[conv_id]]
            self.busy.add((contact.row["channel"], contact.row["external_id"]))
            del self.contacts[(contact.row["channel"], contact.row["external_id"])]
        return rows

    def _load(self, need: str, conv: _Conv | None) -> None:
        """Load a fact a decision asked for (see `Facts`)."""
        if need == "queue" and self.agents is None:
            self.agents = facts_of(list(self.conn.execute(self.sql.online_agents)))
            self.queued = self.ctx.queue.get(
                self.ctx.clock(), lambda: int(self.conn.execute(self.sql.queued).scalar_one())
            )
        elif need == "surveys" and self.recently_surveyed is None:
            ids = [c.row["customer_id"] for c in self.contacts.values() if not c.new]
            since = self.ctx.clock() - self.ctx.policy.surveys.cooldown
            rows = self.conn.execute(self.sql.recent_surveys, {"ids": ids, "since": since})
            self.recently_surveyed = {r[0] for r in rows}

    def _facts(self, conv: _Conv | None, needs: set[str], contact: _Contact) -> Facts:
        for need in needs:
            self._load(need, conv)
        state = conv.state if conv is not None else None
        if self.codes is None and state is not None and state.resolution_code:
            self.codes = {r.code: ResolutionCode(r.code, r.label, r.survey, r.may_reopen)
                          for r in self.conn.execute(self.sql.codes)}
        position = None
        if conv is not None and conv.state.status == Status.QUEUED and not conv.new:
            if "position" in needs:
                position = 1 + int(self.conn.execute(self.sql.queue_ahead, {
                    "queued_at": conv.state.queued_at, "id": conv.state.id}).scalar_one())
        elif self.queued is not None:
            position = self.queued + 1
        customer = conv.contact.row["customer_id"] if conv is not None else None
        noticed = None
        if "card_notice" in needs and conv is not None:
            noticed = self._card_noticed(conv)
        return Facts(
            survey=self.surveys.get(id(conv)) if conv is not None else None,
            surveyed_recently=None if self.recently_surveyed is None else (
                customer in self.recently_surveyed),
            agents=self.agents,
            queue_position=position,
            codes=self.codes or {},
            card_notice_given=noticed,
            customer_language=contact.language,
        )

    def _card_noticed(self, conv: _Conv) -> bool:
        """Whether the customer was told in this conversation that cards are refused."""
        key = id(conv)
        if key not in self.card_noticed:
            self.card_noticed[key] = not conv.new and conv.state.id is not None and (
                self.conn.execute(
                    select(TOUCHPOINTS.c.id).where(
                        TOUCHPOINTS.c.conversation_id == conv.state.id,
                        TOUCHPOINTS.c.kind == Kind.REDACTION_NOTICE,
                    ).limit(1)
                ).first() is not None
            )
        return self.card_noticed[key]

    def _claim(self, agent: AgentFacts) -> bool:
        """PostgreSQL: hold the agent's row (FOR NO KEY UPDATE SKIP LOCKED: never waiting on
        a console action, never conflicting with key-share locks of inserts) and count their
        load again, since another process may have assigned them since it was read. False,
        and the agent counts as full for this batch, when they are taken."""
        if self.conn.dialect.name == "sqlite" or agent.id in self.claimed:
            return True  # one writer on SQLite; a row this batch holds stays its own
        row = self.conn.execute(self.sql.lock_agent, {"id": agent.id}).one_or_none()
        if row is not None and int(row.load) + self.assigned_here.get(agent.id, 0) < (
            agent.capacity
        ):
            self.claimed.add(agent.id)
            return True
        assert self.agents is not None
        self.agents = tuple(dataclasses.replace(a, load=a.capacity) if a.id == agent.id else a
                            for a in self.agents)
        return False

    # --- deciding --------------------------------------------------------------------------

    def _plan(self, i: int, p: Pending) -> _Plan:
        msg = p.msg
        contact = self.contacts.get((msg.channel, msg.user_id))
        if contact is None:
            contact = _Contact({"id": None, "customer_id": None, "channel": msg.channel,
                                "external_id": msg.user_id, "display_name": msg.display_name,
                                "created_at": self.ctx.clock()}, new=True)
            self.contacts[(msg.channel, msg.user_id)] = contact
        elif msg.display_name and contact.row["display_name"] != msg.display_name:
            contact.row["display_name"] = msg.display_name
            contact.renamed = not contact.new
        conv = self.latest.get(id(contact))
        received = self.ctx.clock()
        turn = Turn(msg.channel, msg.text, msg.payload, received, p.candidates, msg.redacted,
                    self._detect(msg), msg.language)
        needs: set[str] = set()
        while True:
            facts = self._facts(conv, needs, contact)
            decision = core.decide_message(
                conv.state if conv else None, turn, facts, self.ctx.policy, self.kb
            )
            if decision.assigned and not self._claim(decision.assigned[0]):
                continue  # that agent is taken meanwhile: decide again without them
            if not decision.needs or decision.needs <= needs:
                break
            if "match" in decision.needs and turn.candidates is None:
                found = self.ctx.match(msg.text, self.ctx.policy.routing.match_limit)
                turn = dataclasses.replace(turn, candidates=found)
            needs |= decision.needs
        if decision.needs - {"match"}:
            raise RuntimeError(f"the core still needs {decision.needs}")  # pragma: no cover
        plan = self._apply(i, decision, contact, conv, msg, received)
        if plan.arrived_ns == 0:
            plan.arrived_ns = p.arrived_ns
        return plan

    def _detect(self, msg: InboundMessage) -> Detected | None:
        """The language of a typed text: a small-talk phrase of one language says it for
        sure ("hallo"); else the detector guesses (the core decides whether to believe it)."""
        text = msg.text.strip()
        if not text or msg.payload:
            return None
        known = self.kb.small_talk.language_of(text)
        return Detected(known, 1.0, exact=True) if known else self.ctx.detect(text)

    def _apply(
        self, i: int, d: Decision, contact: _Contact, conv: _Conv | None, msg: InboundMessage,
        received: datetime,
    ) -> _Plan:
        """Make the decision the batch's state, for the messages after it."""
        if d.customer_language is not None and d.customer_language != contact.language:
            contact.language = d.customer_language
            contact.language_changed = not contact.new
        before = None if d.new_conversation or conv is None else conv.state
        if before is None:
            conv = _Conv(d.conv, contact, new=True)
            self.latest[id(contact)] = conv
        assert conv is not None
        conv.state = d.conv
        if any(t.kind == Kind.REDACTION_NOTICE for t in d.touches):
            self.card_noticed[id(conv)] = True
        first_reply = d.conv.first_bot_response_ms == 0 and (
            before is None or before.first_bot_response_ms is None
        )
        if first_reply:
            # Only says that the bot replied; the time is measured in microseconds after
            # the writes (first_bot_response_us).
            d.conv.first_bot_response_ms = ms_between(received, self.ctx.clock())
        if d.surveys:
            self.surveys[id(conv)] = d.surveys[-1]
            if self.recently_surveyed is not None and any(
                s.status == SurveyStatus.SENT for s in d.surveys
            ):
                self.recently_surveyed.add(contact.row["customer_id"])
        for a in d.assigned:
            self.assigned_here[a.id] = self.assigned_here.get(a.id, 0) + 1
        if d.assigned and self.agents is not None:
            taken = {a.id for a in d.assigned}
            self.agents = tuple(
                dataclasses.replace(a, load=a.load + 1, idle_since=received)
                if a.id in taken else a for a in self.agents
            )
        if self.queued is not None and d.conv.status == Status.QUEUED and (
            before is None or before.status != Status.QUEUED
        ):
            self.queued += 1
            self.ctx.queue.grew()
        return _Plan(i, d, conv, msg, received, arrived_ns=0 if first_reply else None)

    # --- writing ---------------------------------------------------------------------------

    def _next_id(self, table: str) -> Callable[[int], int]:
        def take(n: int) -> int:
            if self.next_ids is None:
                tables = self.sql.next_id_tables
                row = self.conn.execute(self.sql.next_ids).one()
                self.next_ids = {t.name: int(v) + 1 for t, v in zip(tables, row, strict=True)}
            first = self.next_ids[table]
            self.next_ids[table] = first + n
            return first
        return take

    def _insert(self, table: Any, rows: list[dict[str, Any]]) -> list[int]:
        return bulk.insert_returning_ids(self.conn, table, rows, self._next_id(table.name))

    def _write(self, plans: list[_Plan]) -> None:
        if not plans:
            return
        new_contacts = [c for c in self.contacts.values() if c.new]
        ids = self._insert(CUSTOMERS, [
            {"display_name": c.row["display_name"], "created_at": c.row["created_at"],
             "language": c.language}
            for c in new_contacts
        ])
        for contact, cid in zip(new_contacts, ids, strict=True):
            contact.row["customer_id"] = cid
        ids = self._insert(CONTACTS, [
            {k: v for k, v in c.row.items() if k != "id"} for c in new_contacts
        ])
        for contact, cid in zip(new_contacts, ids, strict=True):
            contact.row["id"] = cid
        convs: dict[int, _Conv] = {}
        for plan in plans:
            convs.setdefault(id(plan.conv), plan.conv)
        new_convs = [c for c in convs.values() if c.new]
        for conv in new_convs:
            conv.state.customer_id = conv.contact.row["customer_id"]
            conv.state.contact_id = conv.contact.row["id"]
        ids = self._insert(CONVERSATIONS, [
            {k: v for k, v in c.state.to_row().items() if k != "id"} for c in new_convs
        ])
        for conv, cid in zip(new_convs, ids, strict=True):
            conv.state.id = cid
        journey_marks.start(self.conn, ids)
        self._write_surveys(plans)
        ids = self._insert(MESSAGES, [
            {"conversation_id": p.conv.state.id, "channel": p.msg.channel,
             "external_id": p.msg.message_id, "direction": "in", "sender": "customer",
             "text": p.msg.text, "payload": p.msg.payload, "created_at": p.received,
             "status_after": p.decision.conv.status}
            for p in plans
        ])
        for plan, mid in zip(plans, ids, strict=True):
            plan.inbound_id = mid
        write_replies_and_touches(self.conn, [
            (p.decision, p.conv.state, p.conv.contact.row["external_id"], p.inbound_id,
             p.msg.reply_inline, p.replies) for p in plans
        ], self._insert, self.ctx.policy)
        # One UPDATE per set of changed columns: a message changes a handful of the
        # conversation's columns, and converting and binding the others costs time.
        changed: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for c in convs.values():
            if c.new:
                continue
            row = c.state.to_row()
            columns = tuple(k for k in CONV_MUTABLE if row[k] != c.loaded.get(k))
            if columns:
                changed.setdefault(columns, []).append(row)
        for columns, rows in changed.items():
            bulk.update_by_id(self.conn, CONVERSATIONS, columns, rows)
        relearned = {c.row["customer_id"]: c.language for c in self.contacts.values()
                     if c.language_changed}
        if relearned:
            self.conn.execute(self.sql.set_customer_language, [
                {"b_id": cid, "language": lang} for cid, lang in sorted(relearned.items())])
        renamed = [c for c in self.contacts.values() if c.renamed]
        if renamed:
            self.conn.execute(
                self.sql.rename_contact,
                [{"b_id": c.row["id"], "name": c.row["display_name"]} for c in renamed],
            )
        self._write_bot_response_times(plans)

    def _write_bot_response_times(self, plans: list[_Plan]) -> None:
        """The bot's first response, from the message's arrival to now, the batch's last
        statement before its commit (only the commit itself is left out), in microseconds:
        matching, deciding and writing all count, as the customer waits through them."""
        done = time.perf_counter_ns()
        rows = [{"id": p.conv.state.id, "first_bot_response_us": (done - p.arrived_ns) // 1000}
                for p in plans if p.arrived_ns]
        bulk.update_by_id(self.conn, CONVERSATIONS, ("first_bot_response_us",), rows)

    def _write_surveys(self, plans: list[_Plan]) -> None:
        for plan in plans:
            for s in plan.decision.surveys:
                s.conversation_id = plan.conv.state.id
                s.customer_id = plan.conv.state.customer_id
                s.channel = plan.conv.state.channel
        write_surveys(self.conn, [s for p in plans for s in p.decision.surveys], self._insert)

    def _outcome(self, plan: _Plan) -> Outcome:
        d = plan.decision
        effects = Effects()
        if not plan.msg.reply_inline and plan.replies:
            effects.outbox_pending = True
        if d.events:
            # What consoles show in their lists, known here without another query.
            name = plan.conv.contact.row["display_name"] or ""
            last = _last_message(plan)
            for event in d.events:
                effects.emit(dataclasses.replace(event, conversation_id=plan.conv.state.id,
                                                 customer_name=name, preview=last))
        result = RouteResult(plan.conv.state.id or 0, d.conv.status, tuple(plan.replies))
        return result, effects


def _last_message(plan: _Plan) -> dict[str, Any]:
    """A preview of what a person said last after this step (as `db.previews` reads it): in
    a customer's turn that is the customer's message; the bot's answers never are."""
    return preview("customer", plan.msg.text, plan.received, plan.msg.payload)


def write_surveys(
    conn: Connection, surveys: list[SurveyState], insert: Callable[[Any, list[dict[str, Any]]],
                                                                    list[int]],
) -> None:
    """Insert new surveys (a copy of an unwritten survey is the same row) and update the rest
    to their last state; every copy learns its id."""
    new: dict[int, list[SurveyState]] = {}
    changed: dict[int, SurveyState] = {}
    for s in surveys:
        root = s.origin or s
        if root.id is None:
            new.setdefault(id(root), []).append(s)
        else:
            changed[root.id] = s
    rows = []
    for copies in new.values():
        last = copies[-1]
        rows.append({k: v for k, v in last.to_row().items() if k != "id"})
    ids = insert(SURVEYS, rows)
    for copies, sid in zip(new.values(), ids, strict=True):
        for s in copies:
            s.id = sid
        root = copies[0].origin or copies[0]
        root.id = sid
    bulk.update_by_id(conn, SURVEYS, _SURVEY_MUTABLE, [s.to_row() for s in changed.values()])


def write_replies_and_touches(
    conn: Connection,
    items: list[tuple[Decision, ConvState, str, int | None, bool, list[OutboundMessage]]],
    insert: Callable[[Any, list[dict[str, Any]]], list[int]],
    policy: Policy,
) -> list[int]:
    """Store each decision's replies (messages + outbox rows; notes only as messages) and
    touchpoints. `items`: (decision, conversation written, recipient, inbound message id,
    replies delivered inline, the list that receives the replies sent). Returns the ids of
    the stored replies and notes, in order."""
    out_rows: list[dict[str, Any]] = []
    outbox_rows: list[dict[str, Any] | None] = []
    for d, conv, recipient, inbound_id, inline, sent in items:
        for reply in d.replies:
            message = reply.message
            if message is None:
                assert reply.survey is not None
                message = survey_rules.question(reply.survey, policy.surveys, reply.prompt)
            # Said in the conversation's language (an agent's own words are kept as written).
            message = policy.texts.localize(message, conv.language)
            buttons = [b.to_dict() for b in message.buttons] or None
            out_rows.append({
                "conversation_id": conv.id, "channel": conv.channel,
                "direction": "note" if reply.private else "out", "sender": str(reply.sender),
                "agent_id": reply.agent_id, "text": message.text, "buttons": buttons,
                "in_reply_to": inbound_id, "created_at": reply.at,
            })
            if reply.private:
                outbox_rows.append(None)
                continue
            sent.append(message)
            outbox_rows.append({
                "conversation_id": conv.id, "channel": conv.channel, "recipient": recipient,
                "text": message.text, "buttons": buttons,
                "status": "sent" if inline else "pending", "attempts": 1 if inline else 0,
                "next_attempt_at": reply.at, "created_at": reply.at,
                "sent_at": reply.at if inline else None,
            })
    out_ids = insert(MESSAGES, out_rows)
    boxed = []
    for row, mid in zip(outbox_rows, out_ids, strict=True):
        if row is not None:
            boxed.append({**row, "message_id": mid})
    bulk.insert(conn, OUTBOX, boxed)
    tp_rows: list[dict[str, Any]] = []
    marked: list[dict[str, Any]] = []
    at = 0
    for d, conv, _, inbound_id, _, _ in items:
        first_reply = out_ids[at] if d.replies else None
        at += len(d.replies)
        for t in d.touches:
            details = t.details
            if t.survey is not None:
                details = {**(details or {}), "survey_id": t.survey.id, "kind": t.survey.kind}
            message_id = None
            if t.with_message:
                message_id = inbound_id if inbound_id is not None else first_reply
            tp_rows.append({
                "conversation_id": conv.id, "customer_id": conv.customer_id, "kind": str(t.kind),
                "actor": str(t.actor), "channel": conv.channel, "agent_id": t.agent_id,
                "message_id": message_id, "faq_id": t.faq_id, "score": t.score,
                "effort": t.effort, "wait_ms": t.wait_ms, "outcome": str(t.outcome),
                "details": details, "created_at": t.at,
            })
            mark = mark_of(t.kind, details, t.score)
            if mark is not None:
                marked.append({"cid": conv.id, "mark": mark, "at": t.at,
                               "effort": t.effort_total})
    bulk.insert(conn, TOUCHPOINTS, tp_rows)
    journey_marks.advance(conn, marked)
    return out_ids


def _earlier(stored: _Stored, msg: InboundMessage) -> Outcome | BaseException:
    if stored.user_id != msg.user_id:
        # Same message id from another user: a broken or hostile bridge, never a redelivery.
        return DuplicateIdConflict(msg.channel, msg.message_id)
    result = RouteResult(stored.conversation_id, stored.status, tuple(stored.replies),
                         duplicate=True)
    return result, Effects()


def _repeat(
    batch: Sequence[Pending], outcomes: list[Outcome | BaseException | None],
    first_of: dict[tuple[str, str], int], msg: InboundMessage,
) -> Outcome | BaseException:
    """A message id seen twice in one batch: the second gets the first one's result."""
    first_i = first_of[(msg.channel, msg.message_id)]
    done = outcomes[first_i]
    if isinstance(done, BaseException):
        return done
    if batch[first_i].msg.user_id != msg.user_id:
        return DuplicateIdConflict(msg.channel, msg.message_id)
    assert done is not None
    return dataclasses.replace(done[0], duplicate=True), Effects()
