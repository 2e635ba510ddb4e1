"""sheet claims: every sheet that has a room gets its `SheetClaimed`, the first event of `sheet:{id}`

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

Why: a sheet's room was decided by its first edit, inside the room's append, against the `sheets`
table every room's append shares. It is now the first event of the sheet's own stream, claimed before
the first edit (engine/features/claims.py), and the writer keeps `sheets` from those claims, so a
sheet with a room must have its claim too: one `SheetClaimed` is appended per `sheets` row without
one, for the row's room, as the appender would append it (under the `log_head` lock, at the next
positions, at one `recorded_at` no earlier than any before), and the row's `position` becomes its
claim's, which is what a rebuild from the log gives. The downgrade leaves the claims in the log (it
is append-only; the code before this revision never reads `sheet:` streams) and puts each row's
`position` back to its sheet's first edit.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LOCK_HEAD = "SELECT 1 FROM log_head WHERE id = 1 FOR UPDATE"
_CLAIM_SHEETS = """
    WITH head AS (
        SELECT position, clock_timestamp() AS at FROM log_head WHERE id = 1
    ), numbered AS (
        SELECT s.sheet_id, s.room_id, row_number() OVER (ORDER BY s.position, s.sheet_id) AS n
        FROM sheets s
        WHERE NOT EXISTS (SELECT 1 FROM streams c WHERE c.stream_id = 'sheet:' || s.sheet_id)
    ), written AS (
        INSERT INTO events (position, stream_id, stream_version, type, data, metadata, user_id, recorded_at)
        SELECT head.position + numbered.n, 'sheet:' || numbered.sheet_id, 1, 'SheetClaimed',
               jsonb_build_object('sheet_id', numbered.sheet_id, 'room_id', numbered.room_id),
               '{"via": "migration"}'::jsonb, NULL, head.at
        FROM head, numbered
        RETURNING stream_id
    )
    INSERT INTO streams (stream_id, version) SELECT stream_id, 1 FROM written
"""
# Every row, claimed now or by an earlier upgrade, points at its claim.
_CLAIM_POSITIONS = """
    UPDATE sheets SET position = e.position
    FROM events e WHERE e.stream_id = 'sheet:' || sheets.sheet_id AND e.stream_version = 1
"""
_MOVE_HEAD = "UPDATE log_head SET position = (SELECT coalesce(max(position), 0) FROM events) WHERE id = 1"
_FIRST_EDITS = """
    UPDATE sheets SET position = first.position
    FROM (
        SELECT data->>'sheet_id' AS sheet_id, min(position) AS position
        FROM events WHERE type IN ('CellUpdated', 'CellsUpdated') AND stream_id LIKE 'room:%'
        GROUP BY data->>'sheet_id'
    ) AS first
    WHERE first.sheet_id = sheets.sheet_id
"""


def upgrade() -> None:
    op.execute(sa.text(_LOCK_HEAD))  # held until the migration commits, as an append holds it
    op.execute(sa.text(_CLAIM_SHEETS))
    op.execute(sa.text(_CLAIM_POSITIONS))
    op.execute(sa.text(_MOVE_HEAD))


def downgrade() -> None:
    op.execute(sa.text(_FIRST_EDITS))  # the claims stay in the log (docstring)
