"""Load real-shaped Telegram ``Update`` payloads from ``tests/fixtures/telegram/*.json``.

    update = load_update("start_command")                       # fresh deep copy
    update = load_update("private_text", text="where is my parcel?", update_id=None)
    update = load_update("callback_query", data="csat:no")
    update = load_update("private_text", user_id=222222222)     # from.id and private chat id
    update = load_update("group_text", chat__title="Other group")

Overrides:
  * ``update_id=<int>`` sets the update id; ``update_id=None`` removes it so that
    ``FakeBotAPI.push_update`` assigns the next one.
  * ``user_id`` sets ``from.id`` (and the chat id, if the chat is private).
  * ``chat_id`` sets the chat id (of ``callback_query.message`` for callback queries).
  * any other key is set on the update's payload object (the ``message``,
    ``callback_query``, ``channel_post``... dict); ``a__b`` walks into nested dicts
    (``from__first_name="Bob"``). A value of None deletes the key.
  * overriding ``text`` recomputes ``entities`` like Telegram would: a leading
    ``/command`` gets a ``bot_command`` entity, other entities are kept only if they still
    cover the same characters (pass ``entities=...`` too to set them yourself).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "telegram"

__all__ = ["FIXTURES_DIR", "fixture_names", "load_update", "payload_key"]


def fixture_names() -> list[str]:
    """Names of all update fixtures (without ``.json``)."""
    return sorted(p.stem for p in FIXTURES_DIR.glob("*.json"))


@functools.cache
def _read(name: str) -> dict[str, Any]:
    path = FIXTURES_DIR / f"{name.removesuffix('.json')}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no Telegram fixture {name!r}; available: {fixture_names()}")
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def payload_key(update: dict[str, Any]) -> str:
    """The update type key, e.g. ``"message"`` or ``"callback_query"``."""
    keys = [k for k in update if k != "update_id"]
    if len(keys) != 1:
        raise ValueError(f"expected exactly one payload key in update, got {keys}")
    return keys[0]


def load_update(name: str, **overrides: Any) -> dict[str, Any]:
    """Return a deep copy of fixture ``name`` with ``overrides`` applied (see module doc)."""
    update = copy.deepcopy(_read(name))
    payload: dict[str, Any] = update[payload_key(update)]

    for key, value in overrides.items():
        if key == "update_id":
            if value is None:
                update.pop("update_id", None)
            else:
                update["update_id"] = value
        elif key == "user_id":
            payload["from"]["id"] = value
            for chat in _chats(payload):
                if chat.get("type") == "private":
                    chat["id"] = value
        elif key == "chat_id":
            chats = _chats(payload)
            if not chats:
                raise KeyError(f"fixture {name!r} has no chat")
            chats[0]["id"] = value
        elif key == "text" and isinstance(value, str) and "entities" not in overrides:
            old_text = payload.get("text", "")
            payload["text"] = value
            _fix_entities(payload, old_text)
        else:
            _set_path(payload, key.split("__"), value)
    return update


def _chats(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat of a message-like payload, or of a callback query's message."""
    chats = []
    if isinstance(payload.get("chat"), dict):
        chats.append(payload["chat"])
    message = payload.get("message")
    if isinstance(message, dict) and isinstance(message.get("chat"), dict):
        chats.append(message["chat"])
    return chats


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        if not isinstance(target.get(part), dict):
            raise KeyError(f"cannot override {'__'.join(path)!r}: no object at {part!r}")
        target = target[part]
    if value is None:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _utf16_slice(text: str, offset: int, length: int) -> str:
    raw = text.encode("utf-16-le")
    return raw[offset * 2 : (offset + length) * 2].decode("utf-16-le", errors="replace")


def _fix_entities(payload: dict[str, Any], old_text: str) -> None:
    """Recompute entities for an overridden text, as Telegram would.

    A leading ``/command`` gets a bot_command entity; other entities are kept only if they
    still cover the same characters (e.g. an ``@mention`` at the start of a group message).
    """
    text: str = payload["text"]
    entities: list[dict[str, Any]] = []
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0]
        entities.append({"offset": 0, "length": _utf16_len(command), "type": "bot_command"})
    for entity in payload.get("entities", []):
        if entity["type"] == "bot_command" and entity["offset"] == 0:
            continue
        old = _utf16_slice(old_text, entity["offset"], entity["length"])
        if old and _utf16_slice(text, entity["offset"], entity["length"]) == old:
            entities.append(entity)
    if entities:
        payload["entities"] = entities
    else:
        payload.pop("entities", None)
