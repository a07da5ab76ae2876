"""stats fixes: handed_off_at, the bot's first response in microseconds, stats indexes

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-04 17:20:00.000000

* `conversations.handed_off_at`: when the conversation was first handed to a person. The
  human first response runs from it; `queued_at` is the latest queue entry and moves with
  transfers back to the queue. Backfilled from the first `handoff` touchpoint, else
  `queued_at`.
* `conversations.first_bot_response_us`: receipt of the customer's message to the end of the
  transaction that writes the bot's first reply, in microseconds. Not backfilled: the old
  `first_bot_response_ms` was measured around the in-memory decision only (always 0).
* Indexes for the statistics: (status, handed_off_at) for the queue and first responses,
  (customer_id, opened_at) for the repeat-contact test of first contact resolution, and
  (conversation_id, kind) on touchpoints for the per-conversation window queries.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carebot.db.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE, not a batch copy: SQLite adds and drops columns in place, and a copy
    # of `conversations` would trip the foreign keys pointing at it.
    op.add_column("conversations", sa.Column(
        "handed_off_at", carebot.db.types.UTCDateTime(timezone=True), nullable=True))
    op.add_column("conversations", sa.Column("first_bot_response_us", sa.BigInteger(),
                                             nullable=True))
    op.create_index("ix_conversations_status_handed_off_at", "conversations",
                    ["status", "handed_off_at"])
    op.create_index("ix_conversations_customer_opened_at", "conversations",
                    ["customer_id", "opened_at"])
    op.create_index("ix_touchpoints_conversation_kind", "touchpoints",
                    ["conversation_id", "kind"])
    # Both databases store the timestamps in the same form, so the earliest handoff
    # touchpoint (or, without one, the queue entry) copies across as it is.
    op.execute(sa.text(
        "UPDATE conversations SET handed_off_at = COALESCE("
        " (SELECT MIN(t.created_at) FROM touchpoints t"
        "  WHERE t.conversation_id = conversations.id AND t.kind = 'handoff'),"
        " queued_at)"
        " WHERE handoffs > 0 OR queued_at IS NOT NULL"
    ))


def downgrade() -> None:
    op.drop_index("ix_touchpoints_conversation_kind", table_name="touchpoints")
    op.drop_index("ix_conversations_customer_opened_at", table_name="conversations")
    op.drop_index("ix_conversations_status_handed_off_at", table_name="conversations")
    op.drop_column("conversations", "first_bot_response_us")
    op.drop_column("conversations", "handed_off_at")
