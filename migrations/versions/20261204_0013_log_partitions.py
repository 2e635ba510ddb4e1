"""log partitions: every key of the log and of the tables decided in the append holds a partition

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

Why: one `log_head` row serialised every append of the whole cluster, so each node added lowered the
cluster's write rate. The log is now split into partitions (engine/log/partitions.py), each with its
own head row, positions and writer. `events`, `streams`, `cells` and `sheets` get a `partition`
column in their keys (leading the position's key; after the stream or sheet id, which decides it,
elsewhere), and `log_head` is keyed by partition instead of its single row's `id`. An existing log
becomes partition 0 of a log of one partition: every position, version and cursor stays as it was.
The downgrade is refused for a log of more than one partition (the older code knows one head), and
otherwise puts the keys back.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY_SCOPE = "regexp_replace(stream_id, '^volatile:', '')"


def _add_partition(table: str) -> None:
    # A constant default is stored once, not written into every row; dropped so writers must say it.
    op.add_column(table, sa.Column("partition", sa.SmallInteger(), nullable=False, server_default="0"))
    op.alter_column(table, "partition", server_default=None)


def upgrade() -> None:
    op.execute("LOCK TABLE log_head, events, streams, cells, sheets IN ACCESS EXCLUSIVE MODE")
    op.drop_constraint("ck_log_head_single_row", "log_head", type_="check")
    op.alter_column("log_head", "id", new_column_name="partition")
    op.execute("UPDATE log_head SET partition = 0")
    op.create_check_constraint("partition", "log_head", "partition >= 0")  # named by the convention

    for table in ("events", "streams", "cells", "sheets"):
        _add_partition(table)
    op.drop_constraint("pk_events", "events", type_="primary")
    op.create_primary_key("pk_events", "events", ["partition", "position"])
    op.drop_constraint("uq_events_stream_id_stream_version", "events", type_="unique")
    op.create_unique_constraint(
        "uq_events_stream_id_stream_version_partition", "events", ["stream_id", "stream_version", "partition"]
    )
    op.drop_index("uq_events_user_id_idempotency_key_scope", table_name="events")
    op.create_index(
        "uq_events_user_id_idempotency_key_scope_partition",
        "events",
        ["user_id", "idempotency_key", sa.text(_KEY_SCOPE), "partition"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    for table, columns in (
        ("streams", ["stream_id", "partition"]),
        ("cells", ["sheet_id", "cell_id", "partition"]),
        ("sheets", ["sheet_id", "partition"]),
    ):
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.create_primary_key(f"pk_{table}", table, columns)


def downgrade() -> None:
    op.execute("LOCK TABLE log_head, events, streams, cells, sheets IN ACCESS EXCLUSIVE MODE")
    heads = op.get_bind().execute(sa.text("SELECT count(*) FROM log_head")).scalar_one()
    if heads != 1:
        raise RuntimeError(
            f"this log has {heads} partitions; the schema before revision 0013 holds a log of one"
        )
    for table, columns in (
        ("streams", ["stream_id"]),
        ("cells", ["sheet_id", "cell_id"]),
        ("sheets", ["sheet_id"]),
    ):
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.create_primary_key(f"pk_{table}", table, columns)
    op.drop_index("uq_events_user_id_idempotency_key_scope_partition", table_name="events")
    op.create_index(
        "uq_events_user_id_idempotency_key_scope",
        "events",
        ["user_id", "idempotency_key", sa.text(_KEY_SCOPE)],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.drop_constraint("uq_events_stream_id_stream_version_partition", "events", type_="unique")
    op.create_unique_constraint(
        "uq_events_stream_id_stream_version", "events", ["stream_id", "stream_version"]
    )
    op.drop_constraint("pk_events", "events", type_="primary")
    op.create_primary_key("pk_events", "events", ["position"])
    for table in ("events", "streams", "cells", "sheets"):
        op.drop_column(table, "partition")

    op.drop_constraint("partition", "log_head", type_="check")
    op.execute("UPDATE log_head SET partition = 1")
    op.alter_column("log_head", "partition", new_column_name="id")
    op.create_check_constraint("ck_log_head_single_row", "log_head", "id = 1")
