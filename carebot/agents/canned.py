"""Canned replies: prepared answers an agent inserts by typing `/shortcut` in the composer.

Managers and admins maintain the list (API, `carebot canned`); every agent reads it. A
shortcut is 1 to 32 of `a-z 0-9 _ -` and unique, so `/refund` means one thing; the title
(what the picker shows) is at most 100 characters, the text at most `CAREBOT_MAX_TEXT_CHARS`
(what a reply may be).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import CannedReply
from carebot.domain.text import is_blank, text_problem

SHORTCUT = re.compile(r"[a-z0-9_-]{1,32}")
MAX_TITLE = 100
FIELDS = ("shortcut", "title", "text")


class CannedError(ValueError):
    """A canned reply cannot be created or changed as asked; `status` is the HTTP status that
    fits (400 bad input, 404 not found, 409 shortcut taken, 413 text too long)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def list_canned(session: AsyncSession) -> list[CannedReply]:
    """Every canned reply, by shortcut."""
    return list(await session.scalars(select(CannedReply).order_by(CannedReply.shortcut)))


def _shortcut(value: Any) -> str:
    if not isinstance(value, str) or not SHORTCUT.fullmatch(value):
        raise CannedError(400, "'shortcut' must be 1 to 32 of a-z, 0-9, _ and - (it is typed "
                               "as /shortcut)")
    return str(value)


def _text(name: str, value: Any, limit: int, too_long: int) -> str:
    if not isinstance(value, str) or is_blank(value):
        raise CannedError(400, f"'{name}' must be a non-empty string")
    shown: str = value.strip()
    if len(shown) > limit:
        raise CannedError(too_long, f"'{name}' must be at most {limit} characters")
    problem = text_problem(shown)
    if problem is not None:
        raise CannedError(400, f"'{name}' {problem}")
    return shown


async def _free(session: AsyncSession, shortcut: str, other_than: int | None = None) -> None:
    taken = await session.scalar(select(CannedReply.id).where(CannedReply.shortcut == shortcut))
    if taken is not None and taken != other_than:
        raise CannedError(409, f"the shortcut /{shortcut} is taken")


async def add_canned(
    session: AsyncSession, shortcut: Any, title: Any, text: Any, *, max_text: int,
    created_by: int | None, now: datetime,
) -> CannedReply:
    """A new canned reply (the title defaults to the shortcut)."""
    row = CannedReply(
        shortcut=_shortcut(shortcut),
        title=_text("title", shortcut if title is None else title, MAX_TITLE, 400),
        text=_text("text", text, max_text, 413),
        created_by=created_by, created_at=now, updated_at=now,
    )
    await _free(session, row.shortcut)
    session.add(row)
    await session.flush()
    return row


async def find_canned(session: AsyncSession, key: str) -> CannedReply:
    """A canned reply by id, or by shortcut (with or without the slash); 404 otherwise."""
    row = None
    shortcut = key.removeprefix("/")
    if not SHORTCUT.fullmatch(shortcut):
        raise CannedError(404, f"no canned reply {key!r}")
    if re.fullmatch(r"[0-9]{1,18}", key):
        row = await session.get(CannedReply, int(key), with_for_update=True)
    if row is None:
        row = await session.scalar(
            select(CannedReply).where(CannedReply.shortcut == shortcut)
            .with_for_update()
        )
    if row is None:
        raise CannedError(404, f"no canned reply {key!r}")
    return row


async def change_canned(
    session: AsyncSession, row: CannedReply, changes: dict[str, Any], *, max_text: int,
    now: datetime,
) -> CannedReply:
    """Change a canned reply's shortcut, title or text (the fields present in `changes`)."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise CannedError(400, f"unknown field(s): {', '.join(unknown)}; allowed: "
                               f"{', '.join(FIELDS)}")
    if not changes:
        raise CannedError(400, f"nothing to change: send any of {', '.join(FIELDS)}")
    if "shortcut" in changes:
        shortcut = _shortcut(changes["shortcut"])
        await _free(session, shortcut, row.id)
        row.shortcut = shortcut
    if "title" in changes:
        row.title = _text("title", changes["title"], MAX_TITLE, 400)
    if "text" in changes:
        row.text = _text("text", changes["text"], max_text, 413)
    row.updated_at = now
    await session.flush()
    return row


async def remove_canned(session: AsyncSession, row: CannedReply) -> None:
    """Delete a canned reply (replies already sent with it are unchanged)."""
    await session.delete(row)
    await session.flush()


def canned_dict(row: CannedReply) -> dict[str, Any]:
    """A canned reply as JSON."""
    return {"id": row.id, "shortcut": row.shortcut, "title": row.title, "text": row.text,
            "created_by": row.created_by, "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat()}
