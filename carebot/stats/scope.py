"""What a statistics request covers: the period, the filters and the predicates built from
them, which every report applies (the cohorts are defined in carebot.stats.metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, case, cast, exists, false, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from carebot.db.models import Conversation, FaqEntry, Survey, Touchpoint
from carebot.stats.period import Period
from carebot.stats.sql import Sql

C = Conversation
T = Touchpoint
S = Survey

WORK_MEM = "64MB"  # per statement sort memory for the stats queries (PostgreSQL)


@dataclass(frozen=True)
class Filters:
    """Which conversations the statistics cover (all when every field is None)."""

    channel: str | None = None
    agent_id: int | None = None
    faq_id: str | None = None
    tag: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form (only the filters that are set)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class StatsQuery:
    """A period, filters and the thresholds some definitions need."""

    period: Period
    filters: Filters = field(default_factory=Filters)
    # First contact resolution: no new conversation from the customer within this window.
    repeat_window: timedelta = timedelta(days=7)
    # Queue SLA: a queue stay longer than this is a breach (carebot.stats.segments).
    sla_seconds: float = 300.0
    # "Now" for what is still going on (a queue stay still open); None: the wall clock.
    now: datetime | None = None


class Scope:
    """The query's predicates, built once per request (the tag filter needs a lookup)."""

    def __init__(self, query: StatsQuery, sql: Sql, preds: list[ColumnElement[bool]]) -> None:
        self.query = query
        self.period = query.period
        self.sql = sql
        self.preds = preds
        # When the earliest conversation of the resolved cohort opened (`build` with
        # `resolved_cohort`): nothing of the cohort is older, in the log or the
        # conversations, so the queries over the cohort need not read further back.
        self.resolved_opened_from: datetime | None = None

    @classmethod
    async def build(
        cls, session: AsyncSession, query: StatsQuery, *, resolved_cohort: bool = False
    ) -> Scope:
        """Resolve the filters into predicates on `conversations`; `resolved_cohort`: also
        look up when the resolved cohort's earliest conversation opened."""
        sql = Sql.of(session)
        await prepare(session)
        f = query.filters
        preds: list[ColumnElement[bool]] = []
        if f.channel is not None:
            preds.append(C.channel == f.channel)
        if f.agent_id is not None:
            preds.append(C.assigned_agent_id == f.agent_id)
        if f.faq_id is not None or f.tag is not None:
            faq_ids = await _faq_ids(session, f.faq_id, f.tag)
            if not faq_ids:
                preds.append(false())
            else:
                preds.append(C.id.in_(
                    select(T.conversation_id).where(T.kind == "faq_answer", T.faq_id.in_(faq_ids))
                ))
        scope = cls(query, sql, preds)
        if resolved_cohort:
            # Through the resolved_at index (LIMIT/OFFSET keeps PostgreSQL from walking the
            # opened_at index from the beginning for the minimum instead).
            cohort = select(C.opened_at).where(scope.during(C.resolved_at)).limit(
                10_000_000).subquery("cohort")
            scope.resolved_opened_from = await session.scalar(
                select(func.min(cohort.c.opened_at)))
        return scope

    @property
    def now(self) -> datetime:
        """The query's "now" (the service's clock for API requests)."""
        return self.query.now or datetime.now(UTC)

    def resolution_ms(self) -> ColumnElement[int]:
        """Resolution time of a resolved conversation: opened -> resolved; for a timeout,
        opened -> the customer went silent (the later of the last bot answer and the last
        customer message), not when the timer happened to fire."""
        silent = self.sql.latest(C.last_bot_answer_at, C.last_customer_message_at)
        end = case(
            (C.resolved_by == "timeout", func.coalesce(silent, C.resolved_at)),
            else_=C.resolved_at,
        )
        return self.sql.ms_between(C.opened_at, end)

    def bot_first_response_ms(self) -> ColumnElement[Any]:
        """The bot's first response in milliseconds with microsecond resolution (receipt of
        the message -> the end of the transaction writing the reply); NULL before it was
        measured so (conversations from before migration 0010)."""
        value: ColumnElement[Any] = cast(C.first_bot_response_us, Float) / 1000.0
        return value

    def during(self, column: Any) -> ColumnElement[bool]:
        """The timestamp is in the period."""
        return and_(column >= self.period.start, column < self.period.end)

    def from_period_start(self, column: Any) -> list[ColumnElement[bool]]:
        """The touchpoint (`column`: its time) is from the period's start on: all a LEAD over
        a conversation's log needs for the rows in the period, as the log's times never
        decrease along its ids. It lets the database read the log from the start of the
        period instead of every conversation's whole history."""
        return [column >= self.period.start]

    def opened(self) -> list[ColumnElement[bool]]:
        """Conversations of the opened cohort."""
        return [self.during(C.opened_at), *self.preds]

    def resolved(self) -> list[ColumnElement[bool]]:
        """Conversations of the resolved cohort."""
        return [self.during(C.resolved_at), *self.preds]

    def selected(self, column: Any) -> list[ColumnElement[bool]]:
        """`column` (a conversation id) belongs to a selected conversation."""
        if not self.preds:
            return []
        return [column.in_(select(C.id).where(*self.preds))]

    def repeat_contact(self, *, resolved_cohort: bool = False) -> ColumnElement[bool]:
        """The customer opened another conversation (any channel) after this one opened and
        within the repeat window after its resolution.

        `resolved_cohort`: the conversation is one of the period's resolved cohort (the
        scope built with `resolved_cohort`), so the other one opened after the cohort's
        earliest opening and before the period's end plus the window: stated, the database
        reads those conversations only, not every conversation ever opened."""
        later = aliased(Conversation)
        window_ms = int(self.query.repeat_window.total_seconds() * 1000)
        bounds: list[ColumnElement[bool]] = []
        if resolved_cohort and self.resolved_opened_from is not None:
            bounds = [later.opened_at > self.resolved_opened_from,
                      later.opened_at <= self.period.end + self.query.repeat_window]
        return exists().where(
            later.customer_id == C.customer_id,
            later.id != C.id,
            later.opened_at > C.opened_at,
            self.sql.within_ms(C.resolved_at, later.opened_at, window_ms),
            *bounds,
        )

    def first_contact_resolution(self, *, resolved_cohort: bool = False) -> ColumnElement[bool]:
        """Resolved, never reopened and no repeat contact (`resolved_cohort`: as for
        `repeat_contact`)."""
        return and_(C.reopen_count == 0,
                    ~self.repeat_contact(resolved_cohort=resolved_cohort))


# PostgreSQL settings for the statistics' transactions (`set_config(..., true)`: this
# transaction only), all in one statement: one round trip per session, and the tiles open
# sixteen.
PG_STATS_SETTINGS = (
    "SELECT "
    # The window functions sort a few hundred thousand rows at most; in memory, not on disk.
    f"set_config('work_mem', '{WORK_MEM}', true), "
    # JIT compiling these one-off analytical queries cost more than it saved (up to a second
    # per query on the dashboard's benchmark).
    "set_config('jit', 'off', true), "
    # The period's bounds are parameters; a generic plan cached for a prepared statement
    # would not know how few rows a short period selects and would scan.
    "set_config('plan_cache_mode', 'force_custom_plan', true), "
    # The server cancels a slow statistics statement (a clear error for that one request)
    # before the client's own timeout, which would take it for a hung database: 90% of the
    # connection's statement timeout (0, no timeout, stays 0).
    "set_config('statement_timeout', (floor(extract(epoch from "
    "current_setting('statement_timeout')::interval) * 900))::bigint::text, true)"
)


async def prepare(session: AsyncSession) -> None:
    """Apply the statistics' settings to the session's transaction (PostgreSQL only)."""
    if session.get_bind().dialect.name == "sqlite":
        return
    await session.execute(text(PG_STATS_SETTINGS))


async def _faq_ids(session: AsyncSession, faq_id: str | None, tag: str | None) -> list[str]:
    # faq_entries is small (the knowledge base), so the tag match runs in Python.
    rows = await session.execute(select(FaqEntry.id, FaqEntry.tags))
    wanted = tag.casefold() if tag is not None else None
    ids = []
    for fid, tags in rows:
        if faq_id is not None and fid != faq_id:
            continue
        if wanted is not None and wanted not in {str(t).casefold() for t in tags or ()}:
            continue
        ids.append(fid)
    if faq_id is not None and tag is None and not ids:
        ids.append(faq_id)  # an FAQ since removed from the knowledge base still has answers
    return ids


def period_dict(query: StatsQuery) -> dict[str, Any]:
    """The period and filters as reported back (instants in the requested time zone)."""
    p = query.period
    return {
        "from": p.local(p.start).isoformat(),
        "to": p.local(p.end).isoformat(),
        "tz": p.tz_name,
        "filters": query.filters.as_dict(),
    }
