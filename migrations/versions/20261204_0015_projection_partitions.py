"""projection partitions: every projection row and room snapshot names the log partition it came from

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

Why: each partition of the log has its own projector checkpoint (revision 0014), and every projection
row is fed by one owner's streams, which live in one partition. With the partition in each row's key,
a runner's step and a rebuild touch only their partition's rows, one partition can be rebuilt alone,
and the tables can be distributed with the log on `partition` (docs/scaling.md). `rooms`,
`room_members`, `typing` and `room_snapshots` are in their room's partition; `declared_statuses`,
`notifications`, `uploads` and `ai_requests` in their user's. The partition follows the owner id in
each key, as in `streams`, `cells` and `sheets`.

Existing rows get their partition from the same hash the engine uses (engine/log/partitions.py: the
first four bytes of the MD5 of the stream id, modulo the partition count), so a log of any count
keeps its tables and checkpoints as they are. Cross it with every node stopped: an older node's
projector writes rows without a partition, so its steps would fail. The downgrade puts the keys back;
the rows stay valid for the older code, which keeps one set of tables for every partition.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> (its key before, the stream prefix and the column naming the stream that owns a row)
_TABLES: dict[str, tuple[list[str], str, str]] = {
    "rooms": (["room_id"], "room:", "room_id"),
    "room_members": (["room_id", "user_id"], "room:", "room_id"),
    "typing": (["room_id", "user_id", "cell_id"], "room:", "room_id"),
    "room_snapshots": (["room_id", "seq"], "room:", "room_id"),
    "declared_statuses": (["user_id"], "user:", "user_id"),
    "notifications": (["user_id", "notification_id"], "user:", "user_id"),
    "uploads": (["file_id"], "user:", "user_id"),
    "ai_requests": (["user_id", "request_id"], "user:", "user_id"),
}


def _partition_of(prefix: str, column: str) -> str:
    """engine/log/partitions.py `partition_of` in SQL, for a log of `:partitions`: the MD5 of the
    stream id's UTF-8 bytes, as Python hashes it, whatever the database's encoding."""
    stream = f"convert_to('{prefix}' || {column}, 'UTF8')"
    return f"(('x' || substr(md5({stream}), 1, 8))::bit(32)::bigint % :partitions)"


def upgrade() -> None:
    bind = op.get_bind()
    op.execute(f"LOCK TABLE log_head, {', '.join(_TABLES)} IN ACCESS EXCLUSIVE MODE")
    partitions = bind.execute(sa.text("SELECT count(*) FROM log_head")).scalar_one()
    for table, (key, prefix, owner) in _TABLES.items():
        op.add_column(table, sa.Column("partition", sa.SmallInteger(), nullable=False, server_default="0"))
        op.alter_column(table, "partition", server_default=None)
        if partitions > 1:
            bind.execute(
                sa.text(f"UPDATE {table} SET partition = {_partition_of(prefix, owner)}"),
                {"partitions": partitions},
            )
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.create_primary_key(f"pk_{table}", table, [*key, "partition"])


def downgrade() -> None:
    for table, (key, _, _) in _TABLES.items():
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.create_primary_key(f"pk_{table}", table, key)
        op.drop_column(table, "partition")
