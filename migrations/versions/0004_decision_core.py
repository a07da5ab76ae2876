"""decision core: offered buttons, queue acknowledgements, releases, resolver, resolution codes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 12:30:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import carebot.db.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The codes an installation starts with; admins edit the list (`carebot codes …`, the API).
SEED_CODES = [
    ("answered", "Answered", True, True),
    ("refund_issued", "Refund issued", True, True),
    ("replacement_sent", "Replacement sent", True, True),
    ("duplicate", "Duplicate of another conversation", False, True),
    ("no_reply", "Customer stopped replying", False, True),
    ("spam", "Spam or abuse", False, False),
    ("timeout", "Customer went silent after the bot (set by the timer)", False, True),
]


def upgrade() -> None:
    codes = op.create_table(
        "resolution_codes",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("survey", sa.Boolean(), nullable=False),
        sa.Column("may_reopen", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", carebot.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_resolution_codes")),
    )
    now = datetime.now(UTC)
    op.bulk_insert(codes, [
        {"code": c, "label": label, "survey": survey, "may_reopen": reopen, "enabled": True,
         "created_at": now}
        for c, label, survey, reopen in SEED_CODES
    ])
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("offered_payloads", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column(
            "queue_ack_at", carebot.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column(
            "released_by_agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True))
        batch_op.add_column(sa.Column(
            "resolved_agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True))
        batch_op.create_index(
            batch_op.f("ix_conversations_resolved_agent_id"), ["resolved_agent_id"], unique=False)
    # Conversations agents resolved before this revision: credited to the assignee, as the
    # stats did until now.
    op.execute(
        "UPDATE conversations SET resolved_agent_id = assigned_agent_id "
        "WHERE resolved_by = 'agent'"
    )


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversations_resolved_agent_id"))
        batch_op.drop_column("resolved_agent_id")
        batch_op.drop_column("released_by_agent_id")
        batch_op.drop_column("queue_ack_at")
        batch_op.drop_column("offered_payloads")
    op.drop_table("resolution_codes")
