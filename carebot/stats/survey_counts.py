"""CSAT and CES survey counts (sent, answered, good, score sum) and how the reports show
them; the summary, the time series and the per-agent and per-FAQ rows share them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.domain.journey import CSAT_POSITIVE
from carebot.stats.scope import S, Scope
from carebot.stats.sql import count_if, ratio

CES_EASY = 5  # CES 5-7 counts as easy


@dataclass(frozen=True)
class SurveyCounts:
    """Surveys sent, answered, answered with a good score, and the sum of answered scores."""

    sent: int
    answered: int
    good: int
    score_sum: int


NO_SURVEYS = SurveyCounts(0, 0, 0, 0)


def survey_good() -> ColumnElement[bool]:
    """The survey was answered with a good score (CSAT 4-5, CES 5-7)."""
    return and_(
        S.status == "answered",
        case((S.kind == "ces", S.score >= CES_EASY), else_=S.score >= CSAT_POSITIVE),
    )


def survey_aggregates() -> tuple[ColumnElement[Any], ...]:
    """The columns of a grouped survey query that make a `SurveyCounts`, in its order."""
    return (
        func.count(),
        count_if(S.status == "answered"),
        count_if(survey_good()),
        func.coalesce(func.sum(case((S.status == "answered", S.score), else_=0)), 0),
    )


async def survey_counts(session: AsyncSession, scope: Scope) -> dict[str, SurveyCounts]:
    """Counts per survey kind (csat, ces) of the surveys sent in the period."""
    rows = await session.execute(
        select(S.kind, *survey_aggregates())
        .where(scope.during(S.sent_at), *scope.selected(S.conversation_id))
        .group_by(S.kind)
    )
    return {kind: SurveyCounts(*(int(v) for v in rest)) for kind, *rest in rows}


def survey_dict(s: SurveyCounts, good: str) -> dict[str, Any]:
    """JSON form, with rates; `good` names the good answers ("satisfied", "easy")."""
    return {
        "sent": s.sent,
        "answered": s.answered,
        "response_rate": ratio(s.answered, s.sent),
        good: s.good,
        f"{good}_rate": ratio(s.good, s.answered),
        "mean": round(s.score_sum / s.answered, 4) if s.answered else None,
    }
