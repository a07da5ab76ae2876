"""Which language the bot speaks in a conversation: one pure rule, table-tested.

In order: an agent's override of the conversation's language; a confident detection of this
message (long enough, sure enough, and a language carebot serves); the customer's remembered
language; the channel's hint (Telegram's `language_code`, the web page's language); the
default language. Short texts ("ok", "hi") are never confident: detectors guess wildly on a
few characters, and one "ok" must not switch a German conversation to English; only a phrase
known to belong to one language ("hallo", `Detected.exact`) is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# A language tag as channels send it: "de", "de-AT", "pt_BR", "zh-Hant-TW".
_TAG = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8}){0,3}")


def language_tag(value: Any) -> str | None:
    """`value` when it is a language tag, else None."""
    return value if isinstance(value, str) and _TAG.fullmatch(value) else None


@dataclass(frozen=True)
class Detected:
    """A detector's guess at a text's language and how sure it is (0..1)."""

    language: str
    confidence: float
    # Known for certain whatever its length (a phrase of one language only, like "hallo").
    exact: bool = False


@dataclass(frozen=True)
class LanguagePolicy:
    """The languages served (the default first) and how sure detection must be."""

    default: str = "en"
    supported: tuple[str, ...] = ("en",)
    min_confidence: float = 0.9
    min_chars: int = 12

    def normalise(self, code: str | None) -> str | None:
        """A served language for a code as channels send it ("de-AT", "pt_BR", "FR"), or None.

        The exact code wins ("pt_BR" when served), then its base language ("de" for "de-AT")."""
        if not code:
            return None
        parts = code.strip().replace("-", "_").split("_")
        base = parts[0].lower()
        exact = f"{base}_{parts[1].upper()}" if len(parts) > 1 and parts[1] else base
        for candidate in (exact, base):
            if candidate in self.supported:
                return candidate
        return None


@dataclass(frozen=True)
class Choice:
    """The conversation's language, where it came from, and what to remember for the customer
    (None: keep what is remembered: a default is no news about the customer)."""

    language: str
    source: str  # override, detected, remembered, hint, default
    remember: str | None


def choose(
    policy: LanguagePolicy, *, text: str = "", override: str | None = None,
    detected: Detected | None = None, remembered: str | None = None, hint: str | None = None,
) -> Choice:
    """The language of the bot's next words in a conversation (see the module's docstring)."""
    if (lang := policy.normalise(override)) is not None:
        return Choice(lang, "override", lang)
    if detected is not None and (detected.exact or (
        len(text.strip()) >= policy.min_chars and detected.confidence >= policy.min_confidence
    )) and (lang := policy.normalise(detected.language)) is not None:
        return Choice(lang, "detected", lang)
    if (lang := policy.normalise(remembered)) is not None:
        return Choice(lang, "remembered", None)
    if (lang := policy.normalise(hint)) is not None:
        return Choice(lang, "hint", lang)
    return Choice(policy.default, "default", None)
