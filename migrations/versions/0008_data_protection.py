"""data protection: audit log, linked customers, erasures, retention progress

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-10 10:00:00.000000

The audit log is append-only: triggers refuse UPDATE and DELETE on both databases (TRUNCATE,
which only a database owner runs, is not refused).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carebot.db.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
REFUSED = "audit_log is append-only"


def _when(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, carebot.db.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, nullable=False),
        _when("at"),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", BIG_ID, nullable=True),
        sa.Column("actor_name", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=True),
        sa.Column("object_id", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index(op.f("ix_audit_log_actor_id"), "audit_log", ["actor_id"])
    op.create_index("ix_audit_log_object", "audit_log", ["object_type", "object_id", "at"])
    op.create_index("ix_audit_log_action_at", "audit_log", ["action", "at"])
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{REFUSED}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"
            )

    op.create_table(
        "customer_links",
        sa.Column("customer_id", BIG_ID, nullable=False),
        sa.Column("person_id", BIG_ID, nullable=False),
        _when("linked_at"),
        sa.Column("linked_by", BIG_ID, nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_customer_links_customer_id_customers")),
        sa.ForeignKeyConstraint(["person_id"], ["customers.id"],
                                name=op.f("fk_customer_links_person_id_customers")),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_links")),
    )
    op.create_index(op.f("ix_customer_links_person_id"), "customer_links", ["person_id"])

    op.create_table(
        "customer_erasures",
        sa.Column("customer_id", BIG_ID, nullable=False),
        _when("erased_at"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_customer_erasures_customer_id_customers")),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_erasures")),
    )

    op.create_table(
        "retention_progress",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_id", BIG_ID, nullable=False),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_retention_progress")),
    )


def downgrade() -> None:
    op.drop_table("retention_progress")
    op.drop_table("customer_erasures")
    op.drop_index(op.f("ix_customer_links_person_id"), table_name="customer_links")
    op.drop_table("customer_links")
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute("DROP TRIGGER audit_log_no_delete")
    op.drop_index("ix_audit_log_action_at", table_name="audit_log")
    op.drop_index("ix_audit_log_object", table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_actor_id"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
