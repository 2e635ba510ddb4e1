"""file claims: every file id already claimed gets its `FileClaimed`, the first event of `file:{id}`

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

Why: the owner of a file id was the user of the first `FileUploadStarted`/`FileUploadCompleted`/
`FileUploadFailed` naming it, found by reading the whole log on every upload and every download of an
unfinished file. It is now the first event of the id's own stream (engine/features/file_claims.py),
so an id claimed before this revision must have that event too, or its owner would lose it to the
next user who asks. No event is changed: one `FileClaimed` is appended per such id, for the user of
its first claim by position, as the appender would append it (under the `log_head` lock, at the next
positions, at one `recorded_at` no earlier than any before). The downgrade leaves them: the log is
append-only, and the code before this revision never reads `file:` streams.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CLAIM_FILES = """
    WITH head AS (
        SELECT position, clock_timestamp() AS at FROM log_head WHERE id = 1
    ), firsts AS (
        SELECT DISTINCT ON (e.data->>'file_id') e.data->>'file_id' AS file_id,
               e.data->>'user_id' AS user_id, e.position
        FROM events e
        WHERE e.type IN ('FileUploadStarted', 'FileUploadCompleted', 'FileUploadFailed')
          AND e.stream_id LIKE 'user:%'
          AND NOT EXISTS (SELECT 1 FROM streams s WHERE s.stream_id = 'file:' || (e.data->>'file_id'))
        ORDER BY e.data->>'file_id', e.position
    ), numbered AS (
        SELECT file_id, user_id, row_number() OVER (ORDER BY position) AS n FROM firsts
    ), written AS (
        INSERT INTO events (position, stream_id, stream_version, type, data, metadata, user_id, recorded_at)
        SELECT head.position + numbered.n, 'file:' || numbered.file_id, 1, 'FileClaimed',
               jsonb_build_object('file_id', numbered.file_id, 'user_id', numbered.user_id),
               '{"via": "migration"}'::jsonb, numbered.user_id, head.at
        FROM head, numbered
    )
    INSERT INTO streams (stream_id, version) SELECT 'file:' || file_id, 1 FROM numbered
"""
# Statements of their own: a row a statement updates is invisible to that statement's own reads.
_LOCK_HEAD = "SELECT 1 FROM log_head WHERE id = 1 FOR UPDATE"
_MOVE_HEAD = "UPDATE log_head SET position = (SELECT coalesce(max(position), 0) FROM events) WHERE id = 1"


def upgrade() -> None:
    op.execute(sa.text(_LOCK_HEAD))  # held until the migration commits, as an append holds it
    op.execute(sa.text(_CLAIM_FILES))
    op.execute(sa.text(_MOVE_HEAD))


def downgrade() -> None:
    pass  # the claims stay in the log (docstring)
