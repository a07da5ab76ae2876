"""Small talk ("hi", "thanks!", "ok", "bye"): short replies from `knowledge/smalltalk/*.yaml`.

Such messages are not questions; matching them against the FAQ finds nothing and used to hand
the customer to a person as `no_match`. The phrases live beside the knowledge base so they can
be edited and translated without touching code: one file per language, named by its code
(`en.yaml`, `de.yaml`), entries of the same kind sharing an `id`. The reply is in the
conversation's language when the phrase is small talk in it too ("ok"), else in the language
of the phrase ("hallo" gets the German greeting whatever the conversation spoke so far: a
two-word greeting is too short for the detector, but not ambiguous).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

# Case, punctuation and emoji do not change what "Thanks!! 🙏" means.
_NOISE = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")
MAX_PHRASE_CHARS = 60


class SmallTalkError(ValueError):
    """A small-talk file is malformed."""


def _key(text: str) -> str:
    return _SPACE.sub(" ", _NOISE.sub(" ", text.casefold())).strip()


@dataclass(frozen=True)
class SmallTalkReply:
    """What the bot says to one kind of small talk."""

    id: str
    reply: str


@dataclass(frozen=True)
class SmallTalk:
    """Whole-message phrases (by language) and their replies (by kind and language)."""

    # phrase key -> {language: kind id}
    phrases: Mapping[str, Mapping[str, str]]
    # (kind id, language) -> reply
    replies: Mapping[tuple[str, str], str]

    def reply_for(self, text: str, language: str | None = None) -> SmallTalkReply | None:
        """The reply when the whole message is small talk, else None (see the module)."""
        if len(text) > MAX_PHRASE_CHARS:
            return None
        found = self.phrases.get(_key(text))
        if not found:
            return None
        lang = language if language is not None and language in found else next(iter(found))
        kind = found[lang]
        return SmallTalkReply(kind, self.replies[(kind, lang)])

    def language_of(self, text: str) -> str | None:
        """The language of a small-talk phrase that belongs to one language only ("hallo":
        de; "ok": None), which says more about a short text than any detector."""
        if len(text) > MAX_PHRASE_CHARS:
            return None
        found = self.phrases.get(_key(text))
        return next(iter(found)) if found and len(found) == 1 else None

    def languages(self) -> set[str]:
        """The languages with small-talk replies."""
        return {lang for _, lang in self.replies}


NO_SMALL_TALK = SmallTalk({}, {})


def load_small_talk(directory: Path) -> SmallTalk:
    """Read every `<language>.yaml` in `directory` (none there: no small talk)."""
    phrases: dict[str, dict[str, str]] = {}
    replies: dict[tuple[str, str], str] = {}
    if not directory.is_dir():
        return NO_SMALL_TALK
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise SmallTalkError(f"{path}: cannot read: {exc}") from None
        if not isinstance(data, list):
            raise SmallTalkError(f"{path}: expected a list of entries")
        for n, entry in enumerate(data, 1):
            if not isinstance(entry, dict) or not isinstance(entry.get("reply"), str) or not (
                isinstance(entry.get("phrases"), list)
            ):
                raise SmallTalkError(f"{path}: entry {n} needs `phrases` (a list) and `reply`")
            kind, lang = str(entry.get("id", n)), path.stem
            replies[(kind, lang)] = entry["reply"].strip()
            for phrase in entry["phrases"]:
                key = _key(str(phrase))
                if key:
                    phrases.setdefault(key, {})[lang] = kind
    return SmallTalk(phrases, replies)
