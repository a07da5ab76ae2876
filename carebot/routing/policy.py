"""The knobs of the decision core, as small typed groups built from `Settings` (their one home)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from carebot.domain.hours import BusinessHours, HoursError
from carebot.domain.language import LanguagePolicy
from carebot.domain.texts import N_, SOURCE_ONLY, Texts, load_texts
from carebot.settings import Settings, SettingsError


@dataclass(frozen=True)
class RoutingPolicy:
    """How the bot decides: thresholds, patience, windows."""

    answer_threshold: float
    suggest_threshold: float
    max_suggestions: int
    max_failed_bot_turns: int
    reopen_window: timedelta
    # A customer writing while queued is told their position at most this often.
    queue_ack_interval: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> RoutingPolicy:
        """The policy the settings describe."""
        return cls(
            answer_threshold=settings.answer_threshold,
            suggest_threshold=settings.suggest_threshold,
            max_suggestions=settings.max_suggestions,
            max_failed_bot_turns=settings.max_failed_bot_turns,
            reopen_window=timedelta(hours=settings.reopen_window_hours),
            queue_ack_interval=timedelta(minutes=settings.queue_ack_minutes),
        )

    @property
    def match_limit(self) -> int:
        """How many FAQ candidates a decision looks at."""
        return max(3, self.max_suggestions)


@dataclass(frozen=True)
class SurveyPolicy:
    """When and how the customer is asked how it went."""

    channels: frozenset[str]
    delay: timedelta
    cooldown: timedelta
    expiry: timedelta
    ces_enabled: bool
    comment_enabled: bool
    csat_text: str
    ces_text: str
    comment_text: str
    thanks_text: str
    stale_text: str = N_("Thanks! We already have your answer to that survey.")
    closed_text: str = N_(
        "That survey has closed, thank you anyway. Write any time if you need help.")

    @classmethod
    def from_settings(cls, settings: Settings) -> SurveyPolicy:
        """The policy the settings describe."""
        return cls(
            channels=frozenset(
                c.strip() for c in settings.survey_channels.split(",") if c.strip()
            ),
            delay=timedelta(seconds=settings.survey_delay_seconds),
            cooldown=timedelta(days=settings.survey_cooldown_days),
            expiry=timedelta(hours=settings.survey_expiry_hours),
            ces_enabled=settings.survey_ces,
            comment_enabled=settings.survey_comment,
            csat_text=settings.survey_csat_text,
            ces_text=settings.survey_ces_text,
            comment_text=settings.survey_comment_text,
            thanks_text=settings.survey_thanks_text,
        )


@dataclass(frozen=True)
class PresencePolicy:
    """When an agent without a console counts as gone, and what happens to their customers."""

    # No console heartbeat for this long: an `online` agent becomes `away` (None: never).
    grace: timedelta | None
    # A customer of an absent agent unanswered this long goes back to the queue.
    unanswered_requeue: timedelta
    # Assigned and unanswered this long is an SLA breach (once per assignment).
    assigned_sla: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> PresencePolicy:
        """The policy the settings describe."""
        grace = settings.presence_grace_seconds
        return cls(
            grace=timedelta(seconds=grace) if grace > 0 else None,
            unanswered_requeue=timedelta(seconds=settings.unanswered_requeue_seconds),
            assigned_sla=timedelta(seconds=settings.assigned_sla_seconds),
        )


@dataclass(frozen=True)
class Policy:
    """Everything the core needs to know about how this installation behaves."""

    routing: RoutingPolicy
    surveys: SurveyPolicy
    queue_sla: timedelta
    presence: PresencePolicy
    # When people answer; None: always.
    hours: BusinessHours | None = None
    # The queue SLA and the human first response time count business hours only.
    business_time: bool = False
    # The languages served, and the catalogs the writer renders the bot's texts with.
    languages: LanguagePolicy = field(default_factory=LanguagePolicy)
    texts: Texts = SOURCE_ONLY

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The policy the settings describe (SettingsError for a schedule that does not
        parse)."""
        try:
            hours = BusinessHours.parse(settings.business_hours, settings.business_timezone,
                                        settings.business_holidays)
        except HoursError as exc:
            raise SettingsError(f"CAREBOT_BUSINESS_HOURS, _TIMEZONE or _HOLIDAYS: {exc}") from None
        return cls(
            RoutingPolicy.from_settings(settings),
            SurveyPolicy.from_settings(settings),
            timedelta(seconds=settings.queue_sla_seconds),
            PresencePolicy.from_settings(settings),
            hours,
            settings.business_time_stats and hours is not None,
            LanguagePolicy(settings.default_language, settings.language_list,
                           settings.language_min_confidence, settings.language_min_chars),
            # Read once here, at start: the core never loads anything.
            load_texts(settings.language_list),
        )

    def elapsed_ms(self, start: datetime | None, end: datetime) -> int | None:
        """Milliseconds from start to end: business time only when the policy says so."""
        if start is None:
            return None
        if self.business_time and self.hours is not None:
            return int(self.hours.business_seconds(start, end) * 1000)
        return max(0, int((end - start).total_seconds() * 1000))


@dataclass(frozen=True)
class ResolutionCode:
    """An entry of the managed list of resolution codes."""

    code: str
    label: str
    # False for codes like `spam`: no survey is sent.
    survey: bool = True
    # False for codes like `spam`: a new message starts a new conversation instead.
    may_reopen: bool = True
