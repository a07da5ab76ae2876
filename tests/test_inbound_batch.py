"""Group commit of inbound messages: a batch must behave exactly like its messages one by one."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from carebot.db.models import Contact, Conversation, Message, Touchpoint
from carebot.domain.clock import ManualClock
from carebot.domain.events import Effects
from carebot.domain.messages import InboundMessage, RouteResult
from carebot.matching.faq_index import FaqIndex
from carebot.matching.knowledge import load_knowledge
from carebot.routing import batch as batch_module
from carebot.routing.batch import BatchContext, DuplicateIdConflict
from carebot.routing.decision import Knowledge
from carebot.routing.pipeline import InboundBatcher
from carebot.routing.policy import Policy
from carebot.routing.smalltalk import load_small_talk
from carebot.settings import Settings
from tests.conftest import KNOWLEDGE
from tests.helpers import MATCHERS

pytestmark = pytest.mark.usefixtures("starter_kb")

Step = tuple[str, str]  # ("say", text) or ("press", payload)


@pytest.fixture(scope="module")
def index() -> FaqIndex:
    """The starter knowledge base's index, built once: building a matcher takes seconds."""
    built = FaqIndex(MATCHERS)
    asyncio.run(built.rebuild([d.doc for d in load_knowledge(KNOWLEDGE)]))
    return built


@pytest.fixture
async def batcher(
    engine: AsyncEngine, clock: ManualClock, index: FaqIndex
) -> AsyncIterator[InboundBatcher]:
    """The pipeline with the shipped policy (the defaults of `Settings`)."""
    small_talk = load_small_talk(KNOWLEDGE / "smalltalk")
    ctx = BatchContext(Policy.from_settings(Settings()),
                       lambda: Knowledge(index.docs_by_id, small_talk), clock, index.match_sync)
    b = InboundBatcher(ctx, index, engine)
    await b.start()
    yield b
    await b.stop()


def msg(user: str, mid: str, step: Step) -> InboundMessage:
    kind, value = step
    if kind == "say":
        return InboundMessage("http", user, mid, text=value, reply_inline=True)
    return InboundMessage("http", user, mid, payload=value, reply_inline=True)


async def in_one_batch(
    batcher: InboundBatcher, msgs: list[InboundMessage]
) -> list[tuple[RouteResult, Effects] | BaseException]:
    """Submit concurrently: they queue up before the writer runs, so they share a batch."""
    return await asyncio.gather(*(batcher.submit(m) for m in msgs), return_exceptions=True)


def ok(outcome: tuple[RouteResult, Effects] | BaseException) -> RouteResult:
    assert not isinstance(outcome, BaseException), outcome
    return outcome[0]


async def inbound_count(sessions: async_sessionmaker[AsyncSession], user: str) -> int:
    async with sessions() as session:
        n = await session.scalar(
            select(func.count()).select_from(Message)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(Contact, Contact.id == Conversation.contact_id)
            .where(Contact.external_id == user, Message.direction == "in")
        )
    return int(n or 0)


def faq_of(batcher: InboundBatcher, question: str) -> str:
    return batcher.index.match_sync(question, 3)[0].faq_id


async def test_one_batch_of_several_customers_answers_each(
    batcher: InboundBatcher, sessions: async_sessionmaker[AsyncSession]
) -> None:
    users = [f"mixed-{n}" for n in range(5)]
    results = await in_one_batch(
        batcher, [msg(u, f"{u}-1", ("say", "where is my order")) for u in users]
    )
    conv_ids = {ok(r).conversation_id for r in results}
    assert len(conv_ids) == 5
    for r in results:
        assert "Did this help?" in ok(r).replies[0].text
    for u in users:
        assert await inbound_count(sessions, u) == 1
    async with sessions() as session:
        kinds = list(await session.scalars(
            select(Touchpoint.kind).where(Touchpoint.conversation_id.in_(conv_ids))
        ))
    assert sorted(kinds) == sorted(["message_in", "faq_answer"] * 5)


async def test_same_customer_twice_in_one_batch_is_applied_in_order(
    batcher: InboundBatcher, sessions: async_sessionmaker[AsyncSession]
) -> None:
    faq = faq_of(batcher, "where is my order")
    first, second = await in_one_batch(batcher, [
        msg("twice", "twice-1", ("say", "where is my order")),
        msg("twice", "twice-2", ("press", f"yes:{faq}")),
    ])
    assert ok(first).status == "bot"
    assert ok(second).status == "resolved"
    assert ok(first).conversation_id == ok(second).conversation_id
    async with sessions() as session:
        kinds = list(await session.scalars(
            select(Touchpoint.kind)
            .where(Touchpoint.conversation_id == ok(first).conversation_id)
            .order_by(Touchpoint.id)
        ))
    assert kinds == ["message_in", "faq_answer", "message_in", "faq_feedback", "resolved",
                     "survey_sent"]


async def test_duplicates_within_and_across_batches_are_stored_once(
    batcher: InboundBatcher, sessions: async_sessionmaker[AsyncSession]
) -> None:
    m = msg("dupe", "dupe-1", ("say", "where is my order"))
    first, again = await in_one_batch(batcher, [m, m])
    assert not ok(first).duplicate
    assert ok(again).duplicate
    assert ok(again).replies == ok(first).replies
    later = ok(await batcher.submit(m))
    assert later.duplicate
    assert later.replies == ok(first).replies
    assert later.conversation_id == ok(first).conversation_id
    assert await inbound_count(sessions, "dupe") == 1


async def test_a_reused_id_from_another_user_fails_only_that_message(
    batcher: InboundBatcher, sessions: async_sessionmaker[AsyncSession]
) -> None:
    good, thief, other = await in_one_batch(batcher, [
        msg("owner", "shared-1", ("say", "where is my order")),
        msg("thief", "shared-1", ("say", "where is my order")),
        msg("bystander", "by-1", ("say", "how do I return an item")),
    ])
    assert not ok(good).duplicate
    assert isinstance(thief, DuplicateIdConflict)
    assert ok(other).replies
    later = await in_one_batch(batcher, [msg("thief", "shared-1", ("say", "hi"))])
    assert isinstance(later[0], DuplicateIdConflict)
    assert await inbound_count(sessions, "thief") == 0


async def test_a_failing_batch_is_written_one_by_one_and_loses_nothing(
    batcher: InboundBatcher, sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_run = batch_module.Batch.run

    def run(self: batch_module.Batch, conn: Any) -> Any:
        if any(p.msg.user_id == "poison" for p in self.batch):
            raise RuntimeError("this message cannot be written")
        return real_run(self, conn)

    monkeypatch.setattr(batch_module.Batch, "run", run)
    results = await in_one_batch(batcher, [
        msg("fine-1", "fine-1-1", ("say", "where is my order")),
        msg("poison", "poison-1", ("say", "where is my order")),
        msg("fine-2", "fine-2-1", ("say", "how do I return an item")),
    ])
    assert isinstance(results[1], RuntimeError)
    assert ok(results[0]).replies and ok(results[2]).replies
    assert await inbound_count(sessions, "fine-1") == 1
    assert await inbound_count(sessions, "fine-2") == 1
    assert await inbound_count(sessions, "poison") == 0
    # The next message of a customer whose batch failed comes after the retried one.
    later = ok(await batcher.submit(msg("fine-1", "fine-1-2", ("say", "thanks"))))
    assert later.status == "resolved"


# --- a batch is its messages one by one, only faster ---------------------------------------

SCENARIOS: dict[str, list[Step]] = {
    "answer-yes": [("say", "where is my order"), ("press", "yes:{faq}")],
    "answer-no": [("say", "where is my order"), ("press", "no:{faq}")],
    "typed-yes": [("say", "where is my order"), ("say", "thanks")],
    "person": [("say", "I want to talk to a person"), ("say", "hello? anyone?")],
    "reopen": [("say", "where is my order"), ("press", "yes:{faq}"),
               ("say", "how do I return an item")],
    "survey-score": [("say", "where is my order"), ("press", "yes:{faq}"), ("say", "5")],
    "no-match": [("say", "the blue elephant sings at midnight"),
                 ("say", "purple turnips dance on the moon")],
    "commands": [("say", "/start"), ("say", "/help"), ("press", "faq:{faq}")],
    "handoff-button": [("press", "handoff"), ("press", "yes:{faq}")],
}


def _normal(text: str) -> str:
    # Survey ids and queue positions depend on what else is in the database.
    return re.sub(r"\d+", "#", text)


async def _trace(
    sessions: async_sessionmaker[AsyncSession], conv_ids: set[int]
) -> tuple[list[Any], list[Any]]:
    async with sessions() as session:
        tps = list(await session.scalars(
            select(Touchpoint).where(Touchpoint.conversation_id.in_(conv_ids))
            .order_by(Touchpoint.id)
        ))
        convs = list(await session.scalars(
            select(Conversation).where(Conversation.id.in_(conv_ids)).order_by(Conversation.id)
        ))
    touch = [
        (t.kind, t.actor, t.faq_id, None if t.score is None else round(t.score, 6), t.effort,
         t.wait_ms, t.outcome, _normal(str(t.details)), t.message_id is not None)
        for t in tps
    ]
    summary = [
        (c.status, c.customer_messages, c.bot_answers, c.handoffs, c.reopen_count,
         c.effort_score, c.failed_bot_turns, c.pending_faq_id, c.resolved_by,
         c.first_bot_response_ms, c.queued_at is not None, c.last_bot_answer_at is not None,
         c.resolved_at is not None)
        for c in convs
    ]
    return touch, summary


def _replies(results: list[RouteResult]) -> list[Any]:
    return [(r.status, r.duplicate, [(_normal(m.text), [(b.title, _normal(b.payload))
                                                       for b in m.buttons])
                                     for m in r.replies])
            for r in results]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_one_batch_decides_like_one_message_at_a_time(
    name: str, batcher: InboundBatcher, sessions: async_sessionmaker[AsyncSession],
) -> None:
    faq = faq_of(batcher, "where is my order")
    steps = [(k, v.format(faq=faq)) for k, v in SCENARIOS[name]]

    slow = [ok(await batcher.submit(msg("slow", f"slow-{i}", s))) for i, s in enumerate(steps)]
    fast = [ok(o) for o in await in_one_batch(
        batcher, [msg("fast", f"fast-{i}", s) for i, s in enumerate(steps)]
    )]

    assert _replies(fast) == _replies(slow)
    assert await _trace(sessions, {r.conversation_id for r in fast}) == await _trace(
        sessions, {r.conversation_id for r in slow}
    )


async def test_a_batch_that_loses_a_deadlock_runs_again_whole(
    batcher: InboundBatcher, sessions: async_sessionmaker[AsyncSession], database_url: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("deadlocks are PostgreSQL's (SQLite has one writer)")
    real_run = batch_module.Batch.run
    victims: list[int] = []

    def run(self: batch_module.Batch, conn: Any) -> Any:
        if not victims:  # chosen as the deadlock victim once, as PostgreSQL does
            victims.append(len(self.batch))
            conn.exec_driver_sql(
                "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; "
                "END $$")
        return real_run(self, conn)

    monkeypatch.setattr(batch_module.Batch, "run", run)
    caplog.set_level("INFO")
    results = await in_one_batch(batcher, [
        msg(f"dl-{n}", f"dl-{n}-1", ("say", "where is my order")) for n in range(4)])
    assert all(ok(r).replies for r in results)
    assert victims == [4]
    for n in range(4):
        assert await inbound_count(sessions, f"dl-{n}") == 1
    assert any("lost a deadlock" in r.getMessage() for r in caplog.records)
    assert not any("one by one" in r.getMessage() for r in caplog.records)
