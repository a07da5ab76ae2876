"""knowledge gaps marked done on the dashboard

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carebot.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "knowledge_gaps_done",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("question", sa.String(length=500), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("done_by", BIG_ID, nullable=True),
        sa.Column("done_at", carebot.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["done_by"], ["agents.id"], name=op.f("fk_knowledge_gaps_done_done_by_agents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_gaps_done")),
        sa.UniqueConstraint("question", name=op.f("uq_knowledge_gaps_done_question")),
    )


def downgrade() -> None:
    op.drop_table("knowledge_gaps_done")
