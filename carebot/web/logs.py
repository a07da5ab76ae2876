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
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.engine import make_url

from carebot.domain.redaction import mask_cards
from carebot.settings import Settings

MASK = "<redacted>"


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
