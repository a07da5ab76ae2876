"""What a channel adapter raises when a platform hands it input it cannot take.

Channels know nothing of the web layer: its aiohttp handlers (web/http_channel.py,
web/telegram_webhook.py) answer a `ChannelInputError` with a JSON error of the same status and
message.
"""

from __future__ import annotations

import hmac


class ChannelInputError(Exception):
    """A request the channel refuses: the HTTP status to answer with and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def require_secret(header: str, given: str, expected: str) -> None:
    """Raise a 403 unless `given` (the value of `header`) is the shared secret `expected`."""
    # Header values arrive decoded with surrogateescape: compare the bytes as they came, so a
    # non-UTF-8 header is a wrong secret (403), never an encoding error (500).
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode()):
        raise ChannelInputError(403, f"missing or wrong {header} header")
