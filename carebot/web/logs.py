"""Secrets and card numbers never reach the logs: every log record is redacted as it is
created.

python-telegram-bot logs the Bot API URL, token included ("…/bot123:AA…/getMe"), at DEBUG,
and httpx logs request URLs at INFO. A filter on handlers would miss handlers added later,
so the redaction wraps the log record factory: whatever handler writes the record, it writes
it without the secret. Card numbers (Luhn-checked) are masked in the message and in the
traceback of an exception too: channels mask customers' texts before anything logs them, and
this is the second line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from sqlalchemy.engine import make_url

from carebot.domain.redaction import mask_cards
from carebot.settings import Settings

MASK = "<redacted>"
log = logging.getLogger(__name__)


class _RedactingFactory:
    """A log record factory that masks the secrets it knows in every record's message."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner
        self.secrets: set[str] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it itself
            return record
        masked = self._mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            # Formatted now, masked, and kept: every formatter then uses this text.
            record.exc_text = self._mask(_FORMATTER.formatException(record.exc_info))
        return record

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return mask_cards(text) if _may_hold_a_card(text) else text


_FORMATTER = logging.Formatter()


def _may_hold_a_card(text: str) -> bool:
    # The digit count is a cheap filter: a card number has at least 13.
    return sum(c.isdigit() for c in text) >= 13


def install() -> None:
    """Mask card numbers (and the secrets given later) in every log record from now on."""
    if not isinstance(logging.getLogRecordFactory(), _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(logging.getLogRecordFactory()))


def redact_secrets(secrets: Iterable[str]) -> None:
    """Mask these secrets in every log record from now on (short values are not secrets)."""
    install()
    factory = logging.getLogRecordFactory()
    assert isinstance(factory, _RedactingFactory)
    factory.secrets.update(s for s in secrets if len(s) >= 8)


def settings_secrets(settings: Settings) -> tuple[str, ...]:
    """The secrets in the configuration: tokens, shared secrets, the database password."""
    password = make_url(settings.database_url).password or ""
    return (settings.telegram_token, settings.telegram_webhook_secret,
            settings.http_channel_secret, str(password))


class _MalformedRequests(logging.Filter):
    """Requests that are not valid HTTP (a control character in a header, a garbled request
    line) are answered 400 by aiohttp's parser before carebot sees them, and aiohttp logs
    each with a traceback at ERROR: anyone could fill the log with them. They are counted
    instead, and summed up in one warning a minute at most."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._reported_at = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        self.count += 1
        now = time.monotonic()
        if now - self._reported_at >= 60.0:
            self._reported_at = now
            log.warning("refused %d request(s) that were not valid HTTP in the last minute "
                        "(latest: %s)", self.count, str(error).strip().splitlines()[0][:200])
            self.count = 0
        return False


def quiet_malformed_requests() -> None:
    """Install the filter above on aiohttp's server logger, once."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequests) for f in server_log.filters):
        server_log.addFilter(_MalformedRequests())
