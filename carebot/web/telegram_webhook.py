"""The Telegram webhook route: Telegram posts one update, checked against the secret token."""

from __future__ import annotations

from aiohttp import web

from carebot.channels.telegram import SECRET_HEADER
from carebot.web.errors import ApiError, channel_input_errors, read_json_object
from carebot.web.keys import SETTINGS, TELEGRAM


async def webhook(request: web.Request) -> web.Response:
    """POST /telegram/webhook: one update from Telegram, checked against the secret token.

    200 only once the update is committed; any other answer makes Telegram send it again.
    """
    settings = request.app[SETTINGS]
    channel = request.app.get(TELEGRAM)
    if channel is None or settings.telegram_mode != "webhook":
        raise ApiError(404, "the Telegram webhook is off (set CAREBOT_TELEGRAM_TOKEN and "
                            "CAREBOT_TELEGRAM_MODE=webhook)")
    with channel_input_errors():
        channel.check_webhook_request(
            request.headers.get(SECRET_HEADER, ""), settings.telegram_webhook_secret
        )
        update = channel.parse_update(await read_json_object(request))
    await channel.handle(update)
    return web.json_response({"ok": True})
