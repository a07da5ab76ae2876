"""Live events for agent consoles, collected during a transaction and published after commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# A preview shows this many characters of a message at most.
PREVIEW_CHARS = 140


def preview(
    sender: str, text: str, at: datetime | None, payload: str | None = None
) -> dict[str, Any]:
    """A message as a one-line preview for lists: who wrote it (customer, bot, agent,
    system), its text with whitespace collapsed and cut to `PREVIEW_CHARS` (ending in "…"
    when cut; a button press without text shows its payload in brackets), and when."""
    shown = " ".join(text.split())
    if not shown and payload:
        shown = f"[{payload}]"
    if len(shown) > PREVIEW_CHARS:
        shown = shown[: PREVIEW_CHARS - 1].rstrip() + "…"
    return {"sender": sender, "text": shown, "at": at.isoformat() if at is not None else None}


@dataclass(frozen=True)
class Event:
    """Something an agent console should show now.

    `agent_ids` are the agents it concerns; managers and admins see every event, and
    events with `queue=True` go to every online agent (a conversation entered the queue).
    An event about a conversation also carries the customer's name and a preview of the
    conversation's last message (not a note) after the step, so a console can draw its lists
    without asking again; the writers fill them in (`carebot.db.previews`).
    """

    kind: str
    conversation_id: int | None
    agent_ids: tuple[int, ...] = ()
    queue: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    customer_name: str | None = None
    preview: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form sent over the WebSocket and through LISTEN/NOTIFY."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "conversation_id": self.conversation_id,
            "agent_ids": list(self.agent_ids),
            "queue": self.queue,
            "data": self.data,
        }
        if self.conversation_id is not None:
            out["customer_name"] = self.customer_name
            out["preview"] = self.preview
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        """Inverse of `to_dict`."""
        return cls(
            kind=str(raw["kind"]),
            conversation_id=raw.get("conversation_id"),
            agent_ids=tuple(int(a) for a in raw.get("agent_ids", ())),
            queue=bool(raw.get("queue", False)),
            data=dict(raw.get("data") or {}),
            customer_name=raw.get("customer_name"),
            preview=raw.get("preview"),
        )


class Effects:
    """Side effects of one transaction that must wait for its commit."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.outbox_pending = False

    def emit(self, event: Event) -> None:
        """Queue an event for publishing after commit."""
        self.events.append(event)
