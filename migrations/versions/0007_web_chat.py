"""web chat: sites (allowed origins, look, identity secret) and their visitors

Revision ID: 0007
Revises: 0005 (to be re-chained onto 0006 when both land)
Create Date: 2026-12-10 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carebot.db.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, carebot.db.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "web_sites",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("origins", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("greeting", sa.Text(), nullable=False),
        sa.Column("colour", sa.String(length=7), nullable=False),
        sa.Column("offline_text", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _when("created_at", False),
        _when("updated_at", False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sites")),
        sa.UniqueConstraint("key", name=op.f("uq_web_sites_key")),
        sa.UniqueConstraint("name", name=op.f("uq_web_sites_name")),
    )
    op.create_table(
        "web_visitors",
        sa.Column("contact_id", BIG_ID, nullable=False),
        sa.Column("site_id", BIG_ID, nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("visitor_read_up_to", BIG_ID, nullable=True),
        sa.Column("agent_read_up_to", BIG_ID, nullable=True),
        _when("last_seen_at", False),
        _when("created_at", False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_web_visitors_contact_id_contacts")),
        sa.ForeignKeyConstraint(
            ["site_id"], ["web_sites.id"], name=op.f("fk_web_visitors_site_id_web_sites")),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_web_visitors")),
    )
    op.create_index(op.f("ix_web_visitors_site_id"), "web_visitors", ["site_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_web_visitors_site_id"), table_name="web_visitors")
    op.drop_table("web_visitors")
    op.drop_table("web_sites")
