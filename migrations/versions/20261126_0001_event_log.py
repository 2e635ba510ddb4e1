"""event log: events, stream counters, log head, projector checkpoints, append-only trigger

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One statement per string: asyncpg prepares each, and a prepared statement holds one command.
APPEND_ONLY = (
    """
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$""",
    """CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only()""",
    """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()""",
)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("stream_id", sa.Text, nullable=False),
        sa.Column("stream_version", sa.BigInteger, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("data", JSONB, nullable=False),
        sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("user_id", sa.Text),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("position", name="pk_events"),
        sa.UniqueConstraint("stream_id", "stream_version", name="uq_events_stream_id_stream_version"),
    )
    # Partial: most events carry no key, and indexing their NULLs would cost every insert.
    op.create_index(
        "uq_events_user_id_idempotency_key",
        "events",
        ["user_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    # BRIN: recorded_at grows with position in an append-only table, so a block-range index answers
    # time-range queries for a fraction of a B-tree's insert cost.
    op.create_index("ix_events_recorded_at", "events", ["recorded_at"], postgresql_using="brin")
    for statement in APPEND_ONLY:
        op.execute(statement)

    op.create_table(
        "streams",
        sa.Column("stream_id", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("stream_id", name="pk_streams"),
    )
    op.create_table(
        "log_head",
        sa.Column("id", sa.SmallInteger, nullable=False, autoincrement=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_log_head"),
        sa.CheckConstraint("id = 1", name="ck_log_head_single_row"),
    )
    op.execute("INSERT INTO log_head (id, position) VALUES (1, 0)")
    op.create_table(
        "projector_checkpoints",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("name", name="pk_projector_checkpoints"),
    )


def downgrade() -> None:
    op.drop_table("projector_checkpoints")
    op.drop_table("log_head")
    op.drop_table("streams")
    op.drop_table("events")
    op.execute("DROP FUNCTION events_append_only()")
