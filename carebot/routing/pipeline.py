"""The inbound pipeline: one writer per process commits concurrent messages together.

Every message is answered only after the transaction holding it, its touchpoints and its
replies has committed; a redelivery is recognised and changes nothing. Concurrent messages
share one transaction (`carebot.routing.batch`): a batch is matched (worker threads, mostly
outside the GIL) while the previous one is written. On SQLite the batches run on a connection
of their own in a writer thread (`carebot.db.writer_thread`). If a batch fails, its messages
are written again one per transaction, so one bad message cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from carebot.db.availability import is_unavailable, lost_a_race
from carebot.db.checkpoint import WalCheckpointer
from carebot.db.engine import WRITE_OPTION
from carebot.db.writer_thread import SqliteWriterThread
from carebot.domain.events import Event
from carebot.domain.messages import InboundMessage
from carebot.domain.states import Status
from carebot.matching.faq_index import FaqIndex
from carebot.routing import core
from carebot.routing.batch import Batch, BatchContext, Busy, Outcome, Pending

log = logging.getLogger(__name__)

MAX_BATCH = 128
# A batch chosen as a deadlock victim is run again this many times before it is split.
DEADLOCK_RETRIES = 3
# How soon a message put off because an agent action held its conversation is tried again.
BUSY_RETRY_SECONDS = 0.01
_Result = list[Outcome | BaseException]
# Customers remembered as talking to a person (per process, the most recent ones).
WITH_PERSON_MAX = 100_000
_WITH_PERSON = frozenset({Status.QUEUED, Status.ASSIGNED})


@dataclass(eq=False)
class _Waiting:
    pending: Pending
    future: asyncio.Future[Outcome]


class InboundBatcher:
    """Routes inbound messages through one writer that commits them in batches."""

    def __init__(
        self,
        ctx: BatchContext,
        index: FaqIndex,
        engine: AsyncEngine,
        publish: Callable[[list[Event]], Awaitable[None]] | None = None,
        max_batch: int = MAX_BATCH,
        sqlite_synchronous: str = "full",
        answer_within: float | None = None,
    ) -> None:
        self.ctx = ctx
        self.index = index
        self.engine = engine
        # Transactions that read, decide and write: on SQLite they take the write lock first.
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})
        # Live events of a whole batch go out in one call (on PostgreSQL one NOTIFY round
        # trip per batch instead of per message).
        self.publish = publish
        self._publishing: set[asyncio.Task[None]] = set()
        self.max_batch = max_batch
        # The longest a caller waits for its message's batch (PostgreSQL: the database
        # timeout). A batch caught by a hung server can take several timeouts in a row
        # (the statement, the rollback, a retry on a fresh connection); its callers get
        # TimeoutError (503: send again) at this deadline, and the batch ends by itself.
        self.answer_within = answer_within
        self._sqlite_synchronous = sqlite_synchronous
        self._writer: SqliteWriterThread[_Waiting, _Result] | None = None  # SQLite
        self._conn: AsyncConnection | None = None  # the writer's connection (PostgreSQL)
        self._settling: set[asyncio.Task[None]] = set()
        self._checkpointer: WalCheckpointer | None = None
        self._queue: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Customers whose conversation was with a person (queued or assigned) after their
        # last message here. While it is, the bot stays quiet, so their messages are not
        # matched up front: new text every time, each would cost a match (~1-4 ms of CPU)
        # that is thrown away. Should the conversation have moved on meanwhile (resolved,
        # handed back, by another process too), the batch matches that message on demand.
        self._with_person: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def start(self) -> None:
        """Start the writer."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            # SQLite through aiosqlite costs a thread round trip per statement; batches run
            # their statements back to back on a plain sqlite3 connection in a thread of their
            # own. Checkpoints run beside the writer rather than inside its commits.
            self._writer = SqliteWriterThread(
                url, self._sqlite_synchronous, self._write_in_thread, self._written,
                _failed, self.max_batch,
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
        waiting = _Waiting(Pending(msg), asyncio.get_running_loop().create_future())
        if self._task is None or self._stopping:
            await self._match([waiting])
            await self._alone(waiting)
        else:
            self._queue.append(waiting)
            self._wake.set()
        if self.answer_within is None:
            return await waiting.future
        try:
            return await asyncio.wait_for(asyncio.shield(waiting.future), self.answer_within)
        except TimeoutError:
            # Should the batch still commit, the caller's retry is a redelivery: answered
            # with the first result, stored once.
            waiting.future.add_done_callback(_retrieve)
            raise TimeoutError(
                f"no answer from the database within {self.answer_within:g} s") from None

    async def _match(self, batch: Sequence[_Waiting]) -> None:
        """Match the batch's typed questions (the index caches repeated ones; the rest are
        matched in one worker-thread hop)."""
        todo = [w for w in batch if core.needs_match(w.pending.msg.text, w.pending.msg.payload)
                and (w.pending.msg.channel, w.pending.msg.user_id) not in self._with_person]
        if not todo:
            return
        try:  # without candidates the batch matches each such message in its own thread
            found = await self.index.match_many(
                [w.pending.msg.text for w in todo], self.ctx.policy.routing.match_limit
            )
        except Exception:
            # Without candidates the batch matches each such message in its own thread.
            log.exception("matching a batch failed")
            return
        for w, candidates in zip(todo, found, strict=True):
            w.pending.candidates = candidates

    async def _run(self) -> None:
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
                    except Exception:  # never let one odd message end the writer
                        log.exception("preparing an inbound batch failed; writing it anyway")
                    if self._writer is not None:
                        self._writer.put(batch)
                        continue
                    if writing is not None:
                        await writing
                    writing = asyncio.create_task(self._process(batch), name="inbound-batch")
                if self._stopping:
                    return
        finally:
            if writing is not None:
                await writing

    async def _process(self, batch: Sequence[_Waiting]) -> None:
        """A batch in one transaction on the async engine; a deadlock victim is run again,
        any other failure one message at a time."""
        for attempt in range(DEADLOCK_RETRIES + 1):
            kept = self._conn is not None
            try:
                result = await self._write(batch)
            except Exception as exc:
                if lost_a_race(exc) and attempt < DEADLOCK_RETRIES:
                    log.info("inbound batch lost a deadlock; running it again")
                    continue
                if kept and attempt == 0 and is_unavailable(exc):
                    # The connection kept between batches may have died with a restarted
                    # server that is back by now: one more try, on a fresh connection.
                    continue
                await self._one_by_one(batch, exc)
                return
            self._answer(batch, result)
            return

    def _write_in_thread(self, conn: Connection, batch: list[_Waiting]) -> _Result:
        """SQLite: the batch's transaction, in the writer thread."""
        return Batch(self.ctx, [w.pending for w in batch]).run(conn)

    def _written(
        self, batch: list[_Waiting], result: _Result | BaseException,
        resume: threading.Event | None,
    ) -> None:
        """SQLite: a batch the writer thread finished, back on the event loop."""
        if not isinstance(result, BaseException):
            self._answer(batch, result)
            return
        assert resume is not None
        # The thread waits until the failed batch's messages are written one by one, so no
        # later message of the same customer overtakes them.
        task = asyncio.create_task(self._retry(batch, result, resume))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _retry(
        self, batch: list[_Waiting], error: BaseException, resume: threading.Event
    ) -> None:
        try:
            await self._one_by_one(batch, error)
        finally:
            resume.set()

    async def _one_by_one(self, batch: Sequence[_Waiting], error: BaseException) -> None:
        if is_unavailable(error):
            # The database is away: each message alone would wait for it again. Their callers
            # get the error (503: nothing stored, send again); the outage is logged once.
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(error)
            return
        log.warning("inbound batch of %d failed (%s); writing its messages one by one",
                    len(batch), type(error).__name__, exc_info=error)
        for w in batch:
            await self._alone(w)

    async def _alone(self, waiting: _Waiting) -> None:
        """Write one message in its own transaction; its error is its caller's only."""
        for attempt in range(3):
            try:
                result = await self._write([waiting], wait_for_locks=True)
            except IntegrityError as exc:
                # Lost a race: the same message (or the same new customer) was stored by a
                # concurrent writer. Look again; the retry finds the duplicate or the contact.
                if attempt < 2:
                    continue
                error: BaseException = exc
            except Exception as exc:
                error = exc
            else:
                self._answer([waiting], result)
                return
            if not waiting.future.done():
                waiting.future.set_exception(error)
            return

    def _answer(self, batch: Sequence[_Waiting], outcomes: _Result) -> None:
        """Committed: answer the messages, and publish their live events."""
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
        for w, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, tuple):
                self._note_status(w.pending.msg, outcome[0].status)
        busy = [w for w, o in zip(batch, outcomes, strict=True) if isinstance(o, Busy)]
        if busy:
            # Their conversations are held by agent actions (short transactions): they go
            # first into the next batch, in order, a moment later.
            self._queue[:0] = busy
            asyncio.get_running_loop().call_later(BUSY_RETRY_SECONDS, self._wake.set)
        for w, outcome in zip(batch, outcomes, strict=True):
            if w.future.done() or isinstance(outcome, Busy):
                continue
            if isinstance(outcome, BaseException):
                w.future.set_exception(outcome)
            else:
                w.future.set_result(outcome)

    def _note_status(self, msg: InboundMessage, status: str) -> None:
        key = (msg.channel, msg.user_id)
        if status in _WITH_PERSON:
            self._with_person[key] = None
            self._with_person.move_to_end(key)
            if len(self._with_person) > WITH_PERSON_MAX:
                self._with_person.popitem(last=False)
        else:
            self._with_person.pop(key, None)

    async def _publish(self, events: list[Event]) -> None:
        assert self.publish is not None
        try:
            await self.publish(events)
        except Exception as exc:  # the data is committed; live events are best effort
            if not is_unavailable(exc):  # an outage is logged once, where it is noticed
                log.exception("could not publish %d live events", len(events))

    async def _write(
        self, batch: Sequence[_Waiting], *, wait_for_locks: bool = False
    ) -> _Result:
        if self._writer is not None:
            # SQLite: the writer thread has its own connection; the engine's one pooled
            # connection is everyone's, so a message written alone here borrows it briefly.
            work = Batch(self.ctx, [w.pending for w in batch])
            async with self._write_engine.connect() as conn, conn.begin():
                return await conn.run_sync(work.run)
        # One connection kept for the writer: no pool checkout and pre-ping per batch.
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = await self._write_engine.connect()
        work = Batch(self.ctx, [w.pending for w in batch], wait_for_locks=wait_for_locks)
        try:
            async with self._conn.begin():
                return await self._conn.run_sync(work.run)
        except Exception:
            # Start the next batch on a fresh connection in case this one is broken; closing
            # it politely could wait on a hung server, so it is dropped.
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.invalidate()
            raise


def _retrieve(future: asyncio.Future[Outcome]) -> None:
    """Mark the outcome of a message nobody waits for any more as seen."""
    if not future.cancelled():
        future.exception()


def _failed(result: _Result | BaseException) -> bool:
    return isinstance(result, BaseException)
