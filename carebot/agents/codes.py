"""The managed list of resolution codes: what an agent may close a conversation with.

Each code says whether the customer is surveyed afterwards and whether a new message reopens
the conversation (`spam`: neither). Free text is refused, so the statistics group by a known
list. Migration 0004 seeds the list; admins change it (API, `carebot codes`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import ResolutionCode

CODE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_LABEL = 200


class CodeError(ValueError):
    """A code cannot be created or changed as asked; `status` is the HTTP status that fits."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def list_codes(session: AsyncSession) -> list[ResolutionCode]:
    """Every code, enabled or not, by code."""
    return list(await session.scalars(select(ResolutionCode).order_by(ResolutionCode.code)))


def _label(label: Any) -> str:
    if not isinstance(label, str) or not label.strip() or len(label.strip()) > MAX_LABEL:
        raise CodeError(400, f"'label' must be 1 to {MAX_LABEL} characters of text")
    return label.strip()


async def add_code(
    session: AsyncSession, code: str, label: Any, *, survey: bool, may_reopen: bool,
    now: datetime,
) -> ResolutionCode:
    """A new code (lower-case letters, digits, `_` and `-`, at most 64)."""
    if not CODE.fullmatch(code):
        raise CodeError(400, "'code' must be 1 to 64 of a-z, 0-9, _ and -, starting with a "
                             "letter or digit")
    if await session.get(ResolutionCode, code) is not None:
        raise CodeError(409, f"resolution code {code!r} already exists")
    row = ResolutionCode(code=code, label=_label(label), survey=survey, may_reopen=may_reopen,
                         enabled=True, created_at=now)
    session.add(row)
    await session.flush()
    return row


async def change_code(session: AsyncSession, code: str, **changes: Any) -> ResolutionCode:
    """Change a code's label, survey, may_reopen or enabled (None: unchanged)."""
    row = await session.get(ResolutionCode, code, with_for_update=True)
    if row is None:
        raise CodeError(404, f"resolution code {code!r} not found")
    for name in ("survey", "may_reopen", "enabled"):
        value = changes.get(name)
        if value is not None:
            if not isinstance(value, bool):
                raise CodeError(400, f"'{name}' must be true or false")
            setattr(row, name, value)
    if changes.get("label") is not None:
        row.label = _label(changes["label"])
    await session.flush()
    return row


def code_dict(row: ResolutionCode) -> dict[str, Any]:
    """A code as JSON."""
    return {"code": row.code, "label": row.label, "survey": row.survey,
            "may_reopen": row.may_reopen, "enabled": row.enabled}
