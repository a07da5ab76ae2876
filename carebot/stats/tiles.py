"""The dashboard's headline tiles: the period's key figures next to the previous period's.

Every tile is read from the summary (`carebot.stats.metrics.summary`) of the period and of the
previous period of equal length (`carebot.stats.period.previous_period`), so a tile always
shows the number `/api/v1/stats/summary` gives for the same filters. The bot's assumed
resolutions are split by outcome (`carebot.stats.outcomes`): `bot_assumed` and `abandoned`
tiles, the rest of the timeouts being the `timeout` outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from carebot.stats.metrics import summary
from carebot.stats.period import Period, previous_period
from carebot.stats.scope import StatsQuery, period_dict
from carebot.stats.sql import ratio

Figures = dict[str, Any]  # a summary (the outcome counts are under "outcomes")


@dataclass(frozen=True)
class Tile:
    """How one tile is read from a period's figures.

    `unit` says how to show it: count, rate (0-1), ms or score; `better` which direction is
    good (`higher`, `lower`, or None when neither is); `n` what the value was computed from
    (the denominator or the number of values; None for plain counts)."""

    key: str
    label: str
    unit: str
    better: str | None
    value: Callable[[Figures], float | int | None]
    n: Callable[[Figures], int] | None = None


def _path(*keys: str) -> Callable[[Figures], Any]:
    def get(figures: Figures) -> Any:
        value: Any = figures
        for key in keys:
            value = value[key]
        return value

    return get


def _share(outcome: str) -> Callable[[Figures], float | None]:
    return lambda f: ratio(f["outcomes"][outcome], f["volume"]["resolved"])


_RESOLVED = _path("volume", "resolved")
_OPENED = _path("volume", "opened")

TILES: tuple[Tile, ...] = (
    Tile("conversations", "Conversations", "count", None, _OPENED),
    Tile("containment", "Bot containment", "rate", "higher",
         _path("bot", "containment_rate"), _RESOLVED),
    Tile("bot_confirmed", "Bot resolved, confirmed", "rate", "higher",
         _share("bot_confirmed"), _RESOLVED),
    Tile("bot_assumed", "Bot resolved, assumed", "rate", "higher",
         _share("bot_assumed"), _RESOLVED),
    Tile("abandoned", "Abandoned", "rate", "lower", _share("abandoned"), _RESOLVED),
    Tile("handoff_rate", "Handoff rate", "rate", "lower", _path("bot", "handoff_rate"),
         _OPENED),
    Tile("first_contact_resolution", "First-contact resolution", "rate", "higher",
         _path("first_contact_resolution", "rate"), _RESOLVED),
    Tile("first_response_median", "First response (human), median", "ms", "lower",
         _path("first_response_ms", "human", "median"),
         _path("first_response_ms", "human", "count")),
    Tile("first_response_p90", "First response (human), p90", "ms", "lower",
         _path("first_response_ms", "human", "p90"),
         _path("first_response_ms", "human", "count")),
    Tile("resolution_time_median", "Resolution time, median", "ms", "lower",
         _path("resolution_time_ms", "median"), _path("resolution_time_ms", "count")),
    Tile("csat", "CSAT (4-5)", "rate", "higher", _path("csat", "satisfied_rate"),
         _path("csat", "answered")),
    Tile("ces", "CES average (1-7)", "score", "higher", _path("ces", "mean"),
         _path("ces", "answered")),
    Tile("effort", "Effort per conversation", "score", "lower",
         _path("effort", "per_conversation"), _RESOLVED),
    Tile("sla_breaches", "SLA breaches", "count", "lower", _path("sla", "breaches")),
)


def _delta(value: Any, previous: Any) -> float | int | None:
    if value is None or previous is None:
        return None
    diff = value - previous
    return diff if isinstance(diff, int) else round(diff, 4)


def _change(value: Any, previous: Any) -> float | None:
    """The relative change (value - previous) / previous; None when previous is 0 or None."""
    if value is None or not previous:
        return None
    return round(float(value - previous) / float(previous), 4)


async def _figures(session: AsyncSession, query: StatsQuery) -> Figures:
    # The outcome counts are part of the summary; handle time and queue waits are not tiles.
    return await summary(session, query, segments=False)


def _period_bounds(period: Period) -> dict[str, str]:
    return {"from": period.local(period.start).isoformat(),
            "to": period.local(period.end).isoformat()}


async def tiles(session: AsyncSession, query: StatsQuery) -> dict[str, Any]:
    """The headline tiles of the period against the previous period of equal length."""
    before = replace(query, period=previous_period(query.period))
    if session.get_bind().dialect.name == "sqlite":  # one file: nothing to gain in parallel
        now, then = await _figures(session, query), await _figures(session, before)
    else:
        # The two periods are independent: the previous one on a connection of its own.
        async def previous_figures() -> Figures:
            async with AsyncSession(session.bind) as other:
                return await _figures(other, before)

        now, then = await asyncio.gather(_figures(session, query), previous_figures())
    items = []
    for tile in TILES:
        value, previous = tile.value(now), tile.value(then)
        items.append({
            "key": tile.key,
            "label": tile.label,
            "unit": tile.unit,
            "better": tile.better,
            "value": value,
            "previous": previous,
            "delta": _delta(value, previous),
            "change": _change(value, previous),
            "n": tile.n(now) if tile.n else None,
            "previous_n": tile.n(then) if tile.n else None,
        })
    return {
        "period": period_dict(query),
        "previous_period": _period_bounds(before.period),
        "tiles": items,
        "outcomes": {"current": now["outcomes"], "previous": then["outcomes"]},
    }
