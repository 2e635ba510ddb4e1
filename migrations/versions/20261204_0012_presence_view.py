"""presence as a view: declared statuses from the user's stream, the rest from `room_members`

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

Why: the `presence` table had one row per user folded from every room the user was in plus the user's
own stream, so one row was written from many streams, which a log split by stream cannot do in one
partition (docs/scaling.md). What presence says per room (connections, cursor, last seen, name) is
already in `room_members`, written from the room's stream; the one fact of the user's own stream is the
status they declared, now kept in `declared_statuses`. `presence` becomes a view laying the two
together, with the columns the table had, so queries against it keep working.

`declared_statuses` is filled from the log as far as the projector checkpoint (the checkpoint row is
locked meanwhile), so the tables and the checkpoint still move together. Cross it with every node
stopped: an older node's projector would write `presence`, which is a view from here on.

The view is not the old fold row for row: an offline user has a row only if they ever declared a
status, the cursor is the one in the most recently active of their rooms that has one, and
`last_seen` counts only the rooms they are still in and their last declaration. So the downgrade
makes `presence` an empty table again, empties the other projection tables and moves the checkpoint
back to 0: the older code's runner then folds the whole log into them, as it would have.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)

# The projection tables the older code's runner keeps besides `presence`.
_REFOLDED = ("rooms", "room_members", "typing", "notifications", "uploads", "ai_requests")
_LOCK_CHECKPOINT = "SELECT position FROM projector_checkpoints WHERE name = 'projections' FOR UPDATE"
_FILL_STATUSES = """
    INSERT INTO declared_statuses (user_id, status, declared_at)
    SELECT DISTINCT ON (data->>'user_id') data->>'user_id', data->>'status', recorded_at
    FROM events
    WHERE type = 'UserStatusChanged'
      AND position <= coalesce((SELECT position FROM projector_checkpoints WHERE name = 'projections'), 0)
    ORDER BY data->>'user_id', position DESC
"""
# A user is online while one of their connections is in a room, i.e. while they have a `room_members`
# row; the cursor is the one in the most recently active of their rooms that has one, the name that of
# the most recently active room, and `last_seen` the later of their last activity in a room they are
# still in and their last declaration.
_PRESENCE_VIEW = """
    CREATE VIEW presence AS
    WITH members AS (
        SELECT user_id,
               (array_agg(username ORDER BY last_seen DESC, room_id))[1] AS username,
               (array_agg(email ORDER BY last_seen DESC, room_id))[1] AS email,
               (array_agg(cursor || jsonb_build_object('room_id', room_id) ORDER BY last_seen DESC, room_id)
                    FILTER (WHERE cursor IS NOT NULL))[1] AS cursor,
               max(last_seen) AS last_seen
        FROM room_members GROUP BY user_id
    ), per_connection AS (
        SELECT m.user_id, c.connection_id, jsonb_agg(m.room_id ORDER BY m.room_id) AS rooms
        FROM room_members AS m, jsonb_array_elements_text(m.connections) AS c(connection_id)
        GROUP BY m.user_id, c.connection_id
    ), connections AS (
        SELECT user_id, jsonb_object_agg(connection_id, rooms) AS connections
        FROM per_connection GROUP BY user_id
    )
    SELECT user_id,
           m.username,
           m.email,
           coalesce(s.status, 'online') AS status,
           CASE WHEN m.user_id IS NULL THEN 'offline' ELSE coalesce(s.status, 'online') END AS shown_status,
           m.user_id IS NOT NULL AS online,
           m.cursor,
           greatest(m.last_seen, s.declared_at) AS last_seen,
           coalesce(c.connections, '{}'::jsonb) AS connections
    FROM members AS m
    FULL JOIN declared_statuses AS s USING (user_id)
    LEFT JOIN connections AS c USING (user_id)
"""


def upgrade() -> None:
    op.create_table(
        "declared_statuses",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("declared_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_declared_statuses"),
    )
    op.execute(sa.text(_LOCK_CHECKPOINT))  # held until the migration commits, as a runner's step holds it
    op.execute(sa.text(_FILL_STATUSES))
    op.drop_table("presence")
    op.execute(sa.text(_PRESENCE_VIEW))


def downgrade() -> None:
    op.execute(sa.text(_LOCK_CHECKPOINT))
    op.execute(sa.text("DROP VIEW presence"))
    op.create_table(
        "presence",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("username", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("shown_status", sa.Text, nullable=False),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("cursor", JSONB),
        sa.Column("last_seen", _TS),
        sa.Column("connections", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_presence"),
    )
    op.drop_table("declared_statuses")
    for table in _REFOLDED:
        op.execute(sa.text(f"DELETE FROM {table}"))
    op.execute(sa.text("UPDATE projector_checkpoints SET position = 0 WHERE name = 'projections'"))
