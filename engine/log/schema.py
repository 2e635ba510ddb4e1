"""SQLAlchemy Core tables: the one metadata Alembic and the engine share.

The migrations create exactly these tables (plus the append-only trigger, which Core cannot express);
`tests/integration/test_migrations.py` checks that the two never drift apart.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# The stream an idempotency key is unique in: the durable stream, so a room's (or a user's) volatile
# twin shares its keys (engine/model/streams.py, `durable_stream`, is the same rule in Python).
KEY_SCOPE = "regexp_replace(stream_id, '^volatile:', '')"

# The log, in partitions (engine/log/partitions.py): a stream's events live in one partition, whose
# `position` is assigned by that partition's writer under its own `log_head` row lock (see
# engine/log/store.py), so it is gapless and increases in commit order within the partition. Every
# key holds the partition: the position's leads with it (a partition is read as a range of
# positions); keys led by a stream id, which decides the partition, end with it, so every lookup that
# names a stream keeps its index (a distributed database needs the partition in each unique key).
events = Table(
    "events",
    metadata,
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", Text, nullable=False),
    Column("stream_version", BigInteger, nullable=False),
    Column("type", Text, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("user_id", Text),
    Column("idempotency_key", Text),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("stream_id", "stream_version", "partition"),
    # A key is unique per user and stream, a room's volatile twin counting as the room (migration
    # 0009; KEY_SCOPE below). Partial: events without a key are not indexed at all. User and key
    # first: a lookup by both, without the stream, uses it too.
    Index(
        "uq_events_user_id_idempotency_key_scope_partition",
        "user_id",
        "idempotency_key",
        text(KEY_SCOPE),
        "partition",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
    Index("ix_events_recorded_at", "recorded_at", postgresql_using="brin"),
)

# One counter row per stream: the version of its newest event.
streams = Table(
    "streams",
    metadata,
    Column("stream_id", Text, primary_key=True),
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

# A row per partition: its newest position. Locking it is what serialises the partition's appends
# across processes; partitions never wait for each other's.
log_head = Table(
    "log_head",
    metadata,
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False),
    # Names this log on a message bus shared with other logs (engine/cluster/bus.py): migration 0008.
    # Every head of one log holds the same id.
    Column("log_id", UUID(as_uuid=False), nullable=False, server_default=text("gen_random_uuid()")),
    CheckConstraint("partition >= 0", name="partition"),
)

# How far each projector has folded each partition of the log (migration 0014).
projector_checkpoints = Table(
    "projector_checkpoints",
    metadata,
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),
    Column("name", Text, primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Inline projections: the state that decisions inside the append transaction need (DESIGN principle
# 4). The writer updates them in the same statement as the events, so they are always exactly at the
# log head; the cells projection (engine/projections/cells.py) folds to the same rows.
cells = Table(
    "cells",
    metadata,
    Column("sheet_id", Text, primary_key=True),
    Column("cell_id", Text, primary_key=True),
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),  # the room's
    Column("value", JSONB),
    Column("formula", Text),
    Column("version", BigInteger, nullable=False),
    Column("user_id", Text),
    Column("seq", BigInteger, nullable=False),  # the room seq of the update that wrote the cell
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The room of each sheet: the room its claim (`SheetClaimed`, before its first edit) names, for ever.
sheets = Table(
    "sheets",
    metadata,
    Column("sheet_id", Text, primary_key=True),
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),  # the claim's
    Column("room_id", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
)

# Room projection snapshots (engine/readmodels/snapshots.py): the state as of `seq`, so "as of" reads
# replay only the events after the newest snapshot at or before the target.
room_snapshots = Table(
    "room_snapshots",
    metadata,
    Column("room_id", Text, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),  # the room's
    Column("position", BigInteger, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Projection tables (migration 0004): the read models the projector runner (engine/readmodels/runner.py)
# keeps behind the log, one row shape per view (engine/readmodels/rows/); rebuilt by
# engine/readmodels/rebuild.py.
rooms = Table(
    "rooms",
    metadata,
    Column("room_id", Text, primary_key=True),
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),  # the room's
    Column("seq", BigInteger, nullable=False),
    Column("user_count", Integer, nullable=False),
    Column("active_sheets", JSONB, nullable=False),
    Column("active_sheets_count", Integer, nullable=False),
    Column("last_activity", DateTime(timezone=True)),
    Column("messages_sent", BigInteger, nullable=False),
    Column("attendance_hour", DateTime(timezone=True)),
    Column("attendance_users", JSONB, nullable=False),
    Column("attendance_past_hours", BigInteger, nullable=False),
    Column("attendance_past_user_hours", BigInteger, nullable=False),
)

room_members = Table(
    "room_members",
    metadata,
    Column("room_id", Text, primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),  # the room's
    Column("ordinal", Integer, nullable=False),  # order of arrival in the room
    Column("username", Text, nullable=False),
    Column("email", Text),
    Column("status", Text, nullable=False),
    Column("cursor", JSONB),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("connections", JSONB, nullable=False),
)

# The status each user last declared, from their own stream; the database's `presence` view (migration
# 0012) lays it over `room_members`, so no row of either is fed by two streams.
declared_statuses = Table(
    "declared_statuses",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),  # the user's
    Column("status", Text, nullable=False),
    Column("declared_at", DateTime(timezone=True), nullable=False),
)

typing = Table(
    "typing",
    metadata,
    Column("room_id", Text, primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("cell_id", Text, primary_key=True),
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),  # the room's
    Column("ordinal", Integer, nullable=False),
    Column("username", Text, nullable=False),
    Column("connection_id", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("version", BigInteger),  # of the start in the room's volatile stream; NULL before 0021
)

notifications = Table(
    "notifications",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("notification_id", Text, primary_key=True),
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),  # the user's
    Column("ordinal", Integer, nullable=False),
    Column("title", Text),
    Column("message", Text),
    Column("category", Text),
    Column("priority", Text),
    Column("module_name", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("read_at", DateTime(timezone=True)),
)

uploads = Table(
    "uploads",
    metadata,
    Column("file_id", Text, primary_key=True),
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),  # the uploader's
    Column("user_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("filename", Text),
    Column("file_size", BigInteger),
    Column("mime_type", Text),
    Column("bytes_uploaded", BigInteger, nullable=False),
    Column("total_bytes", BigInteger),
    Column("percentage", Float, nullable=False),
    Column("url", Text),
    Column("size", BigInteger),
    Column("sha256", Text),
    Column("completed_at", DateTime(timezone=True)),
    # The upload sweeper's pages (engine/readmodels/idle_uploads.py), over the unfinished uploads only.
    Index(
        "ix_uploads_idle",
        "updated_at",
        "file_id",
        "user_id",
        postgresql_where=text("status IN ('started', 'uploading')"),
    ),
)

ai_requests = Table(
    "ai_requests",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("request_id", Text, primary_key=True),
    Column("partition", SmallInteger, primary_key=True, autoincrement=False),  # the user's
    Column("status", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("query", Text),
    Column("sheet_id", Text),
    Column("room_id", Text),
    Column("context", JSONB),
    Column("progress", Float, nullable=False),
    Column("step", Text),
    Column("result", JSONB),
    Column("processing_time", Float),
    Column("error", Text),
    Column("finished_at", DateTime(timezone=True)),
)

# Engine processes sharing this database (engine/cluster/registry.py): heartbeats tell each node whether
# it has peers to wake after a commit, and tell survivors when a node died.
nodes = Table(
    "nodes",
    metadata,
    Column("node_id", Text, primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("stopped_at", DateTime(timezone=True)),
    Column("stats", JSONB),  # the node's figures as of its last heartbeat (engine/features/stats.py)
    # The application_name of the node's sessions: gone from pg_stat_activity, the node crashed.
    Column("session_name", Text),
    # Whether it writes the partitions it holds for the others (ROUTE_APPENDS): who shares that out.
    Column("routes_appends", Boolean),
    # When a survivor is to read the memberships of its run marked stopped again (engine/cluster/reaper.py).
    Column("recheck_at", DateTime(timezone=True)),
    Index("ix_nodes_heartbeat_at", "heartbeat_at"),
    # Every judging node asks for the due looks after each beat; rows pile up, one per run of a node.
    Index("ix_nodes_recheck_at", "recheck_at", postgresql_where=text("recheck_at IS NOT NULL")),
)

# Rate limits across nodes (engine/cluster/rate_sync.py): each node's counts per user and aligned window, and
# the blocks any node imposed. Working state, not history: old rows are deleted.
rate_counts = Table(
    "rate_counts",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("node_id", Text, primary_key=True),
    Column("period", Integer, primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("count", Integer, nullable=False),
    Index("ix_rate_counts_window_start", "window_start"),
)

rate_blocks = Table(
    "rate_blocks",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("blocked_until", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
)
