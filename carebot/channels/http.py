"""The generic HTTP channel: a stable JSON contract any messenger bridge can call.

This module turns a bridge's request into an `InboundMessage`; the aiohttp route that takes it
(POST /api/v1/channels/http/messages) is in web/http_channel.py.
"""

from __future__ import annotations

from typing import Any

from carebot.channels.errors import ChannelInputError, require_secret
from carebot.domain.language import language_tag
from carebot.domain.messages import InboundMessage
from carebot.domain.redaction import CARDS_ONLY, Redactor
from carebot.domain.text import is_blank, text_problem

CHANNEL = "http"
SECRET_HEADER = "X-Carebot-Secret"
MAX_ID = 128
MAX_NAME = 200
MAX_PAYLOAD = 200


def check_secret(given: str, secret: str) -> None:
    """Raise a 403 ChannelInputError unless `given` is the configured secret (none: any)."""
    if secret:
        require_secret(SECRET_HEADER, given, secret)


def parse_message(
    body: dict[str, Any], max_text: int, redact: Redactor = CARDS_ONLY
) -> InboundMessage:
    """Validate the JSON body into an InboundMessage, or raise a 400/413 ChannelInputError.

    Card numbers (and what `redact` masks besides) are masked here, before anything else
    sees the text."""
    user_id = _required_id(body, "user_id")
    message_id = _required_id(body, "message_id")
    text = body.get("text")
    payload = body.get("payload")
    name = body.get("name", "")
    if text is None and payload is None:
        raise ChannelInputError(
            400, "send either 'text' (a message) or 'payload' (a button press)"
        )
    if text is not None and not isinstance(text, str):
        raise ChannelInputError(400, "'text' must be a string")
    if isinstance(text, str) and len(text) > max_text:
        raise ChannelInputError(413, f"'text' is longer than {max_text} characters")
    if payload is not None and (not isinstance(payload, str) or not payload
                                or len(payload) > MAX_PAYLOAD):
        raise ChannelInputError(
            400, f"'payload' must be a non-empty string of at most {MAX_PAYLOAD} chars"
        )
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise ChannelInputError(
            400, f"'name' must be a string of at most {MAX_NAME} characters"
        )
    language = body.get("language")
    if language is not None and language_tag(language) is None:
        raise ChannelInputError(
            400, "'language' must be a language tag like de, fr or pt-BR (the customer's "
            "language as the bridge knows it)")
    if text is not None and is_blank(text) and payload is None:
        raise ChannelInputError(400, "'text' is empty")
    for key, value in (("text", text), ("payload", payload), ("name", name)):
        problem = text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise ChannelInputError(400, f"'{key}' {problem}")
    masked, masked_name = redact(text or ""), redact(name)
    return InboundMessage(
        channel=CHANNEL,
        user_id=user_id,
        message_id=message_id,
        text=masked.text,
        payload=payload,
        display_name=masked_name.text,
        reply_inline=True,
        redacted=masked.kinds | masked_name.kinds,
        language=language,
    )


def _required_id(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or is_blank(value):
        raise ChannelInputError(
            400, f"'{key}' is required and must be a non-empty string (visible characters)")
    if len(value) > MAX_ID:
        raise ChannelInputError(400, f"'{key}' must be at most {MAX_ID} characters")
    problem = text_problem(value)
    if problem is not None:
        raise ChannelInputError(400, f"'{key}' {problem}")
    return value
