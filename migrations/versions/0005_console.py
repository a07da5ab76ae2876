"""the console: password logins, sessions, presence, canned replies

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 14:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carebot.db.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, carebot.db.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_hash", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("invite_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(_when("invite_expires_at", True))
        batch_op.add_column(_when("presence_at", True))
        batch_op.add_column(sa.Column(
            "status_auto", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_unique_constraint(batch_op.f("uq_agents_invite_hash"), ["invite_hash"])
    op.create_table(
        "web_sessions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("agent_id", BIG_ID, nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        _when("created_at", False),
        _when("last_seen_at", False),
        _when("expires_at", False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_web_sessions_agent_id_agents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sessions_token_hash")),
    )
    op.create_index(op.f("ix_web_sessions_agent_id"), "web_sessions", ["agent_id"])
    op.create_table(
        "canned_replies",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("shortcut", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_by", BIG_ID, nullable=True),
        _when("created_at", False),
        _when("updated_at", False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["agents.id"], name=op.f("fk_canned_replies_created_by_agents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_replies")),
        sa.UniqueConstraint("shortcut", name=op.f("uq_canned_replies_shortcut")),
    )


def downgrade() -> None:
    op.drop_table("canned_replies")
    op.drop_index(op.f("ix_web_sessions_agent_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_agents_invite_hash"), type_="unique")
        batch_op.drop_column("status_auto")
        batch_op.drop_column("presence_at")
        batch_op.drop_column("invite_expires_at")
        batch_op.drop_column("invite_hash")
        batch_op.drop_column("password_hash")
