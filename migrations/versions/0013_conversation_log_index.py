"""conversation log index: touchpoints by conversation and log order, with kind and time

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 21:10:00.000000

The SLA breaches and queue stays look up, for each queue entry, the conversation's next
queue step. Through the conversation-id index each lookup read the conversation's
touchpoints from the table (0.4 s per 30 days at 100,000 conversations a quarter).
(conversation_id, id) with the kind and time included answers it from the index alone and
serves every lookup by conversation the old index served, so it replaces it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_touchpoints_conversation_log", "touchpoints", ["conversation_id", "id"],
                    postgresql_include=["kind", "created_at"])
    op.drop_index("ix_touchpoints_conversation_id", table_name="touchpoints")


def downgrade() -> None:
    op.create_index("ix_touchpoints_conversation_id", "touchpoints", ["conversation_id"])
    op.drop_index("ix_touchpoints_conversation_log", table_name="touchpoints")
