"""The web chat channel: a site's widget talking to carebot over a WebSocket.

This module holds what the channel means, without any web framework: which origins a site
allows, who a visitor is (an anonymous token or a user id the site signed), how a widget's
frame becomes an `InboundMessage`, and the limits on what a visitor may send. The aiohttp
side (the socket, CORS, the visitors connected to this process) is `carebot.web.web_chat`.

Who a visitor is decides which contact (and so which customer and history) a chat belongs to:

- anonymous: the widget keeps a random token in the browser's storage; the contact is keyed
  by a hash of it (`site3:visitor:<hash>`), so the database never holds a token that would
  let someone read that visitor's chat;
- verified: the site's server signs its user id, `HMAC-SHA256(site secret, user_id)` in hex,
  and puts both in the snippet; carebot checks the signature with `hmac.compare_digest` and
  keys the contact by the user id (`site3:user:<id>`), the same on every device. A user id
  without a valid signature is refused: an unverified claim is never trusted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from carebot.channels.errors import ChannelInputError
from carebot.domain.language import language_tag
from carebot.domain.messages import InboundMessage
from carebot.domain.text import is_blank, text_problem

CHANNEL = "web"
# A visitor token: 32 URL-safe characters from `secrets` (192 bits), made by carebot.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")
# A widget's id for one message it sends (a retry repeats it): idempotency per visitor.
_CID = re.compile(r"[A-Za-z0-9_-]{8,32}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
MAX_USER_ID = 64
# Contact and message ids are stored in 128 characters.
MAX_EXTERNAL_ID = 128
MAX_NAME = 100
MAX_PAYLOAD = 200
MAX_TITLE = 100
MAX_GREETING = 1000
MAX_OFFLINE_TEXT = 500
MAX_ORIGINS = 20
DEFAULT_COLOUR = "#2563eb"


# --- sites ------------------------------------------------------------------------------------


def normalize_origin(value: str) -> str:
    """An origin as browsers send it (`https://shop.example`, `http://127.0.0.1:8000`), or a
    ValueError saying what is wrong. Scheme and host are lower-cased; a default port dropped."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("an origin must be a non-empty string like https://shop.example")
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{value!r} is not an origin like https://shop.example")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username or (
        parts.password
    ):
        raise ValueError(
            f"{value!r} has more than scheme, host and port: an origin is like "
            "https://shop.example")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def normalize_origins(values: Any) -> list[str]:
    """A site's list of origins, each normalised, without repeats (ValueError if invalid)."""
    if not isinstance(values, list) or not values:
        raise ValueError("'origins' must be a non-empty list of origins like "
                         "https://shop.example")
    if len(values) > MAX_ORIGINS:
        raise ValueError(f"at most {MAX_ORIGINS} origins per site")
    found: list[str] = []
    for value in values:
        origin = normalize_origin(value)
        if origin not in found:
            found.append(origin)
    return found


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """Whether a request's Origin header is one of the site's origins (no header: refused)."""
    if not origin:
        return False
    try:
        return normalize_origin(origin) in allowed
    except ValueError:
        return False


def check_colour(value: Any) -> str:
    """A `#rrggbb` colour, or a ValueError."""
    if not isinstance(value, str) or not _COLOUR.fullmatch(value):
        raise ValueError("'colour' must be a colour like #2563eb")
    return value.lower()


def check_text(value: Any, name: str, limit: int, *, blank_ok: bool = True) -> str:
    """A site setting's text, or a ValueError saying why not."""
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"'{name}' must be a string of at most {limit} characters")
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"'{name}' {problem}")
    if not blank_ok and is_blank(value):
        raise ValueError(f"'{name}' must not be empty")
    return value.strip()


def new_site_key() -> str:
    """The public id a snippet names its site by."""
    return "s_" + secrets.token_urlsafe(12)


def new_secret() -> str:
    """A site's identity-verification secret (256 bits)."""
    return secrets.token_hex(32)


def snippet(base_url: str, site_key: str) -> str:
    """The one line a site puts on its pages."""
    base = base_url.rstrip("/")
    return f'<script src="{base}/widget.js" data-site="{site_key}" async></script>'


# --- visitors ---------------------------------------------------------------------------------


def new_visitor_token() -> str:
    """A new anonymous visitor's token, kept by their browser."""
    return secrets.token_urlsafe(24)


def valid_token(value: Any) -> bool:
    """Whether a widget's stored token looks like one carebot made."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def sign_user(secret: str, user_id: str) -> str:
    """HMAC-SHA256(secret, user_id) in hex: what the site's server puts in the snippet."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def identity_verified(secret: str, user_id: str, given: str) -> bool:
    """Whether `given` is the site's signature of `user_id` (constant-time comparison)."""
    if not _HEX_SHA256.fullmatch(given):
        return False
    return hmac.compare_digest(sign_user(secret, user_id).encode(), given.lower().encode())


def check_user_id(value: Any) -> str:
    """A user id a site may sign: 1-64 visible characters."""
    if not isinstance(value, str) or is_blank(value) or len(value) > MAX_USER_ID:
        raise ChannelInputError(400, f"'user.id' must be 1-{MAX_USER_ID} visible characters")
    if text_problem(value) is not None or any(ord(c) < 32 for c in value):
        raise ChannelInputError(400, "'user.id' contains control characters")
    return value


def anonymous_key(site_id: int, token: str) -> str:
    """The contact key of an anonymous visitor: a hash of their token, never the token."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:40]
    return f"site{site_id}:visitor:{digest}"


def user_key(site_id: int, user_id: str) -> str:
    """The contact key of a verified user of the site."""
    return f"site{site_id}:user:{user_id}"


# --- what a widget sends ----------------------------------------------------------------------


@dataclass(frozen=True)
class Said:
    """A message or button press from the widget."""

    cid: str
    text: str
    payload: str | None


@dataclass(frozen=True)
class Typing:
    """The visitor is typing."""


@dataclass(frozen=True)
class Read:
    """The widget showed the visitor everything up to this message id."""

    up_to: int


@dataclass(frozen=True)
class Older:
    """The widget asks for history before this message id."""

    before: int


Frame = Said | Typing | Read | Older


def parse_frame(raw: Any, max_text: int) -> Frame:
    """A widget's frame (after `hello`), or a ChannelInputError (400, or 413 for long text)."""
    if not isinstance(raw, dict):
        raise ChannelInputError(400, "a frame must be a JSON object with a 'type'")
    kind = raw.get("type")
    if kind == "message":
        return _said(raw, max_text)
    if kind == "typing":
        return Typing()
    if kind == "read":
        return Read(_message_id(raw, "up_to"))
    if kind == "older":
        return Older(_message_id(raw, "before"))
    raise ChannelInputError(400, "'type' must be message, typing, read or older")


def _said(raw: dict[str, Any], max_text: int) -> Said:
    cid = raw.get("cid")
    if not isinstance(cid, str) or not _CID.fullmatch(cid):
        raise ChannelInputError(400, "'cid' must be 8-32 characters of A-Z a-z 0-9 _ -")
    text = raw.get("text", "")
    payload = raw.get("payload")
    if not isinstance(text, str):
        raise ChannelInputError(400, "'text' must be a string")
    if len(text) > max_text:
        raise ChannelInputError(413, f"Your message is too long: at most {max_text} characters.")
    if payload is not None and (not isinstance(payload, str) or not payload
                                or len(payload) > MAX_PAYLOAD):
        raise ChannelInputError(400, f"'payload' must be 1-{MAX_PAYLOAD} characters")
    if payload is None and is_blank(text):
        raise ChannelInputError(400, "the message is empty")
    for name, value in (("text", text), ("payload", payload)):
        problem = text_problem(value) if value is not None else None
        if problem is not None:
            raise ChannelInputError(400, f"'{name}' {problem}")
    return Said(cid, text, payload)


def _message_id(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**62:
        raise ChannelInputError(400, f"'{key}' must be a message id")
    return value


def check_language(value: Any) -> str | None:
    """The page's language tag from `hello` ("de", "de-AT"), or None when absent or not a
    tag (a hint: never a reason to refuse the chat)."""
    return language_tag(value)


def inbound(key: str, said: Said, display_name: str = "", language: str | None = None) -> (
    InboundMessage
):
    """The visitor's message for the inbound pipeline. Its id is the visitor's key and the
    widget's `cid`, so a resend after a lost connection is stored once, and no visitor can
    collide with another's ids. Replies count as delivered in the response: the socket that
    sent the message pushes them at once (`reply_inline`)."""
    message_id = f"{key}/{said.cid}"
    if len(message_id) > MAX_EXTERNAL_ID:
        raise ChannelInputError(400, "the user id is too long for this site")
    return InboundMessage(
        channel=CHANNEL,
        user_id=key,
        message_id=message_id,
        text=said.text,
        payload=said.payload,
        display_name=display_name,
        reply_inline=True,
        language=language,
    )


def cid_of(external_id: str | None) -> str | None:
    """The widget's `cid` of a stored inbound message (see `inbound`)."""
    if not external_id or "/" not in external_id:
        return None
    return external_id.rsplit("/", 1)[1]
