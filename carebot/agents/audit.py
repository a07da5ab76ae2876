"""The audit log: who (an agent, the command line, carebot itself) did what to which object.

Every change worth answering for later — logins, agents created, disabled or changed, tokens
and passwords, customers exported, erased or linked, conversations read by someone who does
not hold them, transferred or resolved, resolution codes changed — calls `record` in the same
transaction as the change itself, so the change and its audit row commit or fail together.

The table is append-only (database triggers refuse UPDATE and DELETE). It never holds message
texts or secrets: `record` refuses details whose keys name text, tokens or passwords, and
values that are not short scalars, so a careless caller fails loudly in tests instead of
leaking into the log.

Actions are `object.verb` strings; the ones carebot writes are listed in `ACTIONS` (and in
docs/data-protection.md).
"""

from __future__ import annotations

import csv
import getpass
import io
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Agent, AuditEntry

ACTIONS = (
    "session.login", "session.login_failed", "session.logout", "agent.invite_accepted",
    "agent.created", "agent.disabled", "agent.enabled", "agent.role_changed",
    "agent.token_rotated", "agent.password_reset", "agent.invited",
    "conversation.read", "conversation.transferred", "conversation.resolved",
    "customer.exported", "customer.erased", "customer.linked", "customer.unlinked",
    "code.created", "code.changed", "knowledge.imported",
    "canned_reply.created", "canned_reply.changed", "canned_reply.deleted",
    "site.created", "site.changed", "site.deleted",
    "retention.applied",
)
# Words that, in a key, mean what a person typed or a credential ("new_token", "note_text").
_FORBIDDEN_WORDS = frozenset({"text", "message", "comment", "body", "token", "password",
                              "secret", "csrf", "payload", "note", "hash", })
MAX_VALUE = 200
MAX_LIST = 50


class AuditDetailsError(ValueError):
    """Details that may not go into the audit log (a programming error)."""


@dataclass(frozen=True)
class AuditActor:
    """Who acted: `type` agent, cli, system or anonymous; the agent's id and name as they
    were."""

    type: str
    id: int | None = None
    name: str = ""

    @classmethod
    def of(cls, agent: Agent) -> AuditActor:
        """An agent, manager or admin (API token or console session)."""
        return cls("agent", agent.id, agent.name)


SYSTEM = AuditActor("system", None, "carebot")
# Someone not logged in (a failed login).
ANONYMOUS = AuditActor("anonymous", None, "")


def cli_actor() -> AuditActor:
    """The command line, named by the operating-system user who ran it."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = ""
    return AuditActor("cli", None, f"cli:{user}"[:100] if user else "cli")


def record(
    session: AsyncSession,
    actor: Agent | AuditActor,
    action: str,
    object_type: str | None,
    object_id: int | str | None,
    details: Mapping[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> AuditEntry:
    """Add one audit row to the session's transaction (it commits with the change)."""
    who = AuditActor.of(actor) if isinstance(actor, Agent) else actor
    if not action or len(action) > 64:
        raise AuditDetailsError(f"audit action must be 1 to 64 characters, got {action!r}")
    entry = AuditEntry(
        at=at or datetime.now(UTC),
        actor_type=who.type,
        actor_id=who.id,
        actor_name=who.name[:100],
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id)[:64],
        details=_checked(details),
    )
    session.add(entry)
    return entry


# A person reading the same conversation again within this time is not recorded again (the
# console reloads a conversation on every event while it is open).
READ_WINDOW = timedelta(hours=1)


def read_is_audited(reader_id: int, status: str, assigned_agent_id: int | None) -> bool:
    """Whether reading a conversation goes on record: when the reader does not hold it.

    A queued conversation is everyone's to look at (agents pick from the queue), so reading
    one is not recorded."""
    return status != "queued" and assigned_agent_id != reader_id


async def record_read(
    session: AsyncSession, reader: Agent, conversation_id: int, now: datetime,
    details: Mapping[str, Any] | None = None,
) -> bool:
    """Record `conversation.read` unless this reader has one for it within `READ_WINDOW`."""
    recent = await session.scalar(
        select(AuditEntry.id).where(
            AuditEntry.object_type == "conversation",
            AuditEntry.object_id == str(conversation_id),
            AuditEntry.at > now - READ_WINDOW,
            AuditEntry.action == "conversation.read",
            AuditEntry.actor_id == reader.id,
        ).limit(1)
    )
    if recent is not None:
        return False
    record(session, reader, "conversation.read", "conversation", conversation_id, details,
           at=now)
    return True


def _checked(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not details:
        return None
    out: dict[str, Any] = {}
    for key, value in details.items():
        if _FORBIDDEN_WORDS & set(key.lower().replace("-", "_").split("_")):
            raise AuditDetailsError(f"audit details may not hold {key!r}: no texts or secrets")
        if isinstance(value, list | tuple):
            if len(value) > MAX_LIST or not all(_scalar(v) for v in value):
                raise AuditDetailsError(f"audit detail {key!r}: a short list of scalars only")
            out[key] = list(value)
        elif _scalar(value):
            out[key] = value
        else:
            raise AuditDetailsError(f"audit detail {key!r} must be a scalar, got {value!r}")
    return out


def _scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_VALUE
    return value is None or isinstance(value, bool | int | float)


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """What the admin API and CSV select: a period [since, until), who, what, which object."""

    since: datetime | None = None
    until: datetime | None = None
    actor_id: int | None = None
    actor_type: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        """The statement restricted to the filter."""
        a = AuditEntry
        if self.since is not None:
            stmt = stmt.where(a.at >= self.since)
        if self.until is not None:
            stmt = stmt.where(a.at < self.until)
        if self.actor_id is not None:
            stmt = stmt.where(a.actor_id == self.actor_id)
        if self.actor_type is not None:
            stmt = stmt.where(a.actor_type == self.actor_type)
        if self.action is not None:
            # "customer" selects every customer.* action; "customer.erased" just that one.
            stmt = stmt.where(a.action == self.action if "." in self.action
                              else a.action.startswith(self.action + ".", autoescape=True))
        if self.object_type is not None:
            stmt = stmt.where(a.object_type == self.object_type)
        if self.object_id is not None:
            stmt = stmt.where(a.object_id == self.object_id)
        return stmt


async def entries(
    session: AsyncSession, where: AuditFilter, limit: int, offset: int
) -> tuple[list[AuditEntry], int]:
    """One page of entries, newest first, and how many match in all."""
    total = await session.scalar(where.apply(select(func.count()).select_from(AuditEntry)))
    rows = await session.scalars(
        where.apply(select(AuditEntry)).order_by(AuditEntry.id.desc()).limit(limit)
        .offset(offset)
    )
    return list(rows), int(total or 0)


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    """An entry as JSON."""
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": {"type": entry.actor_type, "id": entry.actor_id, "name": entry.actor_name},
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "details": entry.details or {},
    }


CSV_COLUMNS = ("id", "at", "actor_type", "actor_id", "actor_name", "action", "object_type",
               "object_id", "details")
CSV_PAGE = 1000


async def csv_chunks(session: AsyncSession, where: AuditFilter) -> AsyncIterator[str]:
    """Every matching entry as CSV, newest first, a page at a time (header first)."""
    import json

    yield _csv_line(CSV_COLUMNS)
    before: int | None = None
    while True:
        stmt = where.apply(select(AuditEntry)).order_by(AuditEntry.id.desc()).limit(CSV_PAGE)
        if before is not None:
            stmt = stmt.where(AuditEntry.id < before)
        page = list(await session.scalars(stmt))
        if not page:
            return
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        for e in page:
            writer.writerow([
                e.id, e.at.isoformat(), e.actor_type, "" if e.actor_id is None else e.actor_id,
                _cell(e.actor_name), e.action, e.object_type or "", e.object_id or "",
                json.dumps(e.details, sort_keys=True) if e.details else "",
            ])
        yield out.getvalue()
        before = page[-1].id


def _cell(value: str) -> str:
    # A spreadsheet runs a cell starting with = + - @ as a formula (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def _csv_line(values: tuple[str, ...]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()


def agent_state(agent: Agent) -> dict[str, Any]:
    """What `record_agent_changes` compares: take it before the change."""
    return {"role": agent.role, "capacity": agent.capacity, "disabled": agent.disabled}


def record_agent_changes(session: AsyncSession, actor: Agent | AuditActor, agent: Agent,
                         before: Mapping[str, Any], now: datetime) -> None:
    """Put each change made to an agent on record: enabled/disabled, role and capacity (from
    and to)."""
    if before["disabled"] != agent.disabled:
        record(session, actor, "agent.disabled" if agent.disabled else "agent.enabled",
               "agent", agent.id, at=now)
    if before["role"] != agent.role:
        record(session, actor, "agent.role_changed", "agent", agent.id,
               {"from": before["role"], "to": agent.role}, at=now)
    if before["capacity"] != agent.capacity:
        record(session, actor, "agent.capacity_changed", "agent", agent.id,
               {"from": before["capacity"], "to": agent.capacity}, at=now)
