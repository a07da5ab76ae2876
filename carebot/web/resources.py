"""The service's resources as aiohttp cleanup contexts: each starts one thing and stops it.

`create_app` (the web process) and `create_worker_app` (`carebot worker`) both build their
resources from these, so each resource is built one way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.orm import configure_mappers

from carebot.db.availability import Availability
from carebot.db.engine import make_engine, make_sessionmaker, make_write_sessionmaker
from carebot.matching.embedding_model import load_encoder, load_multilingual_encoder
from carebot.matching.faq_index import FaqIndex
from carebot.matching.knowledge import enabled_docs, knowledge_version
from carebot.matching.language_detect import LanguageDetector
from carebot.matching.matcher import build_matcher
from carebot.routing.batch import BatchContext
from carebot.routing.decision import Knowledge
from carebot.routing.pipeline import InboundBatcher
from carebot.routing.policy import Policy
from carebot.routing.smalltalk import load_small_talk
from carebot.web.fanout import PgNotifyHub, asyncpg_dsn
from carebot.web.hub import EventHub
from carebot.web.keys import (
    CLOCK,
    DATABASE,
    ENGINE,
    EVENT_HUB,
    FAQ_INDEX,
    INBOUND,
    MATCHER_BUILDER,
    POLICY,
    SESSIONS,
    SETTINGS,
    WRITES,
)
from carebot.web.timers import run_timers, timer_pass

log = logging.getLogger(__name__)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """The engine and session factories; while the database is away, a watcher notices (and
    logs once) when it is back."""
    settings = app[SETTINGS]
    # The ORM's mappers are set up once per process, on first use unless asked: here, so the
    # first request after a start does not pay for it (and a mapping error stops the start).
    configure_mappers()
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous,
                         timeout=settings.db_timeout_seconds)
    app[DATABASE] = Availability()
    app[ENGINE] = engine
    app[SESSIONS] = make_sessionmaker(engine)
    app[WRITES] = make_write_sessionmaker(engine)
    watcher = asyncio.create_task(_watch_database(app))
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await engine.dispose()


HEALTH_TIMEOUT_SECONDS = 1.0


async def database_answers(app: web.Application) -> bool:
    """Whether `SELECT 1` comes back within a second; the outcome updates the availability.

    The probe runs as a task of its own and is not cancelled on time-out: cancelling a query
    on a hung server waits for that server too, and the caller must have its answer within
    the second."""
    probe = asyncio.create_task(_select_one(app))
    done, _ = await asyncio.wait({probe}, timeout=HEALTH_TIMEOUT_SECONDS)
    if not done:
        probe.add_done_callback(_consume)
        app[DATABASE].failed(TimeoutError("no answer to SELECT 1 within a second"))
        return False
    error = probe.exception()
    if error is not None:
        app[DATABASE].failed(error)
        return False
    app[DATABASE].succeeded()
    return True


async def _select_one(app: web.Application) -> None:
    async with app[SESSIONS]() as session:
        await session.execute(text("SELECT 1"))


def _consume(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a late failure of an abandoned probe is expected


async def _watch_database(app: web.Application) -> None:
    while True:
        await asyncio.sleep(1.0)
        if not app[DATABASE].up:
            await database_answers(app)


async def events_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.is_sqlite:
        app[EVENT_HUB] = EventHub()  # SQLite means one process: local fan-out is enough
        yield
        return
    hub = PgNotifyHub(app[ENGINE], asyncpg_dsn(settings.database_url))
    await hub.start()
    app[EVENT_HUB] = hub
    yield
    await hub.stop()


async def timers_ctx(app: web.Application) -> AsyncIterator[None]:
    if not app[SETTINGS].run_timers:
        yield
        return
    # The first pass before the service listens: a cold process spends a few hundred ms on
    # it (its statements are compiled on first use) holding the write transaction, which
    # answers waited behind; and what fell due while the service was down is handled now,
    # not an interval later.
    await timer_pass(app, retention=False)
    task = asyncio.create_task(run_timers(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def knowledge_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    builder = app.get(MATCHER_BUILDER)
    if builder is None:
        # Reading ~90 MB of weights: off the event loop, once per process.
        encoder = await asyncio.to_thread(
            load_encoder, settings.embedding_model, settings.embedding_precision,
            settings.embedding_threads,
        )
        multilingual = await asyncio.to_thread(
            load_multilingual_encoder, settings.multilingual_encoder
        )
        builder = functools.partial(build_matcher, encoder=encoder, multilingual=multilingual)
    index = FaqIndex(
        builder,
        cache_size=settings.match_cache_size,
        embedding_queue=settings.match_embedding_queue,
    )
    app[FAQ_INDEX] = index
    version = await _refresh_index(app, None)
    app[POLICY] = Policy.from_settings(settings)
    task = asyncio.create_task(_watch_knowledge(app, version))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    stats = index.cache_stats()
    log.info("match cache: %d hits, %d misses (%.1f%% hit rate), %d of %d entries used",
             stats.hits, stats.misses, 100 * stats.hit_rate, stats.size, stats.capacity)


async def inbound_ctx(app: web.Application) -> AsyncIterator[None]:
    # One writer per process commits concurrent inbound messages together (group commit).
    hub = app[EVENT_HUB]
    index = app[FAQ_INDEX]
    small_talk = load_small_talk(app[SETTINGS].knowledge_path / "smalltalk")
    detect = LanguageDetector(app[SETTINGS].language_list)
    await asyncio.to_thread(detect.load)
    ctx = BatchContext(
        app[POLICY],
        lambda: Knowledge(index.docs_by_id, small_talk),
        app[CLOCK],
        index.match_sync,
        detect=detect,
    )
    settings = app[SETTINGS]
    batcher = InboundBatcher(
        ctx, index, app[ENGINE], publish=hub.publish,
        sqlite_synchronous=settings.sqlite_synchronous,
        answer_within=None if settings.is_sqlite else settings.db_timeout_seconds,
    )
    await batcher.start()
    app[INBOUND] = batcher
    yield
    await batcher.stop()


async def _refresh_index(app: web.Application, seen: tuple[int, str] | None) -> tuple[int, str]:
    """Rebuild the matcher (off the event loop) when the stored knowledge base changed."""
    async with app[SESSIONS]() as session:
        version = await knowledge_version(session)
        if version == seen:
            return version
        docs = await enabled_docs(session)
    await app[FAQ_INDEX].rebuild(docs)
    if not docs:
        log.warning("the knowledge base is empty: every question will go to a person "
                    "(run `carebot kb import`)")
    else:
        log.info("knowledge base loaded: %d entries", len(docs))
    return version


async def _watch_knowledge(app: web.Application, version: tuple[int, str]) -> None:
    # Another process (`carebot kb import`) may change the knowledge base at any time.
    while True:
        await asyncio.sleep(app[SETTINGS].kb_refresh_seconds)
        try:
            version = await _refresh_index(app, version)
        except Exception:
            log.exception("could not refresh the knowledge base; keeping the current one")
