"""languages: the customer's remembered language, the conversation's language and an agent's
override of it, and per-language translations of knowledge-base entries

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 17:15:00.000000

All columns are nullable: rows written before this revision have no language and speak the
default language (CAREBOT_DEFAULT_LANGUAGE), which is what they were answered in.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=16), nullable=True))
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("language_override", sa.String(length=16), nullable=True))
    with op.batch_alter_table("faq_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("translations", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("faq_entries", schema=None) as batch_op:
        batch_op.drop_column("translations")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("language_override")
        batch_op.drop_column("language")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("language")
