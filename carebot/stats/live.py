"""The live panel: the queue, the agents on duty and today's SLA breaches, as of now.

The figures are read from the conversations and agents as they are (no period): the queue's
length, how long its longest-waiting customer has waited (since the conversation last entered
the queue: the handoff, or a transfer back to it), how many wait longer than the SLA, the open
conversations by status, and the agents online or away with their load (open conversations
assigned to them, on every channel, against their capacity). SLA breaches are counted since
the local midnight of the requested time zone, as the summary counts them (queue stays longer
than the SLA, one still waiting too, whenever the timer alerted). The filters select
conversations as everywhere else; `agent` also narrows the agents listed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Agent
from carebot.stats.period import Period, local_midnight
from carebot.stats.scope import C, Scope, StatsQuery
from carebot.stats.segments import sla_breaches
from carebot.stats.sql import count_if

ON_DUTY = ("online", "away")
OPEN = ("bot", "queued", "assigned")


def today(now: datetime, period_like: Period) -> Period:
    """The local day `now` is in, in the time zone of `period_like`."""
    day = now.astimezone(period_like.tz).date()
    tz = period_like.tz
    return Period(local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz), tz)


async def live(session: AsyncSession, query: StatsQuery, now: datetime) -> dict[str, Any]:
    """The live panel for `query`'s filters; `query.period` must be today (see `today`)."""
    scope = await Scope.build(session, replace(query, now=now))
    queued = C.status == "queued"
    sla_edge = now - timedelta(seconds=query.sla_seconds)
    status_counts = dict.fromkeys(OPEN, 0)
    for status, n in await session.execute(
        select(C.status, func.count()).where(C.status.in_(OPEN), *scope.preds)
        .group_by(C.status)
    ):
        status_counts[status] = int(n)
    oldest, over_sla = (await session.execute(
        select(func.min(C.queued_at), count_if(C.queued_at <= sla_edge))
        .where(queued, *scope.preds)
    )).one()
    breaches = int(await session.scalar(
        select(func.count()).select_from(sla_breaches(scope).subquery("breaches"))
    ) or 0)

    load = (
        select(C.assigned_agent_id.label("agent_id"), func.count().label("n"))
        .where(C.status == "assigned", C.assigned_agent_id.is_not(None))
        .group_by(C.assigned_agent_id)
        .subquery("load")
    )
    agents_q = (
        select(Agent.id, Agent.name, Agent.role, Agent.status, Agent.capacity,
               func.coalesce(load.c.n, 0))
        .outerjoin(load, load.c.agent_id == Agent.id)
        .where(Agent.status.in_(ON_DUTY), Agent.disabled.is_(False))
        .order_by(Agent.status.desc(), Agent.name, Agent.id)  # online before away
    )
    if query.filters.agent_id is not None:
        agents_q = agents_q.where(Agent.id == query.filters.agent_id)
    agents = [
        {"id": aid, "name": name, "role": role, "status": status, "load": int(n),
         "capacity": capacity}
        for aid, name, role, status, capacity, n in await session.execute(agents_q)
    ]
    p = query.period
    longest = None if oldest is None else round(max(0.0, (now - oldest).total_seconds()), 1)
    return {
        "now": p.local(now).isoformat(),
        "tz": p.tz_name,
        "today": {"from": p.local(p.start).isoformat(), "to": p.local(p.end).isoformat()},
        "filters": query.filters.as_dict(),
        "queue": {
            "length": status_counts["queued"],
            "longest_wait_seconds": longest,
            "over_sla": int(over_sla or 0),
            "sla_seconds": query.sla_seconds,
        },
        "open": status_counts,
        "agents": {
            "online": sum(a["status"] == "online" for a in agents),
            "away": sum(a["status"] == "away" for a in agents),
            "items": agents,
        },
        "sla_breaches_today": breaches,
    }
