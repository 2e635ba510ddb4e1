"""The event log on PostgreSQL: append a batch, read a stream, read the whole log.

Ordering: why no reader of the whole log ever skips an event
-------------------------------------------------------------
A reader of the whole log (projectors, auditors, other nodes) remembers the highest position it has
seen in a partition and asks for `position > that` there. This is only safe if an event with a lower
position can never become visible after one with a higher position. With a sequence-assigned position
it can: T1 takes position 10, T2 takes 11, T2 commits first, a reader sees 11, then T1 commits 10 and
the reader has already moved past it.

We serialise appends instead of reading below the transaction-id horizon. Positions count within a
partition of the log (engine/log/partitions.py), and every append transaction writes one partition: it
locks that partition's `log_head` row before it writes, and its positions follow the head it locked, so
within the partition position order is lock order is commit order. PostgreSQL releases a transaction's
row locks only after its commit is visible to other snapshots, so the next appender cannot even pick a
position before the previous batch is readable. Positions are also gapless: a rolled-back batch rolls
back its head update.
How a batch takes that lock without holding it across round trips is in engine/log/writer.py.

Why this and not the `pg_snapshot_xmin` horizon: appends are already batched by one group-commit
appender per process, so one lock acquisition is paid per batch (hundreds of events), not per event,
and the cost is one short critical section (a few statements on a warm connection). In exchange every
reader stays a plain indexed range scan that is correct without knowing about in-flight transactions,
and positions stay dense, which makes "every event exactly once" easy to check. The horizon approach
would let batches from different nodes commit in parallel, which matters only once the log outgrows a
single lock; docs/scaling.md plans sharding the log by room for that point.

Each item of a batch is decided on its own (idempotency key, expected version) against the state at
the head it commits on, so a rejected item never fails the others and two processes can never both
accept conflicting items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from engine.log import jsonb
from engine.log.partitions import (
    partition_count,
    partition_of,
    partition_runs,
    read_head,
    read_heads,
)
from engine.log.schema import events
from engine.log.session_settings import session_settings
from engine.log.writer import LogWriter
from engine.model.catalogue import CURSOR_MOVED, FILE_CLAIM_EVENTS, UPLOAD_EVENTS, USER_STATUS_CHANGED
from engine.model.events import AppendOutcome, NewEvent, RecordedEvent
from engine.model.streams import (
    ROOM_STREAM_PREFIX,
    durable_stream,
    file_stream,
    room_stream,
    sheet_stream,
    user_id_of,
    user_stream,
    volatile_stream,
)
from engine.projections.cells import SheetAtHead


def create_db_engine(
    database_url: str,
    *,
    pool_size: int = 10,
    command_timeout: float = 5.0,
    application_name: str | None = None,
    vanish_within: float | None = None,
) -> AsyncEngine:
    """An async SQLAlchemy engine tuned for the log.

    `command_timeout` bounds every statement and connect, so a caller learns within a bounded time
    that PostgreSQL is unreachable; `pool_pre_ping` replaces connections that died while idle, which
    is how the engine reconnects by itself after a database restart. `application_name` names every
    session, which is how a node's peers see it is alive (engine/cluster/registry.py); with
    `vanish_within` the server ends a session whose host has gone silent that long
    (engine/log/session_settings.py), and with it the locks it held.
    """
    server_settings = session_settings(name=application_name, vanish_within=vanish_within)
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=command_timeout,
        json_serializer=jsonb.dumps,
        json_deserializer=orjson.loads,
        connect_args={
            "command_timeout": command_timeout,
            "timeout": command_timeout,
            "server_settings": server_settings,
        },
    )


def libpq_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as a plain `postgresql://` DSN, for a raw asyncpg connection (LISTEN)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


# The time format is engine/protocol/outbound.py's `iso`: UTC, microseconds, a `Z`.
_SHEET_ROOM = "SELECT room_id FROM sheets WHERE partition = :partition AND sheet_id = :sheet"
# The room's seq and the sheet's cells, both in the room's partition.
_SHEET_AT_HEAD = """
    SELECT (SELECT version FROM streams WHERE partition = :partition AND stream_id = :room) AS seq,
           (SELECT json_object_agg(c.cell_id, json_build_object(
                'value', c.value, 'formula', c.formula, 'version', c.version, 'user_id', c.user_id,
                'updated_at', to_char(c.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))
            FROM cells AS c WHERE c.partition = :partition AND c.sheet_id = :sheet) AS cells
"""


_LATEST_STATUSES = """
    SELECT DISTINCT ON (stream_id) stream_id, data->>'status' AS status FROM events
    WHERE partition = ANY(CAST(:partitions AS smallint[])) AND stream_id = ANY(CAST(:streams AS text[]))
      AND type = :type
    ORDER BY stream_id, stream_version DESC
"""

# How far back in a room's volatile stream (cursors, typing) a view read from the log looks for its
# members' cursors: bounded, so that a busy room's read stays one short index range.
CURSOR_WINDOW = 10_000
_LATEST_CURSORS = """
    SELECT DISTINCT ON (data->>'user_id') * FROM events
    WHERE partition = :partition AND stream_id = :stream AND type = :type
      AND stream_version > (
        SELECT version FROM streams WHERE partition = :partition AND stream_id = :stream
      ) - :window
      AND data->>'user_id' = ANY(CAST(:users AS text[]))
    ORDER BY data->>'user_id', stream_version DESC
"""


class Writer(Protocol):
    """What the group-commit appender drives (engine/log/appender.py): one batch at a time."""

    paths: dict[str, int]  # how many batches committed on each write path

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]: ...

    async def close(self) -> None: ...


class EventLog(Protocol):
    """The log as the engine uses it: `EventStore` on PostgreSQL, `MemoryEventStore` in tests. Both
    decide a batch with the same plan (engine/log/batch_plan.py) and pass one contract suite
    (tests/contract/)."""

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]: ...

    def writer(self, partition: int = 0, partitions: int = 1) -> Writer: ...

    async def partitions(self) -> int: ...

    async def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]: ...

    async def read_all(
        self, after: int = 0, limit: int = 1000, partition: int = 0
    ) -> list[RecordedEvent]: ...

    async def head(self) -> int: ...

    async def heads(self) -> dict[int, int]: ...

    async def sheet_room(self, sheet_id: str) -> str | None: ...

    async def stream_version(self, stream_id: str) -> int: ...

    async def file_claims(self, file_id: str) -> list[RecordedEvent]: ...

    async def upload_events(self, user_id: str, file_id: str) -> list[RecordedEvent]: ...

    async def sheet_at_head(self, sheet_id: str) -> SheetAtHead | None: ...

    async def latest_statuses(self, user_ids: Sequence[str]) -> dict[str, str]: ...

    async def latest_cursors(self, room_id: str, user_ids: Sequence[str]) -> list[RecordedEvent]: ...

    async def event_by_key(
        self, user_id: str, key: str, stream_id: str | None = None
    ) -> RecordedEvent | None: ...


class EventStore:
    """Reads and writes the log. Stateless apart from the connection pool, so any number of
    instances (and processes) can share one database."""

    def __init__(self, db_engine: AsyncEngine) -> None:
        self.db_engine = db_engine
        self._partitions: int | None = None

    async def partitions(self) -> int:
        """How many partitions the log has; fixed when it was created, so read once."""
        if self._partitions is None:
            async with self.db_engine.connect() as conn:
                self._partitions = await partition_count(conn)
        return self._partitions

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        """Append a batch; one outcome per item, in order.

        For one-off callers: it locks the head first, which never has to retry however many callers
        race. A long-lived appender uses `writer()` instead. A batch is one transaction per run of
        consecutive items in one partition, committed in order, so an item is decided after
        everything before it (a sheet's claim before its edit); on a log of several partitions a
        batch is atomic only within a run, and a failing run leaves the runs before it committed.
        """
        if not items:
            return []
        partitions = await self.partitions()
        outcomes: list[AppendOutcome] = []
        for partition, run in partition_runs(items, partitions):
            writer = LogWriter(self.db_engine, partition=partition, partitions=partitions)
            try:
                outcomes += await writer.append(run, optimistic=False)
            finally:
                await writer.close()
        return outcomes

    def writer(self, partition: int = 0, partitions: int = 1) -> LogWriter:
        """A writer of one partition of a log of `partitions` that keeps one connection, for a
        long-lived appender; it refuses to write if the log has another number of partitions."""
        return LogWriter(self.db_engine, partition=partition, partitions=partitions)

    async def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        query = (
            select(events)
            .where(
                events.c.partition == await self._partition_of(stream_id),
                events.c.stream_id == stream_id,
                events.c.stream_version > after_version,
            )
            .order_by(events.c.stream_version)
            .limit(limit)
        )
        return await self._fetch(query)

    async def read_all(self, after: int = 0, limit: int = 1000, partition: int = 0) -> list[RecordedEvent]:
        """The partition's events with position > `after`, in position order; safe to tail (see the
        module docstring). By default partition 0 (engine/log/partitions.py)."""
        query = (
            select(events)
            .where(events.c.partition == partition, events.c.position > after)
            .order_by(events.c.position)
            .limit(limit)
        )
        return await self._fetch(query)

    async def head(self) -> int:
        """Partition 0's newest committed position, the whole log's in a log of one (0 when empty)."""
        async with self.db_engine.connect() as conn:
            return await read_head(conn)

    async def heads(self) -> dict[int, int]:
        """Every partition's newest committed position, in one read."""
        async with self.db_engine.connect() as conn:
            return await read_heads(conn)

    async def sheet_room(self, sheet_id: str) -> str | None:
        """The room the sheet was claimed for, or None for a sheet never claimed."""
        claimed_in = await self._partition_of(sheet_stream(sheet_id))
        async with self.db_engine.connect() as conn:
            found = await conn.execute(text(_SHEET_ROOM), {"partition": claimed_in, "sheet": sheet_id})
            return found.scalar()

    async def file_claims(self, file_id: str) -> list[RecordedEvent]:
        """The `FileUploadStarted`/`FileUploadCompleted`/`FileUploadFailed` events naming `file_id` in
        its owner's stream, in position order; empty while nobody has claimed the id (or its owner
        has not started it yet). The owner is the user of the id's `FileClaimed`, the first event of
        `file:{file_id}` (engine/features/files.py decides from these whether the owner's last attempt
        is complete, failed or under way).

        Two reads through the (stream, version) index, each in its stream's partition: the claim,
        which never changes once made, then the owner's stream."""
        claim = select(events.c.data["user_id"].astext).where(
            events.c.partition == await self._partition_of(file_stream(file_id)),
            events.c.stream_id == file_stream(file_id),
            events.c.stream_version == 1,
        )
        async with self.db_engine.connect() as conn:
            owner = (await conn.execute(claim)).scalar()
        if owner is None:
            return []
        query = (
            select(events)
            .where(
                events.c.partition == await self._partition_of(user_stream(owner)),
                events.c.stream_id == user_stream(owner),
                events.c.type.in_(sorted(FILE_CLAIM_EVENTS)),
                events.c.data["file_id"].astext == file_id,
            )
            .order_by(events.c.position)
        )
        return await self._fetch(query)

    async def upload_events(self, user_id: str, file_id: str) -> list[RecordedEvent]:
        """Every upload event of `user_id` naming `file_id`, progress included, in position order:
        the upload as the log holds it right now (engine/projections/uploads.py folds them). Read
        through the (stream, version) index of the user's stream and its volatile twin."""
        durable = user_stream(user_id)
        query = (
            select(events)
            .where(
                events.c.partition == await self._partition_of(durable),
                events.c.stream_id.in_((durable, volatile_stream(durable))),
                events.c.type.in_(sorted(UPLOAD_EVENTS)),
                events.c.data["file_id"].astext == file_id,
            )
            .order_by(events.c.position)
        )
        return await self._fetch(query)

    async def sheet_at_head(self, sheet_id: str) -> SheetAtHead | None:
        """The sheet's cells and its room's seq, read in one statement and so one snapshot: the
        `cells` and `streams` rows are written in the same statement as the events (writer.py), so
        the pair is exactly the log at some head. The sheet's room is read first, in a round trip of
        its own from its claim's partition: a claim never changes. None for a sheet never claimed."""
        room_id = await self.sheet_room(sheet_id)
        if room_id is None:
            return None
        room = ROOM_STREAM_PREFIX + room_id
        params = {"partition": await self._partition_of(room), "room": room, "sheet": sheet_id}
        async with self.db_engine.connect() as conn:
            row = (await conn.execute(text(_SHEET_AT_HEAD), params)).one()
        return SheetAtHead(sheet_id, room_id, int(row.seq or 0), row.cells or {})

    async def event_by_key(
        self, user_id: str, key: str, stream_id: str | None = None
    ) -> RecordedEvent | None:
        """The event the user appended to `stream_id` (or its volatile twin) under idempotency key
        `key` (unique per user and stream), or without a stream the newest under that key in any
        stream; None if none."""
        query = select(events).where(events.c.user_id == user_id, events.c.idempotency_key == key)
        if stream_id is not None:
            scope = durable_stream(stream_id)
            query = query.where(
                events.c.partition == await self._partition_of(scope),
                events.c.stream_id.in_([scope, volatile_stream(scope)]),
            )
        # Positions order events only within a partition; the time orders them across partitions.
        newest = query.order_by(events.c.recorded_at.desc(), events.c.position.desc()).limit(1)
        found = await self._fetch(newest)
        return found[0] if found else None

    async def latest_statuses(self, user_ids: Sequence[str]) -> dict[str, str]:
        """Each user's last declared status (`UserStatusChanged`), for those who declared one: each
        user stream read backwards by its (stream, version) index until its newest status."""
        if not user_ids:
            return {}
        streams = [user_stream(u) for u in user_ids]
        partitions = sorted({await self._partition_of(s) for s in streams})
        async with self.db_engine.connect() as conn:
            rows = await conn.execute(
                text(_LATEST_STATUSES),
                {"partitions": partitions, "streams": streams, "type": USER_STATUS_CHANGED},
            )
            return {user_id_of(row.stream_id): str(row.status) for row in rows}

    async def latest_cursors(self, room_id: str, user_ids: Sequence[str]) -> list[RecordedEvent]:
        """Each user's newest `CursorMoved` in the room among the last `CURSOR_WINDOW` events of its
        volatile stream, in position order: the cursors a view read from the durable stream lacks."""
        if not user_ids:
            return []
        stream = volatile_stream(room_stream(room_id))
        params = {
            "partition": await self._partition_of(stream),
            "stream": stream,
            "type": CURSOR_MOVED,
            "window": CURSOR_WINDOW,
            "users": list(user_ids),
        }
        async with self.db_engine.connect() as conn:
            rows = (await conn.execute(text(_LATEST_CURSORS), params)).mappings().all()
        return sorted((RecordedEvent(**row) for row in rows), key=lambda event: event.position)

    async def stream_version(self, stream_id: str) -> int:
        params = {"partition": await self._partition_of(stream_id), "s": stream_id}
        async with self.db_engine.connect() as conn:
            found = await conn.execute(
                text("SELECT version FROM streams WHERE partition = :partition AND stream_id = :s"), params
            )
            return int(found.scalar() or 0)

    async def _partition_of(self, stream_id: str) -> int:
        return partition_of(stream_id, await self.partitions())

    async def _fetch(self, query: Any) -> list[RecordedEvent]:
        async with self.db_engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [RecordedEvent(**row) for row in rows]
