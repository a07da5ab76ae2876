"""The web chat widget's own words (its buttons, placeholder, marks and status line), sent to
it in the visitor's language in the `ready` frame; widget.js keeps English ones until then."""

from __future__ import annotations

from carebot.domain.texts import N_, Gettext

WIDGET_LABELS: dict[str, str] = {
    "open": N_("Open chat"),
    "close": N_("Close chat"),
    "earlier": N_("Earlier messages"),
    "message": N_("Message"),
    "placeholder": N_("Write a message…"),
    "send": N_("Send"),
    "online": N_("We're online"),
    "sending": N_("Sending…"),
    "sent": N_("Sent ✓"),
    "read": N_("Read ✓✓"),
    "not_sent": N_("Not sent."),
    "retry": N_("Retry"),
    "typing": N_("{name} is typing…"),
    "someone": N_("Someone"),
}


def widget_labels(gettext: Gettext) -> dict[str, str]:
    """The widget's labels in one language (`{name}` in `typing` is filled by the widget)."""
    return {key: gettext(text) for key, text in WIDGET_LABELS.items()}
