"""Writing one decision of the core from an ORM session (agent actions, timers).

The inbound batch writes many decisions with its bulk statements; an agent action or a timer
writes one, through the same writers (`carebot.routing.batch`), on the session's connection,
so a reply or a touchpoint is stored the same way whoever caused it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db import bulk
from carebot.db.batch_sql import CONVERSATIONS
from carebot.db.previews import with_glances
from carebot.domain.events import Effects
from carebot.domain.messages import OutboundMessage
from carebot.routing.batch import write_replies_and_touches, write_surveys
from carebot.routing.decision import CONV_MUTABLE, Decision
from carebot.routing.policy import Policy


def _insert_each(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    # A handful of rows: one INSERT … RETURNING each, on any dialect.
    stmt = insert(table).returning(table.c.id)
    return [int(conn.execute(stmt, row).scalar_one()) for row in rows]


async def write(
    session: AsyncSession, d: Decision, recipient: str, policy: Policy, effects: Effects
) -> list[int]:
    """Write the decision in the session's transaction; its events (with the customer's
    name and last message) and outbox wake-up go to `effects` (published after commit).
    Returns the ids of the messages it stored."""
    sent: list[OutboundMessage] = []

    def run(conn: Connection) -> list[int]:
        def insert_rows(table: Table, rows: list[dict[str, Any]]) -> list[int]:
            return _insert_each(conn, table, rows)

        write_surveys(conn, d.surveys, insert_rows)
        ids = write_replies_and_touches(
            conn, [(d, d.conv, recipient, None, False, sent)], insert_rows, policy
        )
        bulk.update_by_id(conn, CONVERSATIONS, CONV_MUTABLE, [d.conv.to_row()])
        return ids

    conn = await session.connection()
    ids = await conn.run_sync(run)
    if sent:
        effects.outbox_pending = True
    # Consoles draw their lists from the events: the customer's name and the last message.
    for event in await with_glances(session, d.events):
        effects.emit(event)
    return ids
