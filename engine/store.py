"""The event log on PostgreSQL: append a batch, read a stream, read the whole log.

Ordering: why no reader of the whole log ever skips an event
-------------------------------------------------------------
A reader of the whole log (projectors, auditors, other nodes) remembers the highest position it has
seen and asks for `position > that`. This is only safe if an event with a lower position can never
become visible after one with a higher position. With a sequence-assigned position it can: T1 takes
position 10, T2 takes 11, T2 commits first, a reader sees 11, then T1 commits 10 and the reader has
already moved past it.

We serialise appends instead of reading below the transaction-id horizon. Every append transaction
first locks the single `log_head` row (`SELECT ... FOR UPDATE`) and takes its positions from it, so
position order is lock order is commit order. PostgreSQL releases a transaction's row locks only after
its commit is visible to other snapshots, so the next appender cannot even pick a position before the
previous batch is readable. Positions are also gapless: a rolled-back batch rolls back its head update.

Why this and not the `pg_snapshot_xmin` horizon: appends are already batched by one group-commit
appender per process, so one lock acquisition is paid per batch (hundreds of events), not per event,
and the cost is one short critical section (a few statements on a warm connection). In exchange every
reader stays a plain indexed range scan that is correct without knowing about in-flight transactions,
and positions stay dense, which makes "every event exactly once" easy to check. The horizon approach
would let batches from different nodes commit in parallel, which matters only once the log outgrows a
single lock; docs/scaling.md plans sharding the log by room for that point.

Each item of a batch is decided on its own (idempotency key, expected version) under that lock, so a
rejected item never fails the others and two processes can never both accept conflicting items.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from engine.events import AppendOutcome, Committed, Conflict, Duplicate, NewEvent, RecordedEvent
from engine.schema import events


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_db_engine(database_url: str, *, pool_size: int = 10, command_timeout: float = 5.0) -> AsyncEngine:
    """An async SQLAlchemy engine tuned for the log.

    `command_timeout` bounds every statement and connect, so a caller learns within a bounded time
    that PostgreSQL is unreachable; `pool_pre_ping` replaces connections that died while idle, which
    is how the engine reconnects by itself after a database restart.
    """
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=command_timeout,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={
            "command_timeout": command_timeout,
            "timeout": command_timeout,
            # Durability is not negotiable per server config: an acked append must survive a crash.
            "server_settings": {"synchronous_commit": "on"},
        },
    )


_LOCK_HEAD = text("SELECT position, now() FROM log_head WHERE id = 1 FOR UPDATE")
_SET_HEAD = text("UPDATE log_head SET position = :position WHERE id = 1")
_STREAM_VERSIONS = text("SELECT stream_id, version FROM streams WHERE stream_id = ANY(CAST(:ids AS text[]))")
_FIND_KEYS = text(
    """
    SELECT e.user_id, e.idempotency_key, e.position, e.stream_version, e.recorded_at
    FROM events e
    JOIN unnest(CAST(:users AS text[]), CAST(:keys AS text[])) AS k(user_id, idempotency_key)
      ON e.user_id = k.user_id AND e.idempotency_key = k.idempotency_key
    """
)
# One multi-row insert per batch: arrays in, one statement, one round trip.
_INSERT_EVENTS = text(
    """
    INSERT INTO events (position, stream_id, stream_version, type, data, metadata,
                        user_id, idempotency_key, recorded_at)
    SELECT t.position, t.stream_id, t.stream_version, t.type, t.data::jsonb, t.metadata::jsonb,
           t.user_id, t.idempotency_key, :recorded_at
    FROM unnest(CAST(:positions AS bigint[]), CAST(:stream_ids AS text[]), CAST(:versions AS bigint[]),
                CAST(:types AS text[]), CAST(:data AS text[]), CAST(:metadata AS text[]),
                CAST(:user_ids AS text[]), CAST(:keys AS text[]))
         AS t(position, stream_id, stream_version, type, data, metadata, user_id, idempotency_key)
    """
)
_UPSERT_STREAMS = text(
    """
    INSERT INTO streams (stream_id, version)
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:versions AS bigint[]))
    ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version
    """
)


class EventStore:
    """Reads and writes the log. Stateless apart from the connection pool, so any number of
    instances (and processes) can share one database."""

    def __init__(self, db_engine: AsyncEngine) -> None:
        self.db_engine = db_engine

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        """Append a batch in one transaction; one outcome per item, in order."""
        if not items:
            return []
        async with self.db_engine.begin() as conn:
            return await append_in_transaction(conn, items)

    async def read_stream(self, stream_id: str, after_version: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        query = (
            select(events)
            .where(events.c.stream_id == stream_id, events.c.stream_version > after_version)
            .order_by(events.c.stream_version)
            .limit(limit)
        )
        return await self._fetch(query)

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events with position > `after`, in position order; safe to tail (see the module docstring)."""
        query = select(events).where(events.c.position > after).order_by(events.c.position).limit(limit)
        return await self._fetch(query)

    async def head(self) -> int:
        """The newest committed position (0 for an empty log)."""
        async with self.db_engine.connect() as conn:
            return int((await conn.execute(text("SELECT position FROM log_head WHERE id = 1"))).scalar_one())

    async def stream_version(self, stream_id: str) -> int:
        async with self.db_engine.connect() as conn:
            found = await conn.execute(text("SELECT version FROM streams WHERE stream_id = :s"), {"s": stream_id})
            return int(found.scalar() or 0)

    async def _fetch(self, query: Any) -> list[RecordedEvent]:
        async with self.db_engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [RecordedEvent(**row) for row in rows]


async def append_in_transaction(conn: AsyncConnection, items: Sequence[NewEvent]) -> list[AppendOutcome]:
    """Decide and write a batch inside the caller's transaction. The caller commits."""
    head, now = (await conn.execute(_LOCK_HEAD)).one()  # serialises appends; see module docstring

    stream_ids = sorted({item.stream_id for item in items})
    rows = await conn.execute(_STREAM_VERSIONS, {"ids": stream_ids})
    versions: dict[str, int] = {sid: 0 for sid in stream_ids}
    versions.update({sid: int(version) for sid, version in rows})

    keyed = [(item.user_id, item.idempotency_key) for item in items if item.idempotency_key and item.user_id]
    seen: dict[tuple[str, str], Committed | Duplicate] = {}
    if keyed:
        found = await conn.execute(
            _FIND_KEYS, {"users": [u for u, _ in keyed], "keys": [k for _, k in keyed]}
        )
        for user_id, key, position, version, recorded_at in found:
            seen[(user_id, key)] = Duplicate(int(position), int(version), recorded_at)

    outcomes: list[AppendOutcome] = []
    written: list[tuple[int, int, NewEvent]] = []
    position = int(head)
    for item in items:
        key = (item.user_id, item.idempotency_key) if item.idempotency_key and item.user_id else None
        if key is not None and key in seen:
            prior = seen[key]
            outcomes.append(Duplicate(prior.position, prior.stream_version, prior.recorded_at))
            continue
        current = versions[item.stream_id]
        if item.expected_version is not None and item.expected_version != current:
            outcomes.append(Conflict(item.expected_version, current))
            continue
        position += 1
        versions[item.stream_id] = current + 1
        committed = Committed(position, current + 1, now)
        written.append((position, current + 1, item))
        outcomes.append(committed)
        if key is not None:
            seen[key] = committed

    if written:
        await _insert(conn, written, now)
        touched = sorted({item.stream_id for _, _, item in written})
        await conn.execute(_UPSERT_STREAMS, {"ids": touched, "versions": [versions[s] for s in touched]})
        await conn.execute(_SET_HEAD, {"position": position})
    return outcomes


async def _insert(conn: AsyncConnection, written: list[tuple[int, int, NewEvent]], now: datetime) -> None:
    await conn.execute(
        _INSERT_EVENTS,
        {
            "positions": [p for p, _, _ in written],
            "stream_ids": [e.stream_id for _, _, e in written],
            "versions": [v for _, v, _ in written],
            "types": [e.type for _, _, e in written],
            "data": [_json_dumps(e.data) for _, _, e in written],
            "metadata": [_json_dumps(e.metadata) for _, _, e in written],
            "user_ids": [e.user_id for _, _, e in written],
            "keys": [e.idempotency_key for _, _, e in written],
            "recorded_at": now,
        },
    )
