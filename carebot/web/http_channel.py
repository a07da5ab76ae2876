"""The HTTP channel's route: a bridge posts one customer message and gets the bot's replies."""

from __future__ import annotations

from aiohttp import web

from carebot.channels import http as http_channel
from carebot.domain.redaction import Redactor
from carebot.routing.batch import DuplicateIdConflict
from carebot.web.errors import ApiError, channel_input_errors, read_json_object
from carebot.web.keys import INBOUND, SETTINGS
from carebot.web.publish import publish_effects


async def post_message(request: web.Request) -> web.Response:
    """POST /api/v1/channels/http/messages: route one customer message, return the replies."""
    settings = request.app[SETTINGS]
    with channel_input_errors():
        http_channel.check_secret(
            request.headers.get(http_channel.SECRET_HEADER, ""), settings.http_channel_secret
        )
        body = await read_json_object(request)
        msg = http_channel.parse_message(body, settings.max_text_chars,
                                         Redactor.parse(settings.redact_extra))
    try:
        result, effects = await request.app[INBOUND].submit(msg)
    except DuplicateIdConflict as exc:
        raise ApiError(409, str(exc)) from None
    await publish_effects(request.app, effects)
    return web.json_response(result.to_dict())
