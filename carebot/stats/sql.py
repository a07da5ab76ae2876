"""Portable SQL building blocks for the statistics: durations, local buckets, percentiles.

Everything here produces SQL that runs the same way on SQLite (>= 3.25, window functions) and
PostgreSQL; where the two need different spellings, `Sql` picks by dialect name. Percentiles
are computed in the database with window functions (ROW_NUMBER / COUNT OVER a partition), one
query for all of a metric's percentiles, so no statistic loads every row into Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CompoundSelect,
    Integer,
    Select,
    String,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.types import UTCDateTime
from carebot.stats.period import Period, offset_segments

# The percentiles reported for every duration, as exact fractions (integer SQL arithmetic).
PERCENTILES: dict[str, tuple[int, int]] = {"median": (1, 2), "p90": (9, 10)}


class Sql:
    """Dialect-specific spellings (`sqlite` or `postgresql`)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.sqlite = dialect == "sqlite"

    @classmethod
    def of(cls, session: AsyncSession) -> Sql:
        """The helpers for the session's database."""
        return cls(session.get_bind().dialect.name)

    def ms_between(self, start: Any, end: Any) -> ColumnElement[int]:
        """Whole milliseconds from `start` to `end` (two timestamp expressions)."""
        if self.sqlite:
            # SQLite keeps UTC timestamps as ISO text; julianday() reads them as fractional days
            # (precise to about 50 microseconds at today's dates, well below a millisecond).
            diff: ColumnElement[Any] = (func.julianday(end) - func.julianday(start)) * 86_400_000.0
        else:
            diff = func.extract("epoch", end - start) * 1000
        return cast(func.round(diff), BigInteger)

    def latest(self, a: Any, b: Any) -> ColumnElement[Any]:
        """The later of two timestamps, ignoring a NULL one (NULL only when both are)."""
        if self.sqlite:
            # Both are stored as ISO text in one format: text order is time order. SQLite's
            # scalar max() is NULL when any argument is, hence the coalesces.
            return func.max(func.coalesce(a, b), func.coalesce(b, a))
        return func.greatest(a, b)

    def latest_of(self, *values: Any) -> ColumnElement[Any]:
        """The latest of several timestamps, ignoring NULL ones (NULL only when all are)."""
        if len(values) == 1:
            return values[0]  # type: ignore[no-any-return]
        if self.sqlite:
            # ISO text in one format sorts as time; '' sorts before any of it and stands in
            # for NULL, which would make SQLite's scalar max() NULL.
            blank: ColumnElement[Any] = literal_column("''")
            return func.nullif(func.max(*(func.coalesce(v, blank) for v in values)), blank)
        return func.greatest(*values)

    def within_ms(self, start: Any, end: Any, ms: int) -> ColumnElement[bool]:
        """`end` is no more than `ms` milliseconds after `start` (or before it)."""
        if self.sqlite:
            within: ColumnElement[bool] = self.ms_between(start, end) <= ms
            return within
        # Kept as timestamp arithmetic so PostgreSQL can compare without extracting epochs.
        later: ColumnElement[bool] = end <= start + func.make_interval(
            0, 0, 0, 0, 0, 0, ms / 1000.0
        )
        return later

    def local_bucket(self, column: Any, period: Period, unit: str) -> ColumnElement[str]:
        """The local date (YYYY-MM-DD) of the day or week (Monday) a UTC timestamp falls in.

        The UTC offsets come from Python's time zone database (`offset_segments`), so both
        databases bucket identically and neither needs its own time zone tables.
        """
        segments = offset_segments(period)
        if self.sqlite:
            modifier: ColumnElement[Any] = self._by_segment(
                column, segments, lambda s: f"{s:+d} seconds"
            )
            if unit == "week":
                return func.date(_whole_seconds(column), modifier, "weekday 0", "-6 days")
            return func.date(_whole_seconds(column), modifier)
        local = self._pg_local(column, segments)
        return func.to_char(func.date_trunc(unit, local), "YYYY-MM-DD")

    def local_hour(self, column: Any, period: Period) -> ColumnElement[str]:
        """The local hour a UTC timestamp falls in, as `period.hour_label` writes it
        (`2026-03-03T09:00+01:00`): the offset keeps the two 02:00 hours of an autumn
        daylight-saving change apart."""
        segments = offset_segments(period)
        offset = self._by_segment(column, segments, _offset_text)
        if self.sqlite:
            modifier: ColumnElement[Any] = self._by_segment(
                column, segments, lambda s: f"{s:+d} seconds"
            )
            hour: ColumnElement[Any] = func.strftime(
                "%Y-%m-%dT%H:00", _whole_seconds(column), modifier
            )
        else:
            hour = func.to_char(
                func.date_trunc("hour", self._pg_local(column, segments)),
                'YYYY-MM-DD"T"HH24:00',
            )
        return hour.concat(offset)

    def local_weekday_hour(
        self, column: Any, period: Period
    ) -> tuple[ColumnElement[int], ColumnElement[int]]:
        """The local weekday (0 Monday .. 6 Sunday) and hour (0-23) of a UTC timestamp."""
        segments = offset_segments(period)
        if self.sqlite:
            modifier: ColumnElement[Any] = self._by_segment(
                column, segments, lambda s: f"{s:+d} seconds"
            )
            moment = _whole_seconds(column)
            sunday_first = cast(func.strftime("%w", moment, modifier), Integer)
            return (
                (sunday_first + 6) % 7,
                cast(func.strftime("%H", moment, modifier), Integer),
            )
        local = self._pg_local(column, segments)
        return (
            cast(func.extract("isodow", local), Integer) - 1,
            cast(func.extract("hour", local), Integer),
        )

    def _pg_local(self, column: Any, segments: Sequence[tuple[Any, int]]) -> ColumnElement[Any]:
        seconds = self._by_segment(column, segments, lambda s: s)
        local: ColumnElement[Any] = func.timezone("UTC", column) + func.make_interval(
            0, 0, 0, 0, 0, 0, seconds
        )
        return local

    @staticmethod
    def _by_segment(
        column: Any, segments: Sequence[tuple[Any, int]], value: Any
    ) -> ColumnElement[Any]:
        if len(segments) == 1:
            return literal(value(segments[0][1]))
        whens = [
            (column < literal(nxt[0], UTCDateTime()), value(seg[1]))
            for seg, nxt in pairwise(segments)
        ]
        return case(*whens, else_=value(segments[-1][1]))

    def group_concat(self, column: Any) -> ColumnElement[str]:
        """The distinct non-null values of a text column joined with ',' (in no set order)."""
        if self.sqlite:
            # SQLite's DISTINCT aggregates take one argument: the separator is the default ','.
            return func.group_concat(column.distinct())
        return func.string_agg(cast(column, String).distinct(), ",")


def _whole_seconds(column: Any) -> ColumnElement[Any]:
    """SQLite: the stored UTC text cut to whole seconds. SQLite's date functions round the
    fraction to milliseconds, so 23:59:59.9999995 would otherwise land in the next day; the
    buckets are hours or longer, so dropping the fraction never moves a timestamp out of its
    bucket."""
    return func.substr(column, 1, 19)


def _offset_text(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Distribution:
    """Count, mean and percentiles (linear interpolation, like percentile_cont) of values."""

    count: int
    total: int | float
    mean: float | None
    median: float | None
    p90: float | None

    @classmethod
    def empty(cls) -> Distribution:
        """No values."""
        return cls(0, 0, None, None, None)

    def as_dict(self, digits: int = 1) -> dict[str, Any]:
        """JSON form, rounded to 0.1 ms (`digits` 3: to the microsecond)."""
        return {
            "count": self.count,
            "total": _total(self.total, digits),
            "mean": _round(self.mean, digits),
            "median": _round(self.median, digits),
            "p90": _round(self.p90, digits),
        }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _total(value: Any, digits: int = 1) -> int | float:
    """A sum of whole milliseconds stays an integer; of fractional ones, rounded."""
    number = _number(value)
    return int(number) if number.is_integer() else round(number, digits)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, Decimal | int | float) else float(value or 0)


async def distributions(
    session: AsyncSession, values: Select[Any] | CompoundSelect[Any], groups: Sequence[str] = ()
) -> dict[tuple[Any, ...], Distribution]:
    """Distributions of column `v` of `values`, per combination of its `groups` columns.

    One query: the values are ranked per group by a window function and only the rows at the
    percentile positions (and the group's count and sum) come back.
    """
    vals = values.subquery("vals")
    gcols = [vals.c[g] for g in groups]
    if not Sql.of(session).sqlite:
        return await _pg_distributions(session, vals, gcols)
    n = func.count().over(partition_by=gcols or None)
    rn = func.row_number().over(partition_by=gcols or None, order_by=vals.c.v) - 1
    ranked = (
        select(*gcols, vals.c.v.label("v"), rn.label("rn"), n.label("n"))
        .where(vals.c.v.is_not(None))
        .subquery("ranked")
    )
    rg = [ranked.c[g] for g in groups]
    picks: list[ColumnElement[Any]] = []
    for num, den in PERCENTILES.values():
        lo = ((ranked.c.n - 1) * num) // den
        hi = ((ranked.c.n - 1) * num + den - 1) // den
        picks.append(func.max(case((ranked.c.rn == lo, ranked.c.v))))
        picks.append(func.max(case((ranked.c.rn == hi, ranked.c.v))))
    stmt = select(*rg, func.max(ranked.c.n), func.sum(ranked.c.v), *picks)
    if rg:
        stmt = stmt.group_by(*rg)
    out: dict[tuple[Any, ...], Distribution] = {}
    for row in await session.execute(stmt):
        key = tuple(row[: len(groups)])
        count, total, *points = row[len(groups):]
        if not count:
            continue
        count = int(count)
        pct: list[float] = []
        for i, (num, den) in enumerate(PERCENTILES.values()):
            lo_v, hi_v = _number(points[2 * i]), _number(points[2 * i + 1])
            frac = ((count - 1) * num % den) / den
            pct.append(lo_v + (hi_v - lo_v) * frac)
        total_n = _total(total, 6)
        out[key] = Distribution(count, total_n, total_n / count, pct[0], pct[1])
    return out


async def _pg_distributions(
    session: AsyncSession, vals: Any, gcols: list[Any]
) -> dict[tuple[Any, ...], Distribution]:
    # PostgreSQL's ordered-set aggregate sorts each group once, several times faster than
    # ranking every row with window functions; it interpolates exactly as the SQLite path.
    pcts = [
        func.percentile_cont(num / den).within_group(vals.c.v)
        for num, den in PERCENTILES.values()
    ]
    stmt = select(*gcols, func.count(vals.c.v), func.sum(vals.c.v), *pcts).where(
        vals.c.v.is_not(None)
    )
    if gcols:
        stmt = stmt.group_by(*gcols)
    out: dict[tuple[Any, ...], Distribution] = {}
    for row in await session.execute(stmt):
        key = tuple(row[: len(gcols)])
        count, total, median, p90 = row[len(gcols):]
        if not count:
            continue
        total_n = _total(total, 6)
        out[key] = Distribution(
            int(count), total_n, total_n / int(count), _number(median), _number(p90)
        )
    return out


def ratio(part: int, whole: int) -> float | None:
    """part / whole rounded to 4 decimals; None when there is nothing to divide by."""
    return round(part / whole, 4) if whole else None


def count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """How many rows satisfy `condition` (0, not NULL, when there are none)."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)
