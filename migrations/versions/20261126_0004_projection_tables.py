"""projection tables: the read models the projector runner keeps (engine/readmodels/runner.py)

Rooms and their members, presence, typing, notifications, uploads and AI requests: each row is what
the pure folds of engine/projections/ give (engine/readmodels/rows/), written by the runner behind
the log and rewritten by `collab projections rebuild`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("user_count", sa.Integer, nullable=False),
        sa.Column("active_sheets", JSONB, nullable=False),
        sa.Column("active_sheets_count", sa.Integer, nullable=False),
        sa.Column("last_activity", _TS),
        sa.Column("messages_sent", sa.BigInteger, nullable=False),
        sa.Column("attendance_hour", _TS),
        sa.Column("attendance_users", JSONB, nullable=False),
        sa.Column("attendance_past_hours", sa.BigInteger, nullable=False),
        sa.Column("attendance_past_user_hours", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("room_id", name="pk_rooms"),
    )
    op.create_table(
        "room_members",
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("email", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("cursor", JSONB),
        sa.Column("last_seen", _TS, nullable=False),
        sa.Column("connections", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("room_id", "user_id", name="pk_room_members"),
    )
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
    op.create_table(
        "typing",
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("cell_id", sa.Text, nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("connection_id", sa.Text),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("room_id", "user_id", "cell_id", name="pk_typing"),
    )
    op.create_table(
        "notifications",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("notification_id", sa.Text, nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("title", sa.Text),
        sa.Column("message", sa.Text),
        sa.Column("category", sa.Text),
        sa.Column("priority", sa.Text),
        sa.Column("module_name", sa.Text),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("read_at", _TS),
        sa.PrimaryKeyConstraint("user_id", "notification_id", name="pk_notifications"),
    )
    op.create_table(
        "uploads",
        sa.Column("file_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("filename", sa.Text),
        sa.Column("file_size", sa.BigInteger),
        sa.Column("mime_type", sa.Text),
        sa.Column("bytes_uploaded", sa.BigInteger, nullable=False),
        sa.Column("total_bytes", sa.BigInteger),
        sa.Column("percentage", sa.Float, nullable=False),
        sa.Column("url", sa.Text),
        sa.Column("size", sa.BigInteger),
        sa.Column("sha256", sa.Text),
        sa.Column("completed_at", _TS),
        sa.PrimaryKeyConstraint("file_id", name="pk_uploads"),
    )
    op.create_table(
        "ai_requests",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("query", sa.Text),
        sa.Column("sheet_id", sa.Text),
        sa.Column("room_id", sa.Text),
        sa.Column("context", JSONB),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("step", sa.Text),
        sa.Column("result", JSONB),
        sa.Column("processing_time", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("finished_at", _TS),
        sa.PrimaryKeyConstraint("user_id", "request_id", name="pk_ai_requests"),
    )


def downgrade() -> None:
    for table in ("ai_requests", "uploads", "notifications", "typing", "presence", "room_members", "rooms"):
        op.drop_table(table)
