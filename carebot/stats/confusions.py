"""Which FAQs the bot confuses with which: the per-FAQ table's "top confusions".

Two signals, both counted in SQL over the period's touchpoints of the selected conversations:

* **shown_together** — the two FAQs were offered in the same list of suggestions (a
  `faq_suggest` touchpoint; the first MAX_CANDIDATES of its list), counted for both;
* **answered_after** — the bot answered this FAQ and its next FAQ answer in the same
  conversation was the other one (the customer asked again and needed another answer),
  counted for the FAQ answered first, for answers given in the period.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.stats.scope import Scope, T

MAX_CANDIDATES = 10
TOP = 3


async def confusions(
    session: AsyncSession, scope: Scope, top: int = TOP
) -> dict[str, list[dict[str, Any]]]:
    """For each FAQ, the `top` other FAQs it was most confused with (most signals first)."""
    offered = union_all(*(
        select(T.id.label("tp"), T.details[("candidates", i, 0)].as_string().label("faq"))
        .where(T.kind == "faq_suggest", scope.during(T.created_at),
               *scope.selected(T.conversation_id))
        for i in range(MAX_CANDIDATES)
    )).cte("offered")
    a, b = offered.alias("a"), offered.alias("b")
    pairs: dict[tuple[str, str], list[int]] = {}
    for faq, other, n in await session.execute(
        select(a.c.faq, b.c.faq, func.count(b.c.tp.distinct()))
        .join(b, and_(a.c.tp == b.c.tp, a.c.faq != b.c.faq))
        .where(a.c.faq.is_not(None), b.c.faq.is_not(None))
        .group_by(a.c.faq, b.c.faq)
    ):
        pairs.setdefault((faq, other), [0, 0])[0] = int(n)

    answers = (
        select(
            T.faq_id,
            T.created_at,
            func.lead(T.faq_id)
            .over(partition_by=T.conversation_id, order_by=T.id)
            .label("next_faq"),
        )
        .where(
            T.kind == "faq_answer",
            *scope.from_period_start(T.created_at),
            *scope.selected(T.conversation_id),
        )
        .subquery("answers")
    )
    for faq, other, n in await session.execute(
        select(answers.c.faq_id, answers.c.next_faq, func.count())
        .where(scope.during(answers.c.created_at), answers.c.next_faq.is_not(None),
               answers.c.next_faq != answers.c.faq_id)
        .group_by(answers.c.faq_id, answers.c.next_faq)
    ):
        pairs.setdefault((faq, other), [0, 0])[1] = int(n)

    out: dict[str, list[dict[str, Any]]] = {}
    for (faq, other), (together, after) in pairs.items():
        out.setdefault(faq, []).append({
            "faq_id": other, "shown_together": together, "answered_after": after,
            "total": together + after,
        })
    for faq, items in out.items():
        items.sort(key=lambda i: (-i["total"], i["faq_id"]))
        out[faq] = items[:top]
    return out
