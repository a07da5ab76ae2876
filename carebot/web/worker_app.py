"""What `carebot worker` runs: outbox delivery, and Telegram polling in polling mode.

The worker has no HTTP listener; its resources are the cleanup contexts of an aiohttp app that
is never served, started and stopped by `running`. Delivery needs the database, the event hub
(a failed delivery is announced to the agents, across processes on PostgreSQL), the channels'
senders and the outbox worker. Only a worker that polls Telegram also routes what it fetches,
and so loads the knowledge index (with the sentence encoder) and starts the inbound writer.
The HTTP routes, pages and timers stay with `carebot serve`. The contexts are the ones
`create_app` uses, so both kinds of process build each resource one way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from carebot.domain.clock import Clock, system_clock
from carebot.matching.faq_index import MatcherBuilder
from carebot.settings import Settings
from carebot.web.keys import CLOCK, MATCHER_BUILDER, SETTINGS
from carebot.web.logs import redact_secrets, settings_secrets
from carebot.web.resources import database_ctx, events_ctx, inbound_ctx, knowledge_ctx
from carebot.web.workers import DELIVERY_CONTEXTS, polls_telegram


def create_worker_app(
    settings: Settings,
    clock: Clock = system_clock,
    *,
    matcher_builder: MatcherBuilder | None = None,
) -> web.Application:
    """The worker's resources as cleanup contexts (the worker always delivers: run_worker on).

    `matcher_builder` is used as in `create_app`, and only when the worker polls Telegram.
    """
    settings = dataclasses.replace(settings, run_worker=True)
    redact_secrets(settings_secrets(settings))
    app = web.Application()
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(events_ctx)
    if polls_telegram(settings):
        if matcher_builder is not None:
            app[MATCHER_BUILDER] = matcher_builder
        app.cleanup_ctx.append(knowledge_ctx)
        app.cleanup_ctx.append(inbound_ctx)
    app.cleanup_ctx.extend(DELIVERY_CONTEXTS)
    return app


@asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[web.Application]:
    """Start the app's cleanup contexts without a site (no HTTP listener); stop them on exit."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        yield app
    finally:
        await runner.cleanup()
