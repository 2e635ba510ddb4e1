"""idempotency per stream: a client_msg_id is unique per user and stream, not per user

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Why: the check then needs only the stream's own rows, so it stays inside one partition of a log split
by stream (docs/scaling.md). A room's volatile twin counts as the room (`volatile:room:r` as `room:r`),
as the protocol scopes an id to the room a message acts in. Every key unique per user is unique per
user and stream as well, so the new index builds on any existing log; the downgrade fails if two
streams came to share a key since.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE = sa.text("idempotency_key IS NOT NULL")
# The same expression as engine/log/schema.py's KEY_SCOPE (a migration never imports the code it migrates).
_SCOPE = "regexp_replace(stream_id, '^volatile:', '')"


def upgrade() -> None:
    op.create_index(
        "uq_events_user_id_idempotency_key_scope",
        "events",
        ["user_id", "idempotency_key", sa.text(_SCOPE)],
        unique=True,
        postgresql_where=_WHERE,
    )
    op.drop_index("uq_events_user_id_idempotency_key", table_name="events")


def downgrade() -> None:
    op.create_index(
        "uq_events_user_id_idempotency_key",
        "events",
        ["user_id", "idempotency_key"],
        unique=True,
        postgresql_where=_WHERE,
    )
    op.drop_index("uq_events_user_id_idempotency_key_scope", table_name="events")
