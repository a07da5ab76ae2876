"""last steps: the kind of a conversation's latest step and of the one before its resolution

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 21:00:00.000000

How a timeout ended (bot_assumed, abandoned or timeout; carebot.stats.outcomes) was read
per conversation from its touchpoint log, a few index lookups for every timed-out
conversation of the period on every dashboard load (0.5 s for 30 days at 100,000
conversations a quarter). `conversations.last_step_kind` and `resolved_after_kind` are now
kept by the decision core as it records each step; existing conversations are filled in
from their touchpoints here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carebot.db import last_steps

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE, as 0010: a batch copy of `conversations` would trip the foreign
    # keys pointing at it.
    op.add_column("conversations", sa.Column("last_step_kind", sa.String(32), nullable=True))
    op.add_column("conversations", sa.Column("resolved_after_kind", sa.String(32),
                                             nullable=True))
    last_steps.backfill(op.get_bind())


def downgrade() -> None:
    op.drop_column("conversations", "resolved_after_kind")
    op.drop_column("conversations", "last_step_kind")
