"""The outbox: outbound messages written in the same transaction as the decision behind them,
and the worker that delivers them.

Rows go `pending` -> `sending` (claimed with a lease) -> `sent` | `failed`, or back to `pending`
with a later `next_attempt_at` after a transient error. Delivery is at least once: a row marked
`sent` is never sent again, but a worker that dies after the messenger accepted a message and
before it recorded `sent` leaves the row `sending`; when the lease runs out another worker (or
the restarted one) sends it again. Each row is marked sent in its own short transaction right
after its send returns, so that window is one send's round trip, per row. A send that timed out
may also have arrived (the messenger gives no idempotency key), and its retry can duplicate it.

Each chat gets its messages in order: only the oldest unsent (pending or sending) row to a
recipient can be claimed, so a later message never overtakes one that waits for a retry or is
in flight with another worker. (Telegram allows about one message a second per chat anyway.)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from carebot.db import touchpoints
from carebot.db.availability import is_unavailable
from carebot.db.models import Conversation, Message, OutboxMessage
from carebot.db.previews import with_glances
from carebot.domain.clock import Clock
from carebot.domain.events import Effects, Event
from carebot.domain.messages import Button, OutboundMessage

log = logging.getLogger(__name__)


async def enqueue(
    session: AsyncSession,
    conv: Conversation,
    recipient: str,
    reply: OutboundMessage,
    now: datetime,
    *,
    sender: str,
    in_reply_to: int | None = None,
    agent_id: int | None = None,
    delivered_inline: bool = False,
) -> Message:
    """Store the reply as a message and an outbox row; inline replies are already delivered."""
    buttons = [b.to_dict() for b in reply.buttons] or None
    message = Message(
        conversation_id=conv.id,
        channel=conv.channel,
        direction="out",
        sender=sender,
        agent_id=agent_id,
        text=reply.text,
        buttons=buttons,
        in_reply_to=in_reply_to,
        created_at=now,
    )
    session.add(message)
    await session.flush()
    session.add(
        OutboxMessage(
            message_id=message.id,
            conversation_id=conv.id,
            channel=conv.channel,
            recipient=recipient,
            text=reply.text,
            buttons=buttons,
            status="sent" if delivered_inline else "pending",
            attempts=1 if delivered_inline else 0,
            next_attempt_at=now,
            created_at=now,
            sent_at=now if delivered_inline else None,
        )
    )
    return message


def enqueue_notice(
    session: AsyncSession, channel: str, recipient: str, reply: OutboundMessage, now: datetime
) -> OutboxMessage:
    """Queue a message that belongs to no conversation (e.g. "write to me privately")."""
    row = OutboxMessage(
        channel=channel,
        recipient=recipient,
        text=reply.text,
        buttons=[b.to_dict() for b in reply.buttons] or None,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    return row


# --- delivery ----------------------------------------------------------------------------------


class TransientDeliveryError(Exception):
    """The message did not go out but may later (network, 5xx, rate limit): retry it.

    `retry_after` is the messenger's own "wait this many seconds", when it said so.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentDeliveryError(Exception):
    """The message can never go out (bot blocked by the user, chat not found): give up."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeliveryDeferred(Exception):
    """Not a failure: the recipient cannot take the message now and the channel delivers it
    when they can (a web visitor whose widget is closed gets it on their next visit).

    The row goes back to `pending` for `retry_after` seconds (or until the channel marks it
    `sent` itself); deferrals never use up the row's attempts.
    """

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class OutboxItem:
    """One claimed outbox row, as a sender sees it."""

    id: int
    channel: str
    recipient: str
    text: str
    buttons: tuple[Button, ...]
    attempt: int  # 1 on the first try
    conversation_id: int | None
    message_id: int | None
    created_at: datetime | None = None


class Sender(Protocol):
    """Delivers outbox rows on one channel."""

    async def send(self, item: OutboxItem) -> str | None:
        """Send the item; return the messenger's id of the sent message, if it has one.

        Raise TransientDeliveryError or PermanentDeliveryError when it did not go out, or
        DeliveryDeferred when the channel delivers it later by itself; any other exception is
        treated as transient.
        """
        ...


@dataclass(frozen=True)
class DeliveryPolicy:
    """The worker's knobs (from Settings)."""

    batch_size: int = 50
    max_attempts: int = 12
    lease: timedelta = timedelta(seconds=60)
    backoff: timedelta = timedelta(seconds=1)
    backoff_max: timedelta = timedelta(minutes=10)
    poll_interval: float = 1.0
    # Sends in flight at once per worker (each to a different chat).
    concurrency: int = 8

    @property
    def send_timeout(self) -> float:
        """Longest wait for one send. A send starts only while at least two of these are left
        of the lease, so a live worker never sends a row another worker may have reclaimed."""
        return self.lease.total_seconds() / 4


def backoff_delay(policy: DeliveryPolicy, attempt: int, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, …): exponential, capped,
    with "equal jitter" (half fixed, half random) so a burst of failures does not retry in step.
    """
    ceiling = min(
        policy.backoff_max.total_seconds(),
        policy.backoff.total_seconds() * 2.0 ** min(attempt - 1, 60),
    )
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


Publish = Callable[[Effects], Awaitable[None]]


class OutboxWorker:
    """Claims due outbox rows and delivers them through the sender registered for their channel.

    `senders` is read on every pass, so a channel may register its sender once it is connected;
    rows of a channel without a sender stay pending (and are reported once in the log).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        senders: Mapping[str, Sender],
        clock: Clock,
        policy: DeliveryPolicy | None = None,
        *,
        wake: asyncio.Event | None = None,
        publish: Publish | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.sessions = sessions
        self.senders = senders
        self.clock = clock
        self.policy = policy or DeliveryPolicy()
        self.wake = wake or asyncio.Event()
        self.publish = publish
        self.rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._warned_channels: set[str] = set()
        self._next_orphan_check = 0.0
        self._marks: list[_Mark] = []
        self._marking: asyncio.Task[None] | None = None

    # --- running ------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the delivery loop as a background task."""
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="outbox-worker")

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the sends in flight (up to `grace` seconds), hand back the rest, and stop."""
        self._stopping = True
        self.wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            # The rows it holds stay `sending` until their lease runs out, then go out again.
            log.warning("outbox worker did not stop within %.0fs; cancelling it", grace)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._marking is not None:
            # Sends that went out are recorded even if the loop was cancelled waiting for them.
            await asyncio.gather(self._marking, return_exceptions=True)

    async def run(self) -> None:
        """Deliver until stopped: at once when woken, else every poll interval."""
        while not self._stopping:
            try:
                busy = await self.run_once() > 0
            except Exception as exc:
                # An outage is logged once, by whoever watches the database; the worker tries
                # again each poll and delivers once it is back.
                if not is_unavailable(exc):
                    log.exception("outbox pass failed; retrying in %.1fs",
                                  self.policy.poll_interval)
                busy = False
            if busy or self._stopping:
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), self.policy.poll_interval)
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """Claim one batch of due rows and deliver it; returns how many rows were claimed."""
        self.wake.clear()  # a wake-up from now on means more work: the loop goes round again
        claimed, token, until = await self.claim()
        if not claimed:
            await self._report_unsendable()
            return 0
        await self.deliver(claimed, token, until)
        return len(claimed)

    async def drain(self) -> int:
        """Deliver until nothing is due; returns how many rows were claimed in all."""
        total = 0
        while (n := await self.run_once()) > 0:
            total += n
        return total

    # --- claiming -----------------------------------------------------------------------------

    async def claim(self) -> tuple[list[OutboxItem], str, datetime]:
        """Mark a batch of due rows `sending` under a lease and a fresh claim token (committed).

        Due: pending and `next_attempt_at` has come, or `sending` with an expired lease (its
        worker died). On PostgreSQL concurrent workers skip each other's rows (SKIP LOCKED).
        """
        now = self.clock()
        token = uuid.uuid4().hex
        until = now + self.policy.lease
        channels = sorted(self.senders)
        if not channels:
            return [], token, until
        row, earlier = OutboxMessage, aliased(OutboxMessage)
        due = or_(
            and_(row.status == "pending", row.next_attempt_at <= now),
            and_(row.status == "sending", row.claimed_until <= now),
        )
        # Held back by an older unsent row to the same chat, whatever its state: also one that
        # a concurrent worker has locked but not yet marked (its claim is not visible here).
        held_back = exists().where(
            earlier.channel == row.channel,
            earlier.recipient == row.recipient,
            earlier.status.in_(("pending", "sending")),
            earlier.id < row.id,
        )
        async with self.sessions.begin() as session:
            rows = list(await session.scalars(
                select(row)
                .where(row.channel.in_(channels), due, ~held_back)
                .order_by(row.id)
                .limit(self.policy.batch_size)
                .with_for_update(skip_locked=True, of=row)
            ))
            for r in rows:
                if r.status == "sending":
                    log.warning(
                        "outbox %d: its worker stopped mid-delivery (lease expired); sending it "
                        "again - if the first send had reached %s, the customer gets it twice",
                        r.id, r.channel,
                    )
            if rows:
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_([r.id for r in rows]))
                    .values(status="sending", claimed_until=until, claim_token=token)
                    .execution_options(synchronize_session=False)
                )
        return [_item(r) for r in rows], token, until

    # --- delivering ---------------------------------------------------------------------------

    async def deliver(self, items: Sequence[OutboxItem], token: str, until: datetime) -> None:
        """Send claimed items (each to a different chat) concurrently."""
        limit = asyncio.Semaphore(self.policy.concurrency)
        margin = timedelta(seconds=2 * self.policy.send_timeout)

        async def one(item: OutboxItem) -> None:
            async with limit:
                if self._stopping or self.clock() + margin > until:
                    await self._release([item], token)
                else:
                    await self._attempt(item, token)

        results = await asyncio.gather(*(one(i) for i in items), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            # Typically the database: the rows stay `sending` and go out again after the lease.
            raise errors[0]

    async def _attempt(self, item: OutboxItem, token: str) -> None:
        sender = self.senders.get(item.channel)
        if sender is None:  # unregistered since the claim
            await self._release([item], token)
            return
        try:
            external_id = await asyncio.wait_for(sender.send(item), self.policy.send_timeout)
        except TransientDeliveryError as exc:
            await self._retry(item, token, exc.reason, exc.retry_after)
        except PermanentDeliveryError as exc:
            await self._fail(item, token, exc.reason)
        except DeliveryDeferred as exc:
            await self._defer(item, token, exc)
        except TimeoutError:
            await self._retry(
                item, token,
                f"no answer within {self.policy.send_timeout:.0f}s (it may have arrived)", None,
            )
        except Exception as exc:  # a sender bug must not stop delivery of everything else
            log.exception("outbox %d: unexpected error from the %s sender", item.id, item.channel)
            await self._retry(item, token, f"{type(exc).__name__}: {exc}", None)
        else:
            await self._mark_sent(item, token, external_id)

    async def _mark_sent(self, item: OutboxItem, token: str, external_id: str | None) -> None:
        """Record `sent` in the next group commit: sends that finish while one commit runs
        share the following one, so marking keeps up with many sends in flight and a sent row
        waits for its mark at most about two commits."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._marks.append(_Mark(item, token, external_id, done))
        if self._marking is None or self._marking.done():
            self._marking = asyncio.create_task(self._write_marks(), name="outbox-marks")
        if not await done:
            log.warning("outbox %d was sent, but another worker had reclaimed it after this "
                        "worker's lease ran out: the customer may get it twice", item.id)

    async def _write_marks(self) -> None:
        while self._marks:
            batch, self._marks = self._marks, []
            try:
                now = self.clock()
                async with self.sessions.begin() as session:
                    written = [
                        await _finish(
                            session, m.item, m.token, status="sent", attempts=m.item.attempt,
                            sent_at=now, external_message_id=m.external_id,
                        )
                        for m in batch
                    ]
            except Exception as exc:
                for m in batch:
                    if not m.done.done():
                        m.done.set_exception(exc)
                continue
            for m, ok in zip(batch, written, strict=True):
                if not m.done.done():
                    m.done.set_result(ok)

    async def _retry(
        self, item: OutboxItem, token: str, reason: str, retry_after: float | None
    ) -> None:
        if item.attempt >= self.policy.max_attempts:
            await self._fail(item, token, f"gave up after {item.attempt} attempts: {reason}")
            return
        if retry_after is not None:
            # The messenger said how long to wait: at least that, plus a little spread.
            delay = retry_after + self.rng.uniform(0, min(1.0, retry_after / 10))
        else:
            delay = backoff_delay(self.policy, item.attempt, self.rng)
        log.info("outbox %d: attempt %d failed (%s); retrying in %.1fs",
                 item.id, item.attempt, reason, delay)
        async with self.sessions.begin() as session:
            await _finish(
                session, item, token, status="pending", attempts=item.attempt,
                next_attempt_at=self.clock() + timedelta(seconds=delay), last_error=reason[:2000],
            )

    async def _defer(self, item: OutboxItem, token: str, exc: DeliveryDeferred) -> None:
        """Back to `pending` until `retry_after`, unless the channel has meanwhile marked the
        row sent itself (then this claim no longer holds it and nothing is written)."""
        async with self.sessions.begin() as session:
            await _finish(
                session, item, token, status="pending", attempts=item.attempt - 1,
                next_attempt_at=self.clock() + timedelta(seconds=exc.retry_after),
                last_error=exc.reason[:2000],
            )

    async def _fail(self, item: OutboxItem, token: str, reason: str) -> None:
        log.warning("outbox %d to %s/%s failed for good: %s",
                    item.id, item.channel, item.recipient, reason)
        effects = Effects()
        now = self.clock()
        async with self.sessions.begin() as session:
            if not await _finish(
                session, item, token, status="failed", attempts=item.attempt,
                last_error=reason[:2000],
            ):
                return
            conv = (
                await session.get(Conversation, item.conversation_id)
                if item.conversation_id is not None else None
            )
            touchpoints.record(
                session, conv, "delivery_failed", actor="system", channel=item.channel, at=now,
                message_id=item.message_id,
                details={"reason": reason, "outbox_id": item.id, "attempts": item.attempt},
            )
            if conv is not None:
                event = Event(
                    "delivery_failed", conv.id,
                    agent_ids=(conv.assigned_agent_id,) if conv.assigned_agent_id else (),
                    data={"reason": reason, "message_id": item.message_id},
                )
                for glanced in await with_glances(session, [event]):
                    effects.emit(glanced)
        if self.publish is not None and effects.events:
            await self.publish(effects)

    async def _release(self, items: Sequence[OutboxItem], token: str) -> None:
        """Hand claimed rows back untried (the worker is stopping or its lease runs out)."""
        if not items:
            return
        async with self.sessions.begin() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([i.id for i in items]),
                       OutboxMessage.claim_token == token, OutboxMessage.status == "sending")
                .values(status="pending", claimed_until=None, claim_token=None)
                .execution_options(synchronize_session=False)
            )

    async def _report_unsendable(self) -> None:
        """Warn once per channel about pending rows no registered sender can deliver."""
        if time.monotonic() < self._next_orphan_check:
            return
        self._next_orphan_check = time.monotonic() + 60
        async with self.sessions() as session:
            channels = set(await session.scalars(
                select(OutboxMessage.channel).where(
                    OutboxMessage.status == "pending",
                    OutboxMessage.channel.not_in(sorted(self.senders)),
                ).distinct()
            ))
        for channel in sorted(channels - self._warned_channels):
            log.warning("outbox has messages for channel %r but no sender for it runs in this "
                        "process; they stay pending until one does", channel)
        self._warned_channels |= channels


@dataclass
class _Mark:
    """A sent row waiting for its `sent` mark to be committed."""

    item: OutboxItem
    token: str
    external_id: str | None
    done: asyncio.Future[bool]


def _item(row: OutboxMessage) -> OutboxItem:
    buttons = tuple(Button(b["title"], b["payload"]) for b in row.buttons or ())
    return OutboxItem(
        id=row.id, channel=row.channel, recipient=row.recipient, text=row.text,
        buttons=buttons, attempt=row.attempts + 1, conversation_id=row.conversation_id,
        message_id=row.message_id, created_at=row.created_at,
    )


async def _finish(session: AsyncSession, item: OutboxItem, token: str, **values: Any) -> bool:
    """Record an attempt's outcome if this claim still holds the row (False: it was reclaimed)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == item.id, OutboxMessage.claim_token == token,
               OutboxMessage.status == "sending")
        .values(claimed_until=None, claim_token=None, **values)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount == 1
