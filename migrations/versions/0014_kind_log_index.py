"""kind log index: touchpoints by kind and time, with conversation, log order, agent and FAQ

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 23:00:00.000000

The per-agent, per-FAQ and queue statistics run windows over the touchpoints of a few kinds
since the period's start (the next step after a resolution, an FAQ answer, an assignment).
The (kind, created_at) index found those rows but each was then read from the table, so
PostgreSQL preferred scanning every touchpoint since the period's start and filtering out
nine in ten (0.3-0.4 s of the dashboard's per-agent and per-FAQ requests per 30 days at
100,000 conversations a quarter). With the columns those windows read included, PostgreSQL
answers them from the index alone. It serves every query the old index served, so it
replaces it. SQLite has no included columns: there the index stays (kind, created_at).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_touchpoints_kind_log", "touchpoints", ["kind", "created_at"],
                    postgresql_include=["conversation_id", "id", "agent_id", "faq_id"])
    op.drop_index("ix_touchpoints_kind_created_at", table_name="touchpoints")


def downgrade() -> None:
    op.create_index("ix_touchpoints_kind_created_at", "touchpoints", ["kind", "created_at"])
    op.drop_index("ix_touchpoints_kind_log", table_name="touchpoints")
