"""Background delivery in the app's lifetime: the channels' senders and the outbox worker.

All are `cleanup_ctx` entries, listed in that order (`DELIVERY_CONTEXTS`): the channels first,
so on shutdown the outbox worker stops (finishing its sends in flight) before the senders it
uses disconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from functools import partial

from aiohttp import web

from carebot.channels.http import CHANNEL as HTTP_CHANNEL
from carebot.channels.http_delivery import HttpCallbackSender
from carebot.channels.telegram import TelegramChannel, build_application
from carebot.delivery.outbox import DeliveryPolicy, OutboxWorker, Sender
from carebot.domain.language import LanguagePolicy
from carebot.domain.messages import OutboundMessage
from carebot.domain.redaction import Redactor
from carebot.domain.texts import load_texts
from carebot.settings import Settings
from carebot.web.keys import (
    CLOCK,
    INBOUND,
    OUTBOX_SENDERS,
    OUTBOX_WAKE,
    OUTBOX_WORKER,
    SESSIONS,
    SETTINGS,
    TELEGRAM,
)
from carebot.web.publish import publish_effects
from carebot.web.shutdown import WORKER_GRACE_SECONDS
from carebot.web.web_chat import web_chat_ctx

log = logging.getLogger(__name__)


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    """The outbox worker's policy from the settings."""
    return DeliveryPolicy(
        batch_size=settings.outbox_batch_size,
        max_attempts=settings.outbox_max_attempts,
        lease=timedelta(seconds=settings.outbox_lease_seconds),
        backoff=timedelta(seconds=settings.outbox_backoff_seconds),
        backoff_max=timedelta(seconds=settings.outbox_backoff_max_seconds),
        poll_interval=settings.outbox_poll_seconds,
    )


def outbox_senders(app: web.Application) -> dict[str, Sender]:
    """The app's sender registry (created on first use)."""
    if OUTBOX_SENDERS not in app:
        app[OUTBOX_SENDERS] = {}
    return app[OUTBOX_SENDERS]


def polls_telegram(settings: Settings) -> bool:
    """Whether this process polls Telegram for updates (and so must route them)."""
    return bool(settings.telegram_token) and settings.telegram_mode == "polling" and (
        settings.run_worker
    )


async def telegram_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect the Telegram bot when a token is set; poll for updates in polling mode.

    Routing updates needs the app's inbound writer; a process without one (`carebot worker`
    in webhook mode) only lends the outbox the Telegram sender.
    """
    settings = app[SETTINGS]
    if not settings.telegram_token:
        log.info("Telegram channel off: CAREBOT_TELEGRAM_TOKEN is not set")
        yield
        return
    poll = polls_telegram(settings)
    if settings.telegram_mode == "polling" and not settings.run_worker:
        log.info("Telegram polling is left to `carebot worker` (CAREBOT_RUN_WORKER is off)")
    inbound = app.get(INBOUND)
    channel = TelegramChannel(
        build_application(settings),
        route=inbound.submit if inbound is not None else None,
        publish=partial(publish_effects, app),
        sessions=app[SESSIONS],
        clock=app[CLOCK],
        senders=outbox_senders(app),
        poll=poll,
        redact=Redactor.parse(settings.redact_extra),
        localize=_localizer(settings),
    )
    app[TELEGRAM] = channel
    await channel.start()
    yield
    await channel.stop(grace=WORKER_GRACE_SECONDS)


def _localizer(settings: Settings) -> Callable[[OutboundMessage, str | None], OutboundMessage]:
    """Render a bot message in a language as the channel names it ("de-AT"), else the
    default language."""
    policy = LanguagePolicy(settings.default_language, settings.language_list)
    texts = load_texts(settings.language_list)

    def localize(message: OutboundMessage, language: str | None) -> OutboundMessage:
        return texts.localize(message, policy.normalise(language) or policy.default)
    return localize


async def http_callback_ctx(app: web.Application) -> AsyncIterator[None]:
    """Deliver the HTTP channel's queued messages to its bridge when a callback URL is set."""
    settings = app[SETTINGS]
    if not settings.http_channel_callback_url:
        yield
        return
    sender = HttpCallbackSender(
        settings.http_channel_callback_url, settings.http_channel_secret
    )
    await sender.start()
    outbox_senders(app)[HTTP_CHANNEL] = sender
    yield
    outbox_senders(app).pop(HTTP_CHANNEL, None)
    await sender.close()


async def outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the outbox worker in this process unless CAREBOT_RUN_WORKER is off."""
    settings = app[SETTINGS]
    if not settings.run_worker:
        log.info("outbox worker off in this process (CAREBOT_RUN_WORKER is off): run "
                 "`carebot worker` to deliver queued messages")
        yield
        return
    wake = asyncio.Event()
    app[OUTBOX_WAKE] = wake
    worker = OutboxWorker(
        app[SESSIONS], outbox_senders(app), app[CLOCK], delivery_policy(settings),
        wake=wake, publish=partial(publish_effects, app),
    )
    app[OUTBOX_WORKER] = worker
    worker.start()
    yield
    await worker.stop(grace=WORKER_GRACE_SECONDS)


# Channels before the outbox: on shutdown the worker stops before the senders disconnect.
DELIVERY_CONTEXTS: tuple[Callable[[web.Application], AsyncIterator[None]], ...] = (
    telegram_ctx, http_callback_ctx, web_chat_ctx, outbox_ctx,
)
