"""Secrets never reach the logs: every log record is redacted as it is created.

python-telegram-bot logs the Bot API URL, token included ("…/bot123:AA…/getMe"), at DEBUG,
and httpx logs request URLs at INFO. A filter on handlers would miss handlers added later,
so the redaction wraps the log record factory: whatever handler writes the record, it writes
it without the secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.engine import make_url

from carebot.settings import Settings

MASK = "<redacted>"


class _RedactingFactory:
    """A log record factory that masks the secrets it knows in every record's message."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner
        self.secrets: set[str] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        if not self.secrets:
            return record
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it itself
            return record
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, MASK)
            record.msg, record.args = message, None
        return record


def redact_secrets(secrets: Iterable[str]) -> None:
    """Mask these secrets in every log record from now on (short values are not secrets)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingFactory):
        factory = _RedactingFactory(factory)
        logging.setLogRecordFactory(factory)
    factory.secrets.update(s for s in secrets if len(s) >= 8)


def settings_secrets(settings: Settings) -> tuple[str, ...]:
    """The secrets in the configuration: tokens, shared secrets, the database password."""
    password = make_url(settings.database_url).password or ""
    return (settings.telegram_token, settings.telegram_webhook_secret,
            settings.http_channel_secret, str(password))
