"""Small talk ("hi", "thanks!", "ok", "bye"): short replies from `knowledge/smalltalk/*.yaml`.

Such messages are not questions; matching them against the FAQ finds nothing and used to hand
the customer to a person as `no_match`. The phrases live beside the knowledge base so they can
be edited (and, one file per language, translated) without touching code.
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
    """Whole-message phrases and their replies."""

    replies: Mapping[str, SmallTalkReply]

    def reply_for(self, text: str) -> SmallTalkReply | None:
        """The reply when the whole message is small talk, else None."""
        if len(text) > MAX_PHRASE_CHARS:
            return None
        return self.replies.get(_key(text))


NO_SMALL_TALK = SmallTalk({})


def load_small_talk(directory: Path) -> SmallTalk:
    """Read every `*.yaml` in `directory` (none there: no small talk)."""
    replies: dict[str, SmallTalkReply] = {}
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
            item = SmallTalkReply(str(entry.get("id", n)), entry["reply"].strip())
            for phrase in entry["phrases"]:
                key = _key(str(phrase))
                if key:
                    replies[key] = item
    return SmallTalk(replies)
