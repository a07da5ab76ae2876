"""The aiohttp application factory: routes, middlewares and the resources they need."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web
from sqlalchemy import text

from carebot.channels.telegram import WEBHOOK_PATH
from carebot.db.engine import make_engine, make_sessionmaker
from carebot.domain.clock import Clock, system_clock
from carebot.domain.hub import EventHub
from carebot.matching.embedding_model import load_encoder
from carebot.matching.faq_index import FaqIndex, MatcherBuilder
from carebot.matching.knowledge import enabled_docs, knowledge_version
from carebot.matching.matcher import build_matcher
from carebot.routing.inbound_batch import InboundBatcher
from carebot.routing.router import Router, RoutingPolicy
from carebot.routing.surveys import SurveyPolicy
from carebot.settings import Settings
from carebot.web import console, http_channel, telegram_webhook
from carebot.web import stats as stats_api
from carebot.web.auth import auth_middleware
from carebot.web.errors import error_middleware
from carebot.web.events import events_ws
from carebot.web.fanout import PgNotifyHub, asyncpg_dsn
from carebot.web.keys import (
    CLOCK,
    ENGINE,
    EVENT_HUB,
    FAQ_INDEX,
    INBOUND,
    MATCHER_BUILDER,
    ROUTER,
    SESSIONS,
    SETTINGS,
)
from carebot.web.openapi import openapi_json
from carebot.web.timers import run_timers
from carebot.web.workers import http_callback_ctx, outbox_ctx, telegram_ctx

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    clock: Clock = system_clock,
    *,
    matcher_builder: MatcherBuilder | None = None,
) -> web.Application:
    """Build the service: HTTP routes plus database, knowledge index and workers as cleanup_ctx.

    `matcher_builder` turns FAQ entries into a matcher (default: `build_matcher` with the
    sentence encoder `settings.embedding_model` names, loaded at startup); tests pass one
    that reuses matchers already built for the same entries, since a build takes seconds.
    """
    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=settings.max_body_bytes
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    if matcher_builder is not None:
        app[MATCHER_BUILDER] = matcher_builder
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_events)
    app.cleanup_ctx.append(_knowledge)
    app.cleanup_ctx.append(_inbound)
    app.cleanup_ctx.append(_timers)
    # Channels before the outbox: on shutdown the worker stops before the senders disconnect.
    app.cleanup_ctx.append(telegram_ctx)
    app.cleanup_ctx.append(http_callback_ctx)
    app.cleanup_ctx.append(outbox_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/api/v1/channels/http/messages", http_channel.post_message)
    app.router.add_post(WEBHOOK_PATH, telegram_webhook.webhook)
    console.add_routes(app)
    stats_api.add_routes(app)
    app.router.add_get("/api/v1/events", events_ws)
    app.router.add_get("/api/v1/openapi.json", openapi_json)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    app[ENGINE] = engine
    app[SESSIONS] = make_sessionmaker(engine)
    yield
    await engine.dispose()


async def _events(app: web.Application) -> AsyncIterator[None]:
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


async def _timers(app: web.Application) -> AsyncIterator[None]:
    if not app[SETTINGS].run_timers:
        yield
        return
    task = asyncio.create_task(run_timers(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _knowledge(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    builder = app.get(MATCHER_BUILDER)
    if builder is None:
        # Reading ~90 MB of weights: off the event loop, once per process.
        encoder = await asyncio.to_thread(
            load_encoder, settings.embedding_model, settings.embedding_precision,
            settings.embedding_threads,
        )
        builder = functools.partial(build_matcher, encoder=encoder)
    index = FaqIndex(
        builder,
        cache_size=settings.match_cache_size,
        embedding_queue=settings.match_embedding_queue,
    )
    app[FAQ_INDEX] = index
    version = await _refresh_index(app, None)
    app[ROUTER] = Router(
        app[SESSIONS],
        index,
        RoutingPolicy(
            answer_threshold=settings.answer_threshold,
            suggest_threshold=settings.suggest_threshold,
            max_suggestions=settings.max_suggestions,
            max_failed_bot_turns=settings.max_failed_bot_turns,
            reopen_window=timedelta(hours=settings.reopen_window_hours),
        ),
        app[CLOCK],
        SurveyPolicy(
            channels=frozenset(c.strip() for c in settings.survey_channels.split(",") if c.strip()),
            delay=timedelta(seconds=settings.survey_delay_seconds),
            cooldown=timedelta(days=settings.survey_cooldown_days),
            expiry=timedelta(hours=settings.survey_expiry_hours),
            ces_enabled=settings.survey_ces,
            comment_enabled=settings.survey_comment,
            csat_text=settings.survey_csat_text,
            ces_text=settings.survey_ces_text,
            comment_text=settings.survey_comment_text,
            thanks_text=settings.survey_thanks_text,
        ),
    )
    task = asyncio.create_task(_watch_knowledge(app, version))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    stats = index.cache_stats()
    log.info("match cache: %d hits, %d misses (%.1f%% hit rate), %d of %d entries used",
             stats.hits, stats.misses, 100 * stats.hit_rate, stats.size, stats.capacity)


async def _inbound(app: web.Application) -> AsyncIterator[None]:
    # One writer per process commits concurrent inbound messages together (group commit).
    hub = app[EVENT_HUB]
    batcher = InboundBatcher(
        app[ROUTER], app[ENGINE], publish=hub.publish,
        sqlite_synchronous=app[SETTINGS].sqlite_synchronous,
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


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: the service is up and the database answers."""
    try:
        async with request.app[SESSIONS]() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # the point is to report any database failure
        return web.json_response({"status": "error", "database": str(exc)[:200]}, status=503)
    index = request.app[FAQ_INDEX]
    matcher = index.matcher
    cache = index.cache_stats()
    return web.json_response({
        "status": "ok",
        "faq_entries": len(index.docs_by_id),
        # Operators see at a glance whether the embedding model loaded (else: lexical only).
        "sentence_embeddings": matcher is not None and matcher.uses_embeddings,
        # Per process (with --workers N each has its own cache): the process id says which.
        "process": os.getpid(),
        "match_cache": {"hits": cache.hits, "misses": cache.misses, "size": cache.size,
                        "capacity": cache.capacity},
    })
