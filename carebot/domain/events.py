"""Live events for agent consoles, collected during a transaction and published after commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """Something an agent console should show now.

    `agent_ids` are the agents it concerns; managers and admins see every event, and
    events with `queue=True` go to every online agent (a conversation entered the queue).
    """

    kind: str
    conversation_id: int | None
    agent_ids: tuple[int, ...] = ()
    queue: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form sent over the WebSocket and through LISTEN/NOTIFY."""
        return {
            "kind": self.kind,
            "conversation_id": self.conversation_id,
            "agent_ids": list(self.agent_ids),
            "queue": self.queue,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        """Inverse of `to_dict`."""
        return cls(
            kind=str(raw["kind"]),
            conversation_id=raw.get("conversation_id"),
            agent_ids=tuple(int(a) for a in raw.get("agent_ids", ())),
            queue=bool(raw.get("queue", False)),
            data=dict(raw.get("data") or {}),
        )


class Effects:
    """Side effects of one transaction that must wait for its commit."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.outbox_pending = False

    def emit(self, event: Event) -> None:
        """Queue an event for publishing after commit."""
        self.events.append(event)
