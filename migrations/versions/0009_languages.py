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


# Plain ALTER TABLE (SQLite has ADD and DROP COLUMN): batch mode would copy and drop
# `conversations`, which the foreign keys of the rows pointing at it forbid on a database with
# data in it.
def upgrade() -> None:
    op.add_column("customers", sa.Column("language", sa.String(length=16), nullable=True))
    op.add_column("conversations", sa.Column("language", sa.String(length=16), nullable=True))
    op.add_column("conversations",
                  sa.Column("language_override", sa.String(length=16), nullable=True))
    op.add_column("faq_entries", sa.Column("translations", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("faq_entries", "translations")
    op.drop_column("conversations", "language_override")
    op.drop_column("conversations", "language")
    op.drop_column("customers", "language")
