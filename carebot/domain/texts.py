"""The bot's words in the customer's language: catalog messages, rendered late.

The decision core says *what* to tell the customer (`Phrase`: a catalog message id and its
values) without knowing catalogs; the writer renders it in the conversation's language when it
stores the reply. So an agent's claim, a timer's survey and a customer's turn all speak the
customer's language without the core loading anything. The message ids are the English texts
(`N_` marks them for `pybabel extract`); the compiled catalogs live in carebot/locale/ and are
read once at start (`load_texts`).
"""

from __future__ import annotations

import gettext as _gettext
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from carebot.domain.messages import Button, OutboundMessage, Phrase

DOMAIN = "carebot"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"

Gettext = Callable[[str], str]


def N_(msgid: str) -> str:
    """Mark a text for the catalogs; it is translated when rendered."""
    return msgid


def say(msgid: str, /, buttons: tuple[Button, ...] = (), **values: str | int | Phrase) -> (
    OutboundMessage
):
    """A bot message from a catalog text; `text` holds its source-language rendering."""
    phrase = Phrase(msgid, tuple((k, v if isinstance(v, Phrase) else str(v))
                                 for k, v in values.items()))
    return OutboundMessage(phrase.render(_source), buttons, phrase=phrase)


def button(title: str, payload: str) -> Button:
    """A button whose title is a catalog text."""
    return Button(title, payload, translate=True)


def _source(msgid: str) -> str:
    return msgid


@dataclass(frozen=True)
class Texts:
    """A gettext function per served language (the source language needs none)."""

    by_language: Mapping[str, Gettext] = field(default_factory=dict)

    def gettext(self, language: str | None) -> Gettext:
        """The catalog of `language`; a language without one speaks the source texts."""
        return self.by_language.get(language or "", _source)

    def localize(self, message: OutboundMessage, language: str | None) -> OutboundMessage:
        """The message in `language`: its phrase and its catalog buttons rendered there."""
        if message.phrase is None and not any(b.translate for b in message.buttons):
            return message
        gt = self.gettext(language)
        text = message.phrase.render(gt) if message.phrase is not None else message.text
        buttons = tuple(Button(gt(b.title), b.payload) if b.translate else b
                        for b in message.buttons)
        return OutboundMessage(text, buttons)


SOURCE_ONLY = Texts()


def load_texts(languages: Iterable[str], directory: Path = LOCALE_DIR) -> Texts:
    """The compiled catalogs (`<lang>/LC_MESSAGES/carebot.mo`) of the served languages; a
    language without one falls back to the source texts (a missing file is not an error: the
    catalog test is what keeps every shipped language complete)."""
    found: dict[str, Gettext] = {}
    for lang in languages:
        try:
            catalog = _gettext.translation(DOMAIN, directory, languages=[lang])
        except OSError:
            continue
        found[lang] = catalog.gettext
    return Texts(found)
