"""journey marks: one row per conversation with the touchpoints its journey is drawn from

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 21:30:00.000000

The dashboard's journey read the whole touchpoint log of a period's conversations on every
load (about a second for 30 days at 100,000 conversations a quarter). `journey_marks` keeps,
per conversation, its first touchpoint of each journey kind (the last resolution): its place
in the log, time and the effort spent by then, written with the touchpoint. Existing
conversations are built from their touchpoints here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carebot.db.types
from carebot.db import journey_marks

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The marks as of this revision (carebot.domain.journey.MARKS).
MARKS = ("msg", "ans", "sug", "yes", "no", "hand", "asg", "res", "sent", "sat")


def upgrade() -> None:
    op.create_table(
        "journey_marks",
        sa.Column("conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        *(
            column
            for mark in MARKS
            for column in (
                sa.Column(f"{mark}_seq", sa.Integer(), nullable=True),
                sa.Column(f"{mark}_at", carebot.db.types.UTCDateTime(timezone=True),
                          nullable=True),
                sa.Column(f"{mark}_effort", sa.Integer(), nullable=True),
            )
        ),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"],
                                name=op.f("fk_journey_marks_conversation_id_conversations")),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_journey_marks")),
    )
    journey_marks.backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table("journey_marks")
