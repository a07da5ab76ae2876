"""Customers linked as one person: which customers a person is (see `carebot.routing.people`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Customer, CustomerLink


async def person_of(session: AsyncSession, customer_id: int) -> int:
    """The first customer of the group this one belongs to (itself when not linked)."""
    linked = await session.scalar(
        select(CustomerLink.person_id).where(CustomerLink.customer_id == customer_id)
    )
    return int(linked) if linked is not None else customer_id


async def _members(session: AsyncSession, person: int) -> list[int]:
    rows = await session.scalars(
        select(CustomerLink.customer_id).where(CustomerLink.person_id == person)
    )
    return sorted({person, *rows})


async def group_ids(session: AsyncSession, customer_id: int, *, lock: bool = False) -> list[int]:
    """Every customer of this customer's person, by id; `lock` holds their rows (in id order,
    read again under the lock in case a link changed meanwhile)."""
    while True:
        ids = await _members(session, await person_of(session, customer_id))
        if not lock:
            return ids
        await session.execute(
            select(Customer.id).where(Customer.id.in_(ids)).order_by(Customer.id)
            .with_for_update()
        )
        if await _members(session, await person_of(session, customer_id)) == ids:
            return ids
