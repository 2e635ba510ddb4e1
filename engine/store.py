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
from typing import Any

import asyncpg
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


# The write path runs on the raw asyncpg connection beneath SQLAlchemy's pool: it is the hottest code in
# the engine and this saves a layer of per-statement overhead; the pool still owns reconnects.
# BEGIN and the head lock travel together (simple-query protocol, one round trip): every append
# transaction starts by taking that lock; see the module docstring.
_BEGIN_AND_LOCK = "BEGIN; SELECT 1 FROM log_head WHERE id = 1 FOR UPDATE"
# Runs after the head lock is granted, so its snapshot sees every earlier batch. Three questions in one
# round trip: the head, each stream's version, and which idempotency keys were already used.
_READ_STATE = """
    SELECT 'h', NULL::text, NULL::text, position, NULL::bigint, now() FROM log_head WHERE id = 1
    UNION ALL
    SELECT 's', stream_id, NULL::text, version, NULL::bigint, NULL::timestamptz
    FROM streams WHERE stream_id = ANY($1::text[])
    UNION ALL
    SELECT 'k', e.user_id, e.idempotency_key, e.stream_version, e.position, e.recorded_at
    FROM events e
    JOIN unnest($2::text[], $3::text[]) AS k(user_id, idempotency_key)
      ON e.user_id = k.user_id AND e.idempotency_key = k.idempotency_key
"""
# Events, stream counters and the head in one statement and one round trip. The rows travel as one
# JSON document: encoding it with orjson is several times cheaper than binding ten typed arrays.
_WRITE = """
    WITH written AS (
        INSERT INTO events (position, stream_id, stream_version, type, data, metadata,
                            user_id, idempotency_key, recorded_at)
        SELECT t.p, t.s, t.v, t.t, t.d, t.m, t.u, t.k, now()
        FROM jsonb_to_recordset($1::jsonb)
             AS t(p bigint, s text, v bigint, t text, d jsonb, m jsonb, u text, k text)
    ), counters AS (
        INSERT INTO streams (stream_id, version)
        SELECT key, value::bigint FROM jsonb_each_text($2::jsonb)
        ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version
    )
    UPDATE log_head SET position = $3 WHERE id = 1
"""


class EventStore:
    """Reads and writes the log. Stateless apart from the connection pool, so any number of
    instances (and processes) can share one database."""

    def __init__(self, db_engine: AsyncEngine) -> None:
        self.db_engine = db_engine

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        """Append a batch in one transaction; one outcome per item, in order."""
        if not items:
            return []
        async with self.db_engine.connect() as conn:
            return await _append_on(conn, items)

    def writer(self) -> LogWriter:
        """A writer that keeps one connection for a long-lived appender."""
        return LogWriter(self.db_engine)

    async def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
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
            found = await conn.execute(
                text("SELECT version FROM streams WHERE stream_id = :s"), {"s": stream_id}
            )
            return int(found.scalar() or 0)

    async def _fetch(self, query: Any) -> list[RecordedEvent]:
        async with self.db_engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [RecordedEvent(**row) for row in rows]


class LogWriter:
    """Appends on one connection held across batches.

    The appender commits back to back; checking a connection out of the pool (and pinging it) for
    every batch cost about a millisecond each time. A broken connection is dropped and the next
    batch opens a new one, so the writer reconnects by itself after a database restart.
    """

    def __init__(self, db_engine: AsyncEngine) -> None:
        self.db_engine = db_engine
        self._conn: AsyncConnection | None = None

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        if not items:
            return []
        if self._conn is None:
            self._conn = await self.db_engine.connect()
        try:
            return await _append_on(self._conn, items)
        except BaseException:
            if self._conn.invalidated:
                await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


async def _append_on(conn: AsyncConnection, items: Sequence[NewEvent]) -> list[AppendOutcome]:
    """One append transaction on `conn`. Rolls back on a statement error; on anything else (a broken
    connection, a cancelled await) the transaction state is unknown, so the connection is invalidated
    rather than reused."""
    raw: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection  # type: ignore[assignment]
    try:
        await raw.execute(_BEGIN_AND_LOCK)
        outcomes = await append_in_transaction(raw, items)
        await raw.execute("COMMIT")
        return outcomes
    except asyncpg.PostgresError:
        if raw.is_closed():
            await conn.invalidate()
        else:
            await raw.execute("ROLLBACK")
        raise
    except BaseException:
        await conn.invalidate()
        raise


async def append_in_transaction(conn: asyncpg.Connection, items: Sequence[NewEvent]) -> list[AppendOutcome]:
    """Decide and write a batch inside a transaction that already holds the head lock. The caller
    commits."""
    stream_ids = list({item.stream_id for item in items})
    keyed = [item for item in items if item.idempotency_key and item.user_id]
    rows = await conn.fetch(
        _READ_STATE, stream_ids, [i.user_id for i in keyed], [i.idempotency_key for i in keyed]
    )
    head, now = 0, None
    versions: dict[str, int] = dict.fromkeys(stream_ids, 0)
    seen: dict[tuple[str, str], Committed | Duplicate] = {}
    for kind, first, key, version, position, at in rows:
        if kind == "h":
            head, now = version, at
        elif kind == "s":
            versions[first] = version
        else:
            seen[(first, key)] = Duplicate(position, version, at)

    outcomes: list[AppendOutcome] = []
    written: list[tuple[int, int, NewEvent]] = []
    position = head
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
        rows_json = orjson.dumps(
            [
                {
                    "p": p,
                    "s": e.stream_id,
                    "v": v,
                    "t": e.type,
                    "d": e.data,
                    "m": e.metadata,
                    "u": e.user_id,
                    "k": e.idempotency_key,
                }
                for p, v, e in written
            ]
        ).decode()
        touched = {e.stream_id: versions[e.stream_id] for _, _, e in written}
        await conn.execute(_WRITE, rows_json, _json_dumps(touched), position)
    return outcomes
