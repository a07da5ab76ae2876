"""The generic HTTP channel: a stable JSON contract any messenger bridge can call."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from carebot.domain.messages import InboundMessage
from carebot.routing.batch import DuplicateIdConflict
from carebot.web.errors import ApiError, read_json_object, text_field
from carebot.web.keys import INBOUND, SETTINGS
from carebot.web.publish import publish_effects

CHANNEL = "http"
SECRET_HEADER = "X-Carebot-Secret"
MAX_ID = 128
MAX_NAME = 200
MAX_PAYLOAD = 200


async def post_message(request: web.Request) -> web.Response:
    """POST /api/v1/channels/http/messages: route one customer message, return the replies."""
    settings = request.app[SETTINGS]
    if settings.http_channel_secret:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), settings.http_channel_secret.encode()):
            raise ApiError(403, f"missing or wrong {SECRET_HEADER} header")
    body = await read_json_object(request)
    msg = parse_message(body, settings.max_text_chars)
    try:
        result, effects = await request.app[INBOUND].submit(msg)
    except DuplicateIdConflict as exc:
        raise ApiError(409, str(exc)) from None
    await publish_effects(request.app, effects)
    return web.json_response(result.to_dict())


def parse_message(body: dict[str, Any], max_text: int) -> InboundMessage:
    """Validate the JSON body into an InboundMessage, or raise a 400/413 ApiError."""
    user_id = _required_id(body, "user_id")
    message_id = _required_id(body, "message_id")
    text = body.get("text")
    payload = body.get("payload")
    name = body.get("name", "")
    if text is None and payload is None:
        raise ApiError(400, "send either 'text' (a message) or 'payload' (a button press)")
    if text is not None and not isinstance(text, str):
        raise ApiError(400, "'text' must be a string")
    if isinstance(text, str) and len(text) > max_text:
        raise ApiError(413, f"'text' is longer than {max_text} characters")
    if payload is not None and (not isinstance(payload, str) or not payload
                                or len(payload) > MAX_PAYLOAD):
        raise ApiError(400, f"'payload' must be a non-empty string of at most {MAX_PAYLOAD} chars")
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise ApiError(400, f"'name' must be a string of at most {MAX_NAME} characters")
    if text is not None and not text.strip() and payload is None:
        raise ApiError(400, "'text' is empty")
    return InboundMessage(
        channel=CHANNEL,
        user_id=user_id,
        message_id=message_id,
        text=text or "",
        payload=payload,
        display_name=name,
        reply_inline=True,
    )


def _required_id(body: dict[str, Any], key: str) -> str:
    return text_field(body, key, MAX_ID, too_long_status=400)
