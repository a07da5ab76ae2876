"""What channels hand to the domain and what the domain hands back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Phrase:
    """A catalog text not yet in the customer's language: its message id and the values of its
    `{placeholders}` (which may be phrases themselves). Values are inserted as they are, so a
    name with braces in it stays a name."""

    msgid: str
    values: tuple[tuple[str, str | Phrase], ...] = ()

    def render(self, gettext: Callable[[str], str]) -> str:
        """The text in the language `gettext` translates to."""
        template = gettext(self.msgid)
        if not self.values:
            return template
        return template.format_map({
            k: v.render(gettext) if isinstance(v, Phrase) else v for k, v in self.values})


@dataclass(frozen=True)
class Button:
    """A reply button: `title` is shown, `payload` comes back when it is pressed."""

    title: str
    payload: str
    # The title is a catalog text, shown in the customer's language (carebot.domain.texts).
    translate: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, str]:
        """JSON form, as the HTTP channel and the outbox store it."""
        return {"title": self.title, "payload": self.payload}


@dataclass(frozen=True)
class InboundMessage:
    """One customer message (text or button press) from any channel."""

    channel: str
    user_id: str
    message_id: str
    text: str = ""
    payload: str | None = None
    display_name: str = ""
    sent_at: datetime | None = None
    # Replies are returned to the caller (HTTP channel) instead of being pushed by the worker.
    reply_inline: bool = False
    # What the channel masked in the text before handing it over ("card", "iban", …).
    redacted: frozenset[str] = frozenset()
    # The customer's language as the channel knows it (Telegram's language_code, the web
    # page's lang): a hint, weaker than what they write (carebot.domain.language).
    language: str | None = None

    def __post_init__(self) -> None:
        # Channels validate their input; this keeps a value of the wrong type (a number as the
        # text of a forged update) from ever reaching the inbound writer.
        for name in ("channel", "user_id", "message_id", "text", "display_name"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"InboundMessage.{name} must be a string")
        if self.payload is not None and not isinstance(self.payload, str):
            raise TypeError("InboundMessage.payload must be a string or None")
        if self.language is not None and not isinstance(self.language, str):
            raise TypeError("InboundMessage.language must be a string or None")


@dataclass(frozen=True)
class OutboundMessage:
    """A reply to send to the customer."""

    text: str
    buttons: tuple[Button, ...] = ()
    # How to say `text` in another language (None: it is said as it is, e.g. an agent's reply).
    phrase: Phrase | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form of the reply."""
        return {"text": self.text, "buttons": [b.to_dict() for b in self.buttons]}


@dataclass(frozen=True)
class RouteResult:
    """What routing one inbound message produced."""

    conversation_id: int
    status: str
    replies: tuple[OutboundMessage, ...] = ()
    duplicate: bool = False
    events: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The HTTP channel's response body."""
        return {
            "conversation_id": self.conversation_id,
            "status": self.status,
            "duplicate": self.duplicate,
            "replies": [r.to_dict() for r in self.replies],
        }
