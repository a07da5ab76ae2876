"""The aiohttp application factory: routes, middlewares and the resources they need."""

from __future__ import annotations

import logging
import os

from aiohttp import web

from carebot.channels.telegram import WEBHOOK_PATH
from carebot.db.availability import RETRY_AFTER_SECONDS
from carebot.domain.clock import Clock, system_clock
from carebot.matching.faq_index import MatcherBuilder
from carebot.settings import Settings
from carebot.web import (
    agents,
    audit,
    canned,
    codes,
    console,
    customers,
    http_channel,
    login,
    pages,
    telegram_webhook,
    web_chat,
    web_chat_admin,
)
from carebot.web import stats as stats_api
from carebot.web.auth import auth_middleware
from carebot.web.errors import error_middleware
from carebot.web.events import events_ws, track_sockets
from carebot.web.keys import (
    CLOCK,
    DATABASE,
    FAQ_INDEX,
    LOGIN_LIMITER,
    MATCHER_BUILDER,
    SETTINGS,
)
from carebot.web.login_limits import LoginLimiter
from carebot.web.logs import quiet_malformed_requests, redact_secrets, settings_secrets
from carebot.web.openapi import openapi_json
from carebot.web.presence import presence_ctx
from carebot.web.resources import (
    database_answers,
    database_ctx,
    events_ctx,
    inbound_ctx,
    knowledge_ctx,
    timers_ctx,
)
from carebot.web.shutdown import inflight_middleware, track_shutdown
from carebot.web.workers import DELIVERY_CONTEXTS

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
    redact_secrets(settings_secrets(settings))
    quiet_malformed_requests()
    app = web.Application(
        middlewares=[inflight_middleware, error_middleware, auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[LOGIN_LIMITER] = LoginLimiter(settings.login_max_failures)
    if matcher_builder is not None:
        app[MATCHER_BUILDER] = matcher_builder
    app.cleanup_ctx.extend((
        database_ctx, events_ctx, knowledge_ctx, inbound_ctx, timers_ctx, presence_ctx,
        *DELIVERY_CONTEXTS,
    ))
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/api/v1/channels/http/messages", http_channel.post_message)
    app.router.add_post(WEBHOOK_PATH, telegram_webhook.webhook)
    console.add_routes(app)
    agents.add_routes(app)
    canned.add_routes(app)
    web_chat.add_routes(app)
    web_chat_admin.add_routes(app)
    codes.add_routes(app)
    audit.add_routes(app)
    customers.add_routes(app)
    stats_api.add_routes(app)
    app.router.add_get("/api/v1/events", events_ws)
    track_sockets(app)
    track_shutdown(app)
    app.router.add_get("/api/v1/openapi.json", openapi_json)
    login.add_routes(app)
    pages.add_routes(app)
    return app


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: the service is up and the database answers (within a second).

    The database's error text goes to the log (once per outage), never to the caller."""
    # During an outage the watcher keeps probing; callers get the answer it has at once.
    if not request.app[DATABASE].up or not await database_answers(request.app):
        response = web.json_response(
            {"status": "unavailable", "database": "unreachable"}, status=503)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    index = request.app[FAQ_INDEX]
    matcher = index.matcher
    cache = index.cache_stats()
    return web.json_response({
        "status": "ok",
        "faq_entries": len(index.docs_by_id),
        # Operators see at a glance whether the embedding model loaded (else: lexical only).
        "sentence_embeddings": matcher is not None and matcher.uses_embeddings,
        # And whether questions in other languages get the multilingual encoder.
        "multilingual_matching": matcher is not None and matcher.multilingual,
        # Per process (with --workers N each has its own cache): the process id says which.
        "process": os.getpid(),
        "match_cache": {"hits": cache.hits, "misses": cache.misses, "size": cache.size,
                        "capacity": cache.capacity},
    })
