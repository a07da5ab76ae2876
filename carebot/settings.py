"""All configuration, read once from `CAREBOT_*` environment variables into `Settings`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PREFIX = "CAREBOT_"


class SettingsError(ValueError):
    """A configuration value is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    """Service configuration; each field is read from `CAREBOT_<FIELD NAME IN CAPITALS>`."""

    database_url: str = "sqlite+aiosqlite:///carebot.db"
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    knowledge_dir: str = "knowledge"

    # Matcher scores are calibrated probabilities that the top FAQ is right; the defaults
    # are the ones carebot.care.matcher derives from cross-validation (see its docstring).
    answer_threshold: float = 0.6
    suggest_threshold: float = 0.25
    max_suggestions: int = 3
    # Consecutive bot turns that did not help before the bot gives up and hands off.
    max_failed_bot_turns: int = 2
    # A message this long after resolution reopens the conversation; later, a new one starts.
    reopen_window_hours: float = 24.0
    # How often a process checks whether the knowledge base changed (multi-process installs).
    kb_refresh_seconds: float = 30.0

    http_channel_secret: str = ""

    # A bot conversation whose customer stays silent this long is resolved as `timeout`.
    bot_timeout_minutes: float = 30.0
    # Queued longer than this is an SLA breach (a touchpoint and an event to managers).
    queue_sla_seconds: float = 300.0
    timer_interval_seconds: float = 10.0
    run_timers: bool = True

    # Surveys after resolution: channels that get them (comma-separated; empty turns them off).
    survey_channels: str = "telegram,http"
    survey_delay_seconds: float = 0.0
    survey_cooldown_days: float = 7.0
    survey_expiry_hours: float = 72.0
    survey_ces: bool = False
    survey_comment: bool = True
    survey_csat_text: str = "How satisfied are you with the help you got?"
    survey_ces_text: str = "How easy was it to get your issue resolved?"
    survey_comment_text: str = "Anything we could do better? Just type it, or press Skip."
    survey_thanks_text: str = "Thank you for your feedback!"
    max_body_bytes: int = 64 * 1024
    max_text_chars: int = 4096

    def __post_init__(self) -> None:
        if not 0.0 <= self.suggest_threshold <= self.answer_threshold <= 1.0:
            raise SettingsError(
                "need 0 <= CAREBOT_SUGGEST_THRESHOLD <= CAREBOT_ANSWER_THRESHOLD <= 1, got "
                f"{self.suggest_threshold} and {self.answer_threshold}"
            )
        if not 0 < self.port < 65536:
            raise SettingsError(f"CAREBOT_PORT must be 1..65535, got {self.port}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from the environment (default `os.environ`); `overrides` win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _convert(f.name, raw, type(getattr(cls, f.name)))
        values.update(overrides)
        return cls(**values)

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is the embedded SQLite one (single-process mode)."""
        return self.database_url.startswith("sqlite")

    @property
    def knowledge_path(self) -> Path:
        """The knowledge base directory as a path."""
        return Path(self.knowledge_dir)


def _convert(name: str, raw: str, kind: type) -> Any:
    env_name = PREFIX + name.upper()
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise SettingsError(
            f"{env_name} must be a {kind.__name__}, got {raw!r}"
        ) from None
    return raw
