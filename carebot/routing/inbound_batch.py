"""Group commit for inbound messages: one writer, many messages per transaction.

Every inbound message still gets the guarantees of `Router.handle` — it is answered only after
the transaction holding the message, its touchpoints and its replies has committed; a redelivery
is recognised and changes nothing — but concurrent messages share one transaction and a handful
of set-based Core statements instead of a transaction and a dozen ORM round trips each.

The common bot turns (a new customer or a conversation with the bot: FAQ answer, suggestions,
a picked suggestion, "Did this help?" Yes/No, a handoff while no agent is online, greeting, help,
unsupported) are decided here in memory against state loaded for the whole batch. Anything else
(a conversation with an agent or already resolved, a handoff that may assign an agent, a survey
answer) is routed by the full ORM `Router` logic in the same transaction, after the fast writes,
so a customer's messages are still applied in arrival order. If the batch transaction fails, its
messages are routed again one by one, so one bad message cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import operator
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    ColumnElement,
    Select,
    Table,
    bindparam,
    func,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import Executable

from carebot.db.checkpoint import WalCheckpointer
from carebot.db.models import Base
from carebot.db.types import UTCDateTime
from carebot.db.writer_thread import SqliteWriterThread
from carebot.domain.clock import ms_between
from carebot.domain.events import Effects, Event
from carebot.domain.messages import Button, InboundMessage, OutboundMessage, RouteResult
from carebot.matching.faq import Candidate, FaqDoc
from carebot.routing import intents, replies, surveys
from carebot.routing.router import DuplicateIdConflict, Router
from carebot.routing.survey_answers import parse_score
from carebot.routing.touchpoints import EFFORT

log = logging.getLogger(__name__)

MAX_BATCH = 128

_T = Base.metadata.tables
CUSTOMERS: Table = _T["customers"]
CONTACTS: Table = _T["contacts"]
CONVERSATIONS: Table = _T["conversations"]
MESSAGES: Table = _T["messages"]
TOUCHPOINTS: Table = _T["touchpoints"]
OUTBOX: Table = _T["outbox"]
SURVEYS: Table = _T["surveys"]
AGENTS: Table = _T["agents"]

# Conversation columns a bot turn can change (written back with one executemany UPDATE).
_CONV_MUTABLE = (
    "status", "updated_at", "reopen_count", "assigned_agent_id", "last_customer_message_at",
    "last_bot_answer_at", "queued_at",
    "resolved_at", "resolved_by", "resolution_code", "pending_faq_id", "failed_bot_turns",
    "customer_messages", "bot_answers", "handoffs", "effort_score", "first_bot_response_ms",
)
_HUMAN_COMMANDS = {"human", "agent", "operator"}

Outcome = tuple[RouteResult, Effects]
# A batch's outcome per message (None: left to the router) and the indices left to the router.
_Written = tuple[list["Outcome | BaseException | None"], list[int]]


@dataclass
class _Pending:
    msg: InboundMessage
    candidates: list[Candidate] | None
    future: asyncio.Future[Outcome]


@dataclass
class _Contact:
    row: dict[str, Any]
    new: bool = False
    renamed: bool = False


@dataclass
class _Conv:
    row: dict[str, Any]
    contact: _Contact
    new: bool = False
    dirty: bool = False


@dataclass
class _Survey:
    row: dict[str, Any]
    conv: _Conv


@dataclass
class _Reply:
    message: OutboundMessage | None  # None: the survey question, built once its id is known
    at: datetime
    survey: _Survey | None = None


@dataclass
class _Plan:
    """Everything one fast-path message writes, with ids filled in as rows are inserted."""

    pending: _Pending
    conv: _Conv
    received: datetime
    inbound: dict[str, Any]
    touchpoints: list[tuple[dict[str, Any], bool]] = field(default_factory=list)
    replies: list[_Reply] = field(default_factory=list)
    events: list[tuple[str, bool, dict[str, Any]]] = field(default_factory=list)
    status_after: str = "bot"
    message_event: bool = False


class _NeedsRouter(Exception):
    """The message needs the full router logic (raised before any state is changed)."""


class InboundBatcher:
    """Routes inbound messages through one writer task that commits them in batches."""

    def __init__(
        self,
        router: Router,
        engine: AsyncEngine,
        publish: Callable[[list[Event]], Awaitable[None]] | None = None,
        max_batch: int = MAX_BATCH,
        sqlite_synchronous: str = "full",
    ) -> None:
        self.router = router
        self.engine = engine
        # Live events of a whole batch go out in one call (on PostgreSQL one NOTIFY round
        # trip per batch instead of per message); without it each caller publishes its own.
        self.publish = publish
        self._publishing: set[asyncio.Task[None]] = set()
        self.max_batch = max_batch
        self._sqlite_synchronous = sqlite_synchronous
        self._writer: SqliteWriterThread[_Pending, _Written] | None = None  # SQLite
        self._conn: AsyncConnection | None = None  # the writer's connection (PostgreSQL)
        self._settling: set[asyncio.Task[None]] = set()
        self._checkpointer: WalCheckpointer | None = None
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start the writer task."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            # SQLite through aiosqlite costs a thread round trip per statement; batches run
            # their statements back to back on a plain sqlite3 connection in a thread of their
            # own. Checkpoints run beside the writer rather than inside its commits.
            self._writer = SqliteWriterThread(
                url, self._sqlite_synchronous, self._write_in_thread, self._written,
                _must_wait, self.max_batch,
            )
            self._writer.start()
            self._checkpointer = WalCheckpointer(url, self._sqlite_synchronous)
            self._checkpointer.start()
        self._task = asyncio.create_task(self._run(), name="inbound-writer")

    async def stop(self) -> None:
        """Finish every message already submitted, then stop the writer."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            await self._writer.stop()
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)
        if self._conn is not None:
            await self._conn.close()
        if self._checkpointer is not None:
            await self._checkpointer.stop()

    async def submit(self, msg: InboundMessage) -> Outcome:
        """Route one message; returns after its transaction committed (or raises)."""
        if self._task is None or self._stopping:
            return await self.router.handle(msg)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(msg, None, future))
        self._wake.set()
        return await future

    async def _match(self, batch: Sequence[_Pending]) -> None:
        """Match the batch's questions (the index caches repeated ones; the rest are matched
        in one worker-thread hop)."""
        todo = [p for p in batch if _may_need_match(p.msg)]
        if not todo:
            return
        found = await self.router.index.match_many(
            [p.msg.text for p in todo], self.router.match_limit
        )
        for p, candidates in zip(todo, found, strict=True):
            p.candidates = candidates

    async def _run(self) -> None:
        # Two stages: a batch is matched (worker threads, mostly outside the GIL) while the
        # previous one is written; batches are still written one at a time, in order.
        writing: asyncio.Task[None] | None = None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    # Everything that arrived while the previous batch was busy: group commit.
                    batch = self._queue[: self.max_batch]
                    self._queue = self._queue[self.max_batch:]
                    try:
                        await self._match(batch)
                    except Exception:
                        # Without candidates the router matches each message itself.
                        log.exception("matching a batch failed")
                    if self._writer is not None:
                        self._writer.put(batch)
                        continue
                    if writing is not None:
                        await writing
                    writing = asyncio.create_task(self.process(batch), name="inbound-batch")
                if self._stopping:
                    return
        finally:
            if writing is not None:
                await writing

    async def process(self, batch: Sequence[_Pending]) -> None:
        """Route a batch in one transaction (PostgreSQL); on failure one message at a time."""
        try:
            outcomes, slow = await self._write_batch(_Batch(self.router, batch))
        except Exception:
            await self._one_by_one(batch)
            return
        self._answer(batch, outcomes)
        # The rest need the full router logic: one at a time, in arrival order.
        for i in slow:
            await _settle_one(self.router, batch[i])

    def _write_in_thread(self, conn: Connection, batch: list[_Pending]) -> _Written:
        """SQLite: the batch's transaction, in the writer thread."""
        return _Batch(self.router, batch).run(conn)

    def _written(
        self, batch: list[_Pending], result: _Written | BaseException,
        resume: threading.Event | None,
    ) -> None:
        """SQLite: a batch the writer thread finished, back on the event loop."""
        if not isinstance(result, BaseException):
            self._answer(batch, result[0])
        if resume is None:
            return
        # The writer waits until the messages needing the router are routed, in order.
        task = asyncio.create_task(self._settle_rest(batch, result, resume))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle_rest(
        self, batch: list[_Pending], result: _Written | BaseException, resume: threading.Event
    ) -> None:
        try:
            if isinstance(result, BaseException):
                await self._one_by_one(batch, result)
            else:
                for i in result[1]:
                    await _settle_one(self.router, batch[i])
        finally:
            resume.set()

    async def _one_by_one(
        self, batch: Sequence[_Pending], error: BaseException | None = None
    ) -> None:
        log.warning("inbound batch of %d failed; routing its messages one by one",
                    len(batch), exc_info=error or True)
        for p in batch:
            await _settle_one(self.router, p)

    def _answer(
        self, batch: Sequence[_Pending], outcomes: list[Outcome | BaseException | None]
    ) -> None:
        """Committed: answer the messages the batch routed, and publish their live events."""
        if self.publish is not None:
            events: list[Event] = []
            for outcome in outcomes:
                if isinstance(outcome, tuple) and outcome[1].events:
                    events += outcome[1].events
                    outcome[1].events = []
            if events:
                task = asyncio.create_task(self._publish(events))
                self._publishing.add(task)
                task.add_done_callback(self._publishing.discard)
        for p, outcome in zip(batch, outcomes, strict=True):
            if outcome is None or p.future.done():
                continue
            if isinstance(outcome, BaseException):
                p.future.set_exception(outcome)
            else:
                p.future.set_result(outcome)

    async def _publish(self, events: list[Event]) -> None:
        assert self.publish is not None
        try:
            await self.publish(events)
        except Exception:  # like publish_effects: the data is committed, events are best effort
            log.exception("could not publish %d live events", len(events))

    async def _write_batch(self, work: _Batch) -> _Written:
        # One connection kept for the writer: no pool checkout and pre-ping per batch.
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = await self.engine.connect()
        try:
            async with self._conn.begin():
                return await self._conn.run_sync(work.run)
        except Exception:
            # Start the next batch on a fresh connection in case this one is broken.
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close()
            raise


def _must_wait(result: _Written | BaseException) -> bool:
    """Whether the next batch must wait for the router to route some of this one's messages
    (a failed batch is routed one message at a time)."""
    return isinstance(result, BaseException) or bool(result[1])


async def _settle_one(router: Router, p: _Pending) -> None:
    try:
        outcome = await router.handle(p.msg, p.candidates)
    except Exception as exc:  # reported to this message's caller only
        if not p.future.done():
            p.future.set_exception(exc)
        return
    if not p.future.done():
        p.future.set_result(outcome)


def _may_need_match(msg: InboundMessage) -> bool:
    text = msg.text.strip()
    if not text:
        return False
    payload = msg.payload or ""
    if intents.command(text) is not None or intents.wants_human(text):
        return False
    return not payload.startswith(
        (replies.HELPFUL_YES_PREFIX, replies.HELPFUL_NO_PREFIX, replies.PICK_PREFIX)
    ) and payload not in {replies.START, replies.HELP, replies.HANDOFF}


def _in(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """`column IN :name` (a list, expanded); PostgreSQL uses `_each` instead."""
    return column.in_(bindparam(name, expanding=True))


def _each(
    param: str, key: ColumnElement[Any], query: Select[Any], *, one: bool = False
) -> tuple[Any, Any]:
    """PostgreSQL: `query` run once per value of the array parameter `param` (matched on
    `key`), as (its LATERAL subquery, the FROM clause joining it to the values).

    A young database has no statistics; from them PostgreSQL guessed that `channel = $1`
    selects a handful of rows and planned `key = ANY($2)` as a scan of the whole channel
    (42 ms a batch after 14,000 messages, growing, and kept as the generic plan). LIMIT or
    OFFSET stop the subquery being merged back into a join, so each value is one index
    lookup whatever the statistics say.
    """
    values = func.unnest(bindparam(param, type_=ARRAY(key.type))).table_valued("v")
    values = values.render_derived(name=f"{param}_v")
    fenced = query.where(key == values.c.v)
    fenced = fenced.limit(literal_column("1")) if one else fenced.offset(literal_column("0"))
    each = fenced.lateral(f"{param}_each")
    return each, values.join(each, true())


@dataclass(frozen=True)
class _Statements:
    """The batch's statements, built once per dialect: building a select and computing its
    cache key cost more per batch than running it (SQLAlchemy memoises both per object)."""

    stored: Executable
    stored_replies: Executable
    contacts: Executable
    latest_convs: Executable
    queue_facts: Executable
    open_surveys: Executable
    recent_surveys: Executable
    pending_surveys: Executable
    next_ids: Executable
    next_id_tables: tuple[Table, ...]
    update_conv: Executable
    rename_contact: Executable


@functools.cache
def _statements(dialect: str) -> _Statements:
    next_id_tables = (CUSTOMERS, CONTACTS, CONVERSATIONS, SURVEYS, MESSAGES)
    latest = (
        select(func.max(CONVERSATIONS.c.id))
        .where(_in(CONVERSATIONS.c.contact_id, "contact_ids"))
        .group_by(CONVERSATIONS.c.contact_id)
    )
    online = (
        select(AGENTS.c.id)
        .where(AGENTS.c.status == "online", AGENTS.c.disabled.is_(False))
        .limit(1)
        .scalar_subquery()
    )
    queued = (
        select(func.count()).select_from(CONVERSATIONS)
        .where(CONVERSATIONS.c.status == "queued")
        .scalar_subquery()
    )
    base = _Statements(
        stored=(
            select(MESSAGES.c.id, MESSAGES.c.external_id, MESSAGES.c.conversation_id,
                   MESSAGES.c.status_after, CONVERSATIONS.c.status,
                   CONTACTS.c.external_id.label("user_id"))
            .join(CONVERSATIONS, CONVERSATIONS.c.id == MESSAGES.c.conversation_id)
            .join(CONTACTS, CONTACTS.c.id == CONVERSATIONS.c.contact_id)
            .where(
                MESSAGES.c.channel == bindparam("channel"),
                _in(MESSAGES.c.external_id, "ids"),
                MESSAGES.c.direction == "in",
                CONTACTS.c.channel == bindparam("channel"),
            )
        ),
        stored_replies=(
            select(MESSAGES.c.in_reply_to, MESSAGES.c.text, MESSAGES.c.buttons)
            .where(_in(MESSAGES.c.in_reply_to, "ids"))
            .order_by(MESSAGES.c.id)
        ),
        contacts=select(CONTACTS).where(
            CONTACTS.c.channel == bindparam("channel"),
            _in(CONTACTS.c.external_id, "users"),
        ),
        # Locked (PostgreSQL) in id order so two processes never interleave one customer's
        # turns.
        latest_convs=(
            select(CONVERSATIONS)
            .where(CONVERSATIONS.c.id.in_(latest))
            .order_by(CONVERSATIONS.c.id)
            .with_for_update()
        ),
        queue_facts=select(online, queued),
        # The status is filtered in Python: with it in the WHERE clause SQLite picks the status
        # index and reads every sent survey ever, a cost that grows with the database.
        open_surveys=select(SURVEYS.c.conversation_id, SURVEYS.c.status).where(
            _in(SURVEYS.c.conversation_id, "ids"),
        ),
        recent_surveys=select(SURVEYS.c.customer_id).where(
            _in(SURVEYS.c.customer_id, "ids"),
            SURVEYS.c.sent_at.is_not(None),
            SURVEYS.c.sent_at > bindparam("since", type_=SURVEYS.c.sent_at.type),
        ),
        pending_surveys=(
            select(SURVEYS.c.id, SURVEYS.c.conversation_id, SURVEYS.c.awaiting,
                   SURVEYS.c.expires_at, SURVEYS.c.kind, SURVEYS.c.scale)
            .where(_in(SURVEYS.c.conversation_id, "ids"),
                   SURVEYS.c.awaiting.is_not(None))
            .order_by(SURVEYS.c.id)
        ),
        next_ids=select(*(
            select(func.coalesce(func.max(t.c.id), 0)).scalar_subquery()
            for t in next_id_tables
        )),
        next_id_tables=next_id_tables,
        update_conv=(
            update(CONVERSATIONS)
            .where(CONVERSATIONS.c.id == bindparam("b_id"))
            .values({k: bindparam(k) for k in _CONV_MUTABLE})
        ),
        rename_contact=(
            update(CONTACTS).where(CONTACTS.c.id == bindparam("b_id"))
            .values(display_name=bindparam("name"))
        ),
    )
    return _pg_lookups(base) if dialect == "postgresql" else base


def _pg_lookups(base: _Statements) -> _Statements:
    """`base` with the batch's lookups by a list of keys as one index lookup per key (see
    `_each`)."""
    msg, each_msg = _each("ids", MESSAGES.c.external_id, select(
        MESSAGES.c.id, MESSAGES.c.external_id, MESSAGES.c.conversation_id,
        MESSAGES.c.status_after,
    ).where(MESSAGES.c.channel == bindparam("channel"), MESSAGES.c.direction == "in"), one=True)
    stored = (
        select(msg.c.id, msg.c.external_id, msg.c.conversation_id, msg.c.status_after,
               CONVERSATIONS.c.status, CONTACTS.c.external_id.label("user_id"))
        .select_from(each_msg)
        .join(CONVERSATIONS, CONVERSATIONS.c.id == msg.c.conversation_id)
        .join(CONTACTS, CONTACTS.c.id == CONVERSATIONS.c.contact_id)
    )
    reply, each_reply = _each("ids", MESSAGES.c.in_reply_to, select(
        MESSAGES.c.id, MESSAGES.c.in_reply_to, MESSAGES.c.text, MESSAGES.c.buttons
    ))
    stored_replies = (
        select(reply.c.in_reply_to, reply.c.text, reply.c.buttons)
        .select_from(each_reply).order_by(reply.c.id)
    )
    contact, each_contact = _each("users", CONTACTS.c.external_id, select(CONTACTS).where(
        CONTACTS.c.channel == bindparam("channel")
    ), one=True)
    contacts = select(contact).select_from(each_contact)
    # Locked one contact at a time in the order of the (sorted) ids, so two processes never
    # interleave one customer's turns nor deadlock. Joining the locked rows back to
    # conversations by id would let the planner hash-join a scan of the whole table.
    newest, each_newest = _each("contact_ids", CONVERSATIONS.c.contact_id, select(CONVERSATIONS)
                                .order_by(CONVERSATIONS.c.id.desc()).with_for_update(), one=True)
    latest_convs = select(newest).select_from(each_newest)
    survey, each_survey = _each("ids", SURVEYS.c.conversation_id,
                                select(SURVEYS.c.conversation_id, SURVEYS.c.status))
    open_surveys = select(survey.c.conversation_id, survey.c.status).select_from(each_survey)
    sent, each_sent = _each("ids", SURVEYS.c.customer_id, select(SURVEYS.c.customer_id).where(
        SURVEYS.c.sent_at.is_not(None),
        SURVEYS.c.sent_at > bindparam("since", type_=SURVEYS.c.sent_at.type),
    ))
    recent_surveys = select(sent.c.customer_id).select_from(each_sent)
    pending, each_pending = _each("ids", SURVEYS.c.conversation_id, select(
        SURVEYS.c.id, SURVEYS.c.conversation_id, SURVEYS.c.awaiting, SURVEYS.c.expires_at,
        SURVEYS.c.kind, SURVEYS.c.scale,
    ).where(SURVEYS.c.awaiting.is_not(None)))
    pending_surveys = (
        select(pending.c.id, pending.c.conversation_id, pending.c.awaiting,
               pending.c.expires_at, pending.c.kind, pending.c.scale)
        .select_from(each_pending).order_by(pending.c.id)
    )
    return dataclasses.replace(
        base, stored=stored, stored_replies=stored_replies, contacts=contacts,
        latest_convs=latest_convs, open_surveys=open_surveys, recent_surveys=recent_surveys,
        pending_surveys=pending_surveys,
    )


class _Batch:
    """One group-commit transaction."""

    conn: Connection  # set by run()
    sql: _Statements  # set by run()

    def __init__(self, router: Router, batch: Sequence[_Pending]) -> None:
        self.router = router
        self.batch = batch
        self.clock = router.clock
        self.contacts: dict[tuple[str, str], _Contact] = {}
        self.convs: dict[int, _Conv] = {}  # by contact id (existing contacts)
        self.new_convs: dict[int, _Conv] = {}  # by id(_Contact) for new contacts
        self.surveys: list[_Survey] = []
        self.agents_online: bool | None = None
        self.queued_base: int | None = None
        self.queued_in_batch = 0
        self.survey_facts: tuple[set[int], set[int]] | None = None
        self.pending_surveys: dict[int, dict[str, Any]] | None = None
        self.touched: list[_Conv] = []  # conversations to insert or update, in order
        self.next_ids: dict[str, int] | None = None  # SQLite: the next free id per table

    def run(self, conn: Connection) -> _Written:
        """Decide and write the batch on `conn` (the caller commits). Returns the outcome of
        each message, None for those left to the router (their indices, in order, second)."""
        self.conn = conn
        self.sql = _statements(conn.dialect.name)
        outcomes: list[Outcome | BaseException | None] = [None] * len(self.batch)
        first_of: dict[tuple[str, str], int] = {}
        stored = self._stored()
        self._load_state()
        plans: list[tuple[int, _Plan]] = []
        slow: list[int] = []
        slow_customers: set[tuple[str, str]] = set()
        later_dupes: list[int] = []
        for i, p in enumerate(self.batch):
            msg = p.msg
            mkey = (msg.channel, msg.message_id)
            if mkey in first_of:
                if first_of[mkey] in slow:
                    slow.append(i)  # the router finds the first one stored and says duplicate
                else:
                    later_dupes.append(i)
                continue
            first_of[mkey] = i
            if mkey in stored:
                outcomes[i] = _earlier(stored[mkey], msg)
                continue
            ckey = (msg.channel, msg.user_id)
            if ckey in slow_customers:
                slow.append(i)
                continue
            try:
                plans.append((i, self._plan(p)))
            except _NeedsRouter:
                # This customer's messages from here on go to the router, after the commit,
                # in arrival order.
                slow_customers.add(ckey)
                slow.append(i)
        self._write(plans)
        for i, plan in plans:
            outcomes[i] = self._outcome(plan)
        for i in later_dupes:
            msg = self.batch[i].msg
            first_i = first_of[(msg.channel, msg.message_id)]
            done = outcomes[first_i]
            if isinstance(done, BaseException):
                outcomes[i] = done
            elif self.batch[first_i].msg.user_id != msg.user_id:
                outcomes[i] = DuplicateIdConflict(msg.channel, msg.message_id)
            else:
                assert done is not None
                outcomes[i] = (dataclasses.replace(done[0], duplicate=True), Effects())
        return outcomes, slow

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
        contact_ids = [c.row["id"] for c in self.contacts.values()]
        if not contact_ids:
            return
        # Locked (PostgreSQL) in a fixed order so two processes never interleave one customer's
        # turns nor deadlock.
        rows = self.conn.execute(self.sql.latest_convs, {"contact_ids": sorted(contact_ids)})
        by_id = {c.row["id"]: c for c in self.contacts.values()}
        for r in rows.mappings():
            contact = by_id[r["contact_id"]]
            self.convs[contact.row["id"]] = _Conv(dict(r), contact)

    def _queue_facts(self) -> None:
        """Whether any agent is online, and how many conversations wait: one round trip."""
        row = self.conn.execute(self.sql.queue_facts).one()
        self.agents_online = row[0] is not None
        self.queued_base = int(row[1] or 0)

    def _no_agent_online(self) -> bool:
        if self.agents_online is None:
            self._queue_facts()
        return not self.agents_online

    def _queue_position(self) -> int:
        if self.queued_base is None:
            self._queue_facts()
        assert self.queued_base is not None
        self.queued_in_batch += 1
        return self.queued_base + self.queued_in_batch

    def _survey_facts(self) -> tuple[set[int], set[int]]:
        """(conversations with an open survey, customers surveyed within the cooldown)."""
        if self.survey_facts is None:
            conv_ids = [c.row["id"] for c in self.convs.values() if not c.new]
            customer_ids = [c.row["customer_id"] for c in self.contacts.values() if not c.new]
            open_convs: set[int] = set()
            recent: set[int] = set()
            if conv_ids:
                rows = self.conn.execute(self.sql.open_surveys, {"ids": conv_ids})
                open_convs = {r[0] for r in rows if r[1] in ("scheduled", "sent")}
            if customer_ids:
                since = self.clock() - self.router.surveys.cooldown
                rows = self.conn.execute(
                    self.sql.recent_surveys, {"ids": customer_ids, "since": since}
                )
                recent = {r[0] for r in rows}
            self.survey_facts = (open_convs, recent)
        return self.survey_facts

    # --- deciding --------------------------------------------------------------------------

    def _touched(self, conv: _Conv) -> None:
        if not conv.dirty:
            conv.dirty = True
            self.touched.append(conv)

    def _not_a_survey_answer(
        self, conv: _Conv, msg: InboundMessage, now: datetime
    ) -> bool:
        """Whether `surveys.answer` would pass the message on to normal routing unchanged."""
        payload = msg.payload
        if payload and payload.startswith(surveys.PAYLOAD_PREFIX):
            return False
        survey = self._pending_survey(conv)
        if survey is None or payload:
            return True
        if survey["expires_at"] is not None and now > survey["expires_at"]:
            return False  # expiring it is a change: the router does that
        if survey["awaiting"] == "score":
            return parse_score(msg.text, survey["kind"], survey["scale"]) is None
        return not (survey["awaiting"] == "comment" and msg.text.strip())

    def _pending_survey(self, conv: _Conv) -> dict[str, Any] | None:
        """`surveys.pending`: the conversation's latest survey awaiting an answer."""
        for s in reversed(self.surveys):
            if s.conv is conv and s.row["awaiting"] is not None:
                return s.row
        if conv.new:
            return None
        if self.pending_surveys is None:
            ids = [c.row["id"] for c in self.convs.values()
                   if not c.new and c.row["status"] == "resolved"]
            rows = self.conn.execute(self.sql.pending_surveys, {"ids": ids})
            self.pending_surveys = {r["conversation_id"]: dict(r) for r in rows.mappings()}
        return self.pending_surveys.get(conv.row["id"])

    def _lookup(self, msg: InboundMessage) -> tuple[_Contact | None, _Conv | None]:
        contact = self.contacts.get((msg.channel, msg.user_id))
        if contact is None:
            return None, None
        if contact.new:
            return contact, self.new_convs.get(id(contact))
        return contact, self.convs.get(contact.row["id"])

    def _plan(self, p: _Pending) -> _Plan:
        msg = p.msg
        contact, conv = self._lookup(msg)
        received = self.clock()
        reopen = False
        if conv is not None and conv.row["status"] == "resolved":
            # Router: a survey answer, else reopen within the window, else a new conversation.
            if not self._not_a_survey_answer(conv, msg, received):
                raise _NeedsRouter
            c = conv.row
            reopen = (c["resolved_at"] is not None and c["resolved_by"] != "spam"
                      and received - c["resolved_at"] <= self.router.policy.reopen_window)
            state = None  # a reopened or new conversation starts without pending state
        else:
            state = conv.row if conv else None
        # Decided before anything is changed: _NeedsRouter leaves the batch state untouched.
        if state is not None and state["status"] in ("queued", "assigned"):
            action: tuple[Any, ...] = ("silent",)  # a person has it: the agent sees the message
        elif state is not None and state["status"] != "bot":
            raise _NeedsRouter
        else:
            action = self._action(state, msg, p.candidates)
        if contact is None:
            contact = _Contact(
                {"id": None, "customer_id": None, "channel": msg.channel,
                 "external_id": msg.user_id, "display_name": msg.display_name,
                 "created_at": received},
                new=True,
            )
            self.contacts[(msg.channel, msg.user_id)] = contact
        elif msg.display_name and contact.row["display_name"] != msg.display_name:
            contact.row["display_name"] = msg.display_name
            contact.renamed = not contact.new
        if conv is None or (conv.row["status"] == "resolved" and not reopen):
            conv = self._new_conv(contact, received)
        self._touched(conv)
        c = conv.row
        plan = _Plan(p, conv, received, {
            "channel": msg.channel, "external_id": msg.message_id, "direction": "in",
            "sender": "customer", "text": msg.text, "payload": msg.payload,
            "created_at": received,
        })
        if reopen:
            previous = {"resolved_by": c["resolved_by"], "resolution_code": c["resolution_code"]}
            c.update(status="bot", resolved_at=None, resolved_by=None, resolution_code=None,
                     pending_faq_id=None, failed_bot_turns=0, assigned_agent_id=None,
                     updated_at=received)
            c["reopen_count"] += 1
            self._touch(plan, "reopened", "customer", received, details=previous)
        c["customer_messages"] += 1
        c["last_customer_message_at"] = received
        c["updated_at"] = received
        self._touch(plan, "message_in", "customer", received, with_message=True,
                    details={"payload": msg.payload} if msg.payload else None)
        self._apply(plan, action)
        replied_at = self.clock()
        for reply in plan.replies:
            reply.at = replied_at
        if action[0] in {"answer", "suggest"}:
            c["last_bot_answer_at"] = replied_at
            if c["first_bot_response_ms"] is None:
                c["first_bot_response_ms"] = ms_between(received, replied_at)
        plan.status_after = c["status"]
        plan.message_event = c["status"] in ("queued", "assigned")
        return plan

    def _action(
        self, conv: dict[str, Any] | None, msg: InboundMessage,
        candidates: list[Candidate] | None,
    ) -> tuple[Any, ...]:
        """What `Router._decide` would do, or _NeedsRouter when it needs more than a bot turn."""
        text = msg.text.strip()
        cmd = intents.command(text) if text else None
        payload = msg.payload or ""
        pending_faq = conv["pending_faq_id"] if conv else None
        failed = conv["failed_bot_turns"] if conv else 0
        policy = self.router.policy
        docs = self.router.index.docs_by_id
        if not text and not payload:
            return ("unsupported",)
        if payload == replies.START or cmd == "start":
            return ("say", replies.greeting())
        if payload == replies.HELP or cmd == "help":
            return ("say", OutboundMessage(replies.HELP_TEXT))
        if payload == replies.HANDOFF or cmd in _HUMAN_COMMANDS:
            return self._handoff_action("requested", None)
        feedback: bool | None = None
        feedback_faq = pending_faq
        if payload.startswith(replies.HELPFUL_YES_PREFIX):
            feedback, feedback_faq = True, payload.removeprefix(replies.HELPFUL_YES_PREFIX)
        elif payload.startswith(replies.HELPFUL_NO_PREFIX):
            feedback, feedback_faq = False, payload.removeprefix(replies.HELPFUL_NO_PREFIX)
        elif pending_faq and text:
            feedback = intents.typed_feedback(text)
        if feedback is not None and feedback_faq:
            if feedback:
                return ("resolved", feedback_faq)
            return ("not_helpful", feedback_faq,
                    *(self._handoff_action("not_helpful", {"faq_id": feedback_faq})))
        if payload.startswith(replies.PICK_PREFIX):
            doc = docs.get(payload.removeprefix(replies.PICK_PREFIX))
            if doc is not None:
                return ("answer", doc, None, True)
        if text and intents.wants_human(text):
            return self._handoff_action("requested", None)
        if not text:
            return self._handoff_action("unknown_button", None)
        if candidates is None:
            raise _NeedsRouter
        top = candidates[0] if candidates else None
        if top is not None and top.score >= policy.answer_threshold:
            doc = docs.get(top.faq_id)
            if doc is not None:
                return ("answer", doc, top.score, False)
        suggestable = [
            c for c in candidates[: policy.max_suggestions]
            if c.score >= policy.suggest_threshold and c.faq_id in docs
        ]
        if suggestable and failed + 1 < policy.max_failed_bot_turns:
            return ("suggest", suggestable)
        reason = "failed_turns" if suggestable else "no_match"
        return self._handoff_action(
            reason, {"text": text, "top_faq_id": top.faq_id if top else None,
                     "top_score": round(top.score, 4) if top else None},
        )

    def _handoff_action(
        self, reason: str, details: dict[str, Any] | None
    ) -> tuple[Any, ...]:
        if not self._no_agent_online():
            raise _NeedsRouter  # an agent may take it now: assignment needs the full logic
        return ("handoff", reason, details)

    def _apply(self, plan: _Plan, action: tuple[Any, ...]) -> None:
        c = plan.conv.row
        at = plan.received
        kind = action[0]
        if kind == "silent":
            pass
        elif kind == "unsupported":
            self._touch(plan, "unsupported", "customer", at)
            plan.replies.append(_Reply(OutboundMessage(replies.UNSUPPORTED), at))
        elif kind == "say":
            plan.replies.append(_Reply(action[1], at))
        elif kind == "answer":
            doc: FaqDoc = action[1]
            c["pending_faq_id"] = doc.id
            c["failed_bot_turns"] = 0
            c["bot_answers"] += 1
            self._touch(plan, "faq_answer", "bot", at, faq_id=doc.id, score=action[2],
                        wait_ms=ms_between(at, self.clock()),
                        details={"picked_from_suggestions": True} if action[3] else None)
            plan.replies.append(_Reply(replies.answer(doc), at))
        elif kind == "suggest":
            cands: list[Candidate] = action[1]
            c["failed_bot_turns"] += 1
            c["pending_faq_id"] = None
            docs = self.router.index.docs_by_id
            self._touch(plan, "faq_suggest", "bot", at, faq_id=cands[0].faq_id,
                        score=cands[0].score, wait_ms=ms_between(at, self.clock()),
                        details={"candidates": [[x.faq_id, round(x.score, 4)] for x in cands]})
            plan.replies.append(
                _Reply(replies.suggestions([docs[x.faq_id] for x in cands]), at)
            )
        elif kind == "resolved":
            self._resolve(plan, action[1])
        elif kind == "not_helpful":
            c["pending_faq_id"] = None
            self._touch(plan, "faq_feedback", "customer", at, faq_id=action[1],
                        details={"helpful": False})
            c["failed_bot_turns"] += 1
            self._handoff(plan, action[3], action[4])
        elif kind == "handoff":
            self._handoff(plan, action[1], action[2])
        else:  # pragma: no cover - _action only returns the kinds above
            raise AssertionError(kind)

    def _handoff(self, plan: _Plan, reason: str, details: dict[str, Any] | None) -> None:
        c = plan.conv.row
        at = plan.received
        c["status"] = "queued"
        c["queued_at"] = at
        c["handoffs"] += 1
        c["pending_faq_id"] = None
        c["updated_at"] = at
        self._touch(plan, "handoff", "bot", at, details={"reason": reason, **(details or {})})
        plan.events.append(("queued", True, {"reason": reason}))
        position = self._queue_position()
        plan.replies.append(
            _Reply(OutboundMessage(replies.HANDOFF_QUEUED.format(position=position)), at)
        )

    def _resolve(self, plan: _Plan, faq_id: str) -> None:
        conv = plan.conv
        c = conv.row
        at = plan.received
        c["pending_faq_id"] = None
        self._touch(plan, "faq_feedback", "customer", at, faq_id=faq_id,
                    details={"helpful": True})
        c.update(status="resolved", resolved_at=at, resolved_by="bot", resolution_code=None,
                 pending_faq_id=None, updated_at=at)
        self._touch(plan, "resolved", "customer", at,
                    details={"resolved_by": "bot", "resolution_code": None})
        plan.events.append(("resolved", False, {"resolved_by": "bot"}))
        plan.replies.append(_Reply(OutboundMessage(replies.GLAD), at))
        # surveys.on_resolved and surveys.send, for a conversation resolved by the bot.
        policy = self.router.surveys
        if c["channel"] not in policy.channels:
            return
        open_convs, recent = self._survey_facts()
        if not conv.new and c["id"] in open_convs:
            return
        if any(s.conv is conv and s.row["status"] in ("scheduled", "sent")
               for s in self.surveys):
            return
        survey = _Survey({
            "channel": c["channel"], "kind": "csat", "scale": surveys.SCALES["csat"],
            "status": "scheduled", "resolved_by": "bot", "agent_id": None,
            "due_at": at + policy.delay, "created_at": at, "awaiting": None,
            "sent_at": None, "expires_at": None,
        }, conv)
        self.surveys.append(survey)
        if policy.delay.total_seconds() > 0:
            return
        customer_id = conv.contact.row["customer_id"]
        surveyed = (customer_id is not None and customer_id in recent) or any(
            s.row["sent_at"] is not None and s.conv.contact is conv.contact
            for s in self.surveys if s is not survey
        )
        if surveyed:
            survey.row["status"] = "cancelled"
            self._touch(plan, "survey_skipped", "system", at, details={"reason": "cooldown"})
            return
        survey.row.update(status="sent", awaiting="score", sent_at=at,
                          expires_at=at + policy.expiry)
        self._touch(plan, "survey_sent", "system", at, survey=survey)
        plan.replies.append(_Reply(None, at, survey=survey))

    def _touch(
        self, plan: _Plan, kind: str, actor: str, at: datetime, *, with_message: bool = False,
        faq_id: str | None = None, score: float | None = None, wait_ms: int | None = None,
        details: dict[str, Any] | None = None, survey: _Survey | None = None,
    ) -> None:
        c = plan.conv.row
        effort = EFFORT.get(kind, 0)
        c["effort_score"] += effort
        row = {
            "kind": kind, "actor": actor, "channel": c["channel"], "agent_id": None,
            "faq_id": faq_id, "score": score, "effort": effort, "wait_ms": wait_ms,
            "outcome": c["status"], "details": details, "created_at": at,
            "_survey": survey,
        }
        plan.touchpoints.append((row, with_message))

    def _new_conv(self, contact: _Contact, now: datetime) -> _Conv:
        row: dict[str, Any] = {
            "id": None, "customer_id": contact.row["customer_id"],
            "contact_id": contact.row["id"], "channel": contact.row["channel"],
            "status": "bot", "opened_at": now, "updated_at": now,
            "last_customer_message_at": None, "last_bot_answer_at": None, "queued_at": None,
            "assigned_agent_id": None, "assigned_at": None, "resolved_at": None,
            "resolved_by": None, "resolution_code": None, "pending_faq_id": None,
            "failed_bot_turns": 0, "customer_messages": 0, "bot_answers": 0,
            "agent_messages": 0, "handoffs": 0, "transfers": 0, "reopen_count": 0,
            "effort_score": 0, "first_bot_response_ms": None, "first_human_response_ms": None,
        }
        conv = _Conv(row, contact, new=True)
        if contact.new:
            self.new_convs[id(contact)] = conv
        else:
            self.convs[contact.row["id"]] = conv
        return conv

    # --- writing ---------------------------------------------------------------------------

    def _insert(self, table: Table, rows: list[dict[str, Any]]) -> list[int]:
        """Insert rows with one statement; their new ids, in the order given."""
        if not rows:
            return []
        if self.conn.dialect.name != "sqlite":
            # PostgreSQL: SQLAlchemy's "insertmanyvalues" batches this and orders the ids.
            return _pg_insert(self.conn, table, rows, returning=True)
        # SQLite: SQLAlchemy would insert row by row to order RETURNING ids. SQLite has no
        # sequences and one writer, so the batch numbers its rows itself from max(id) (read
        # once per batch) and inserts them with one cached executemany. Should anyone else
        # have taken an id, the primary key refuses the insert and the batch is retried.
        if self.next_ids is None:
            tables = self.sql.next_id_tables
            row = self.conn.execute(self.sql.next_ids).one()
            self.next_ids = {t.name: int(v) + 1 for t, v in zip(tables, row, strict=True)}
        first = self.next_ids[table.name]
        ids = list(range(first, first + len(rows)))
        self.next_ids[table.name] = first + len(rows)
        _sqlite_insert(self.conn, table, [{**r, "id": i} for r, i in zip(rows, ids, strict=True)])
        return ids

    def _insert_plain(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows whose ids nobody needs."""
        if not rows:
            return
        if self.conn.dialect.name == "sqlite":
            _sqlite_insert(self.conn, table, rows)
        else:
            _pg_insert(self.conn, table, rows, returning=False)

    def _write(self, plans: list[tuple[int, _Plan]]) -> None:
        if not plans:
            return
        new_contacts = [c for c in self.contacts.values() if c.new]
        ids = self._insert(CUSTOMERS, [
            {"display_name": c.row["display_name"], "created_at": c.row["created_at"]}
            for c in new_contacts
        ])
        for contact, cid in zip(new_contacts, ids, strict=True):
            contact.row["customer_id"] = cid
        ids = self._insert(CONTACTS, [
            {k: v for k, v in c.row.items() if k != "id"} for c in new_contacts
        ])
        for contact, cid in zip(new_contacts, ids, strict=True):
            contact.row["id"] = cid
        convs = self.touched
        new_convs = [c for c in convs if c.new]
        for conv in new_convs:
            conv.row["customer_id"] = conv.contact.row["customer_id"]
            conv.row["contact_id"] = conv.contact.row["id"]
        ids = self._insert(CONVERSATIONS, [
            {k: v for k, v in c.row.items() if k != "id"} for c in new_convs
        ])
        for conv, cid in zip(new_convs, ids, strict=True):
            conv.row["id"] = cid
        ids = self._insert(SURVEYS, [
            {**s.row, "conversation_id": s.conv.row["id"],
             "customer_id": s.conv.row["customer_id"]}
            for s in self.surveys
        ])
        for survey, sid in zip(self.surveys, ids, strict=True):
            survey.row["id"] = sid
        ids = self._insert(MESSAGES, [
            {**plan.inbound, "conversation_id": plan.conv.row["id"],
             "status_after": plan.status_after}
            for _, plan in plans
        ])
        out_rows: list[dict[str, Any]] = []
        outbox_rows: list[dict[str, Any]] = []
        for (_, plan), mid in zip(plans, ids, strict=True):
            plan.inbound["id"] = mid
            inline = plan.pending.msg.reply_inline
            for reply in plan.replies:
                if reply.message is None:
                    assert reply.survey is not None
                    reply.message = _survey_question(reply.survey, self.router.surveys)
                buttons = [b.to_dict() for b in reply.message.buttons] or None
                crow = plan.conv.row
                out_rows.append({
                    "conversation_id": crow["id"], "channel": crow["channel"],
                    "direction": "out", "sender": "bot", "agent_id": None,
                    "text": reply.message.text, "buttons": buttons, "in_reply_to": mid,
                    "created_at": reply.at,
                })
                outbox_rows.append({
                    "conversation_id": crow["id"], "channel": crow["channel"],
                    "recipient": plan.conv.contact.row["external_id"],
                    "text": reply.message.text, "buttons": buttons,
                    "status": "sent" if inline else "pending",
                    "attempts": 1 if inline else 0, "next_attempt_at": reply.at,
                    "created_at": reply.at, "sent_at": reply.at if inline else None,
                })
        out_ids = self._insert(MESSAGES, out_rows)
        for row, oid in zip(outbox_rows, out_ids, strict=True):
            row["message_id"] = oid
        self._insert_plain(OUTBOX, outbox_rows)
        tp_rows: list[dict[str, Any]] = []
        for _, plan in plans:
            crow = plan.conv.row
            for row, with_message in plan.touchpoints:
                survey = row.pop("_survey")
                if survey is not None:
                    row["details"] = {"survey_id": survey.row["id"], "kind": survey.row["kind"]}
                tp_rows.append({
                    **row, "conversation_id": crow["id"], "customer_id": crow["customer_id"],
                    "message_id": plan.inbound["id"] if with_message else None,
                })
        self._insert_plain(TOUCHPOINTS, tp_rows)
        changed = [c for c in convs if c.dirty and not c.new]
        if changed and self.conn.dialect.name == "sqlite":
            _sqlite_update(self.conn, CONVERSATIONS, _CONV_MUTABLE,
                           [c.row for c in changed])
        elif changed:
            self.conn.execute(
                self.sql.update_conv,
                [{"b_id": c.row["id"], **{k: c.row[k] for k in _CONV_MUTABLE}}
                 for c in changed],
            )
        renamed = [c for c in self.contacts.values() if c.renamed]
        if renamed:
            self.conn.execute(
                self.sql.rename_contact,
                [{"b_id": c.row["id"], "name": c.row["display_name"]} for c in renamed],
            )
        # Later rows of the same batch may be routed by the ORM: it must see this state.
        for c in changed:
            c.dirty = False

    def _outcome(self, plan: _Plan) -> Outcome:
        conv = plan.conv.row
        effects = Effects()
        if not plan.pending.msg.reply_inline and plan.replies:
            effects.outbox_pending = True
        for kind, queue, data in plan.events:
            effects.emit(Event(kind, conv["id"], queue=queue, data=data))
        if plan.message_event:
            msg = plan.pending.msg
            agent = conv["assigned_agent_id"]
            effects.emit(Event(
                "message", conv["id"], agent_ids=(agent,) if agent else (),
                queue=plan.status_after == "queued",
                data={"text": msg.text, "payload": msg.payload, "status": plan.status_after},
            ))
        out = tuple(r.message for r in plan.replies if r.message is not None)
        return RouteResult(conv["id"], plan.status_after, out), effects


@dataclass
class _Stored:
    """An inbound message already stored: a redelivery gets its first result again."""

    conversation_id: int
    status: str
    user_id: str
    replies: list[OutboundMessage] = field(default_factory=list)


def _earlier(stored: _Stored, msg: InboundMessage) -> Outcome | BaseException:
    """`router.earlier_result` for a stored message."""
    if stored.user_id != msg.user_id:
        # Same message id from another user: a broken or hostile bridge, never a redelivery.
        return DuplicateIdConflict(msg.channel, msg.message_id)
    result = RouteResult(stored.conversation_id, stored.status, tuple(stored.replies),
                         duplicate=True)
    return result, Effects()


# --- SQLite bulk writes without SQLAlchemy's per-value bind processing --------------------
# SQLAlchemy spends ~40 µs per row converting values; for SQLite the conversions are few and
# simple, so the hot path does them here (same storage format as SQLAlchemy's SQLite types).


@functools.lru_cache(maxsize=1024)  # a message's rows share a few timestamps
def _sqlite_datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column; use an aware datetime")
    if value.tzinfo is not UTC:  # the service clock's are already
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_json(value: Any) -> str:
    # Like SQLAlchemy's JSON type, None is stored as JSON null (most touchpoints' details).
    return "null" if value is None else json.dumps(value)


def _converter(table: Table, name: str) -> Callable[[Any], Any] | None:
    kind = table.c[name].type
    if isinstance(kind, UTCDateTime):
        return _sqlite_datetime
    if isinstance(kind, JSON):
        return _sqlite_json
    return None


@functools.cache
def _sqlite_plan(
    table: Table, names: tuple[str, ...], sql_kind: str
) -> tuple[str, tuple[Callable[[Any], Any] | None, ...]]:
    if sql_kind == "insert":
        sql = (f"INSERT INTO {table.name} ({', '.join(names)}) "
               f"VALUES ({', '.join('?' for _ in names)})")
    else:
        sets = ", ".join(f"{n} = ?" for n in names[:-1])
        sql = f"UPDATE {table.name} SET {sets} WHERE {names[-1]} = ?"
    return sql, tuple(_converter(table, n) for n in names)


def _sqlite_rows(
    converters: tuple[Callable[[Any], Any] | None, ...], names: tuple[str, ...],
    rows: list[dict[str, Any]],
) -> list[tuple[Any, ...]]:
    # itemgetter picks the values in C; only the few datetime/JSON columns go through Python.
    pick = operator.itemgetter(*names)
    convert = [(i, f) for i, f in enumerate(converters) if f is not None]
    out: list[tuple[Any, ...]] = []
    for r in rows:
        values = list(pick(r)) if len(names) > 1 else [pick(r)]
        for i, f in convert:
            values[i] = f(values[i])
        out.append(tuple(values))
    return out


def _sqlite_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    names = tuple(rows[0])
    sql, converters = _sqlite_plan(table, names, "insert")
    conn.exec_driver_sql(sql, _sqlite_rows(converters, names, rows))


def _sqlite_update(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    names = (*columns, "id")
    sql, converters = _sqlite_plan(table, names, "update")
    conn.exec_driver_sql(sql, _sqlite_rows(converters, names, rows))


# --- PostgreSQL bulk inserts with one prepared statement ----------------------------------
# SQLAlchemy's multi-row VALUES has a different SQL text for every batch size, which asyncpg
# prepares anew each time; INSERT … SELECT FROM unnest(arrays) is one text for any size.


@functools.cache
def _pg_insert_sql(table: Table, names: tuple[str, ...], returning: bool, dialect: Any) -> str:
    casts = ", ".join(
        f"${i}::{table.c[n].type.compile(dialect=dialect)}[]" for i, n in enumerate(names, 1)
    )
    cols = ", ".join(names)
    # Ids come from the sequence in the SELECT's order (ORDER BY ordinality); the returned ids
    # are sorted, as SQLAlchemy does for its own ordered bulk inserts on PostgreSQL.
    return (f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM unnest({casts}) "
            f"WITH ORDINALITY AS u({cols}, ord_) ORDER BY ord_"
            + (f" RETURNING {table.name}.id" if returning else ""))


def _pg_insert(
    conn: Connection, table: Table, rows: list[dict[str, Any]], *, returning: bool
) -> list[int]:
    names = tuple(rows[0])
    json_cols = {n for n in names if isinstance(table.c[n].type, JSON)}
    columns = tuple(
        [json.dumps(r[n]) for r in rows] if n in json_cols else [r[n] for r in rows]
        for n in names
    )
    result = conn.exec_driver_sql(_pg_insert_sql(table, names, returning, conn.dialect), columns)
    return sorted(result.scalars()) if returning else []


def _survey_question(survey: _Survey, policy: surveys.SurveyPolicy) -> OutboundMessage:
    return OutboundMessage(policy.csat_text, surveys.question_buttons(
        survey.row["id"], survey.row["kind"], survey.row["scale"]
    ))
