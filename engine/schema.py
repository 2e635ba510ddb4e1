"""SQLAlchemy Core tables: the one metadata Alembic and the engine share.

The migrations create exactly these tables (plus the append-only trigger, which Core cannot express);
`tests/integration/test_migrations.py` checks that the two never drift apart.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# The log. `position` is global and assigned by the appender under the log_head row lock (see
# engine/store.py), so it is gapless and increases in commit order.
events = Table(
    "events",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", Text, nullable=False),
    Column("stream_version", BigInteger, nullable=False),
    Column("type", Text, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("user_id", Text),
    Column("idempotency_key", Text),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("stream_id", "stream_version"),
    # Partial: events without a key are not indexed at all.
    Index(
        "uq_events_user_id_idempotency_key",
        "user_id",
        "idempotency_key",
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
    Column("version", BigInteger, nullable=False),
)

# A single row: the newest position. Locking it is what serialises appends across processes.
log_head = Table(
    "log_head",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

# How far each projector has folded the log.
projector_checkpoints = Table(
    "projector_checkpoints",
    metadata,
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
    Column("value", JSONB),
    Column("formula", Text),
    Column("version", BigInteger, nullable=False),
    Column("user_id", Text),
    Column("seq", BigInteger, nullable=False),  # the room seq of the update that wrote the cell
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The room of each sheet: the room of its first edit, for ever.
sheets = Table(
    "sheets",
    metadata,
    Column("sheet_id", Text, primary_key=True),
    Column("room_id", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
)
