"""How one batch is written to the log: decided in Python, committed in one round trip.

Appends to a partition are serialised by its `log_head` row lock (engine/log/store.py explains why).
The cost of that lock is how long it is held: every round trip made while holding it, and every wait
for this event loop to resume the coroutine between round trips, is time no other batch of the
partition can commit. So a batch is written optimistically:

1. Read, without any lock, the head position, the versions of the batch's streams and the
   idempotency keys already used: one round trip.
2. Decide each item against that state (`plan`): duplicate, conflict, or its position and version.
3. Send one statement, run in autocommit, that moves the head only if it is still where step 1 saw
   it (`UPDATE ... WHERE position = seen`), and inserts the events and stream counters only if the
   head moved. The row lock is taken by that UPDATE and held only for this statement and its commit.

If the head moved between 1 and 3 (another process appended), nothing was written and the decisions
may be stale: the batch is retried the pessimistic way, `BEGIN`, lock the head first, read, decide,
write, `COMMIT`, which always succeeds. With one appender per process, the optimistic path fails only
when several processes append at the same moment, and then costs one extra read.

Both paths decide with the same `plan` and commit with the same guarantee: a batch's decisions hold
at the head it commits on, because no append to its partition can commit between its read and its
write. A sheet's claim is the one fact read from another partition (the sheet's): it can commit
without moving this head, so a writer remembers a sheet's room once claimed (it never changes) but
never that a sheet is unclaimed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.log.batch_plan import CellKey, IdempotencyKey, LogState, Plan, idempotency_key, plan
from engine.log.partitions import partition_of
from engine.model.errors import EngineError
from engine.model.events import AppendOutcome, Duplicate, NewEvent
from engine.model.streams import durable_stream, sheet_stream
from engine.projections.cells import Cell

# The head, each stream's version, the idempotency keys already used, and the cells and sheets the
# batch's cell writes touch, in one round trip. Columns: kind, two texts, two numbers, a time, a JSON.
_READ_STATE = """
    SELECT 'h', NULL::text, NULL::text, position, NULL::bigint, NULL::timestamptz, NULL::text
    FROM log_head WHERE partition = $8
    UNION ALL
    SELECT 's', stream_id, NULL::text, version, NULL::bigint, NULL::timestamptz, NULL::text
    FROM streams WHERE stream_id = ANY($1::text[]) AND partition = $8
    UNION ALL
    SELECT 'k', e.user_id, e.idempotency_key, e.stream_version, e.position, e.recorded_at, k.scope
    FROM events e
    JOIN unnest($7::text[], $2::text[], $3::text[]) AS k(scope, user_id, idempotency_key)
      ON e.user_id = k.user_id AND e.idempotency_key = k.idempotency_key
     AND e.stream_id IN (k.scope, 'volatile:' || k.scope) AND e.partition = $8
    UNION ALL
    SELECT 'c', c.sheet_id, c.cell_id, c.version, c.seq, c.updated_at,
           jsonb_build_object('value', c.value, 'formula', c.formula, 'user_id', c.user_id)::text
    FROM cells c
    JOIN unnest($4::text[], $5::text[]) AS k(sheet_id, cell_id)
      ON c.sheet_id = k.sheet_id AND c.cell_id = k.cell_id AND c.partition = $8
    UNION ALL
    -- A sheet's row is in its claim's partition, which may be another: read, never written, here.
    SELECT 'r', s.sheet_id, s.room_id, NULL::bigint, NULL::bigint, NULL::timestamptz, NULL::text
    FROM sheets s
    JOIN unnest($6::text[], $9::smallint[]) AS k(sheet_id, partition)
      ON s.sheet_id = k.sheet_id AND s.partition = k.partition
"""

# Moves the head from $4 to $3 and writes the batch, or writes nothing if the head is not at $4.
# `moved` is evaluated first (the inserts read it), so the lock is taken before any row is written.
# Its clock_timestamp() is read after the lock is granted, and never taken below the time of the event
# at the old head: recorded_at then never decreases along positions, even if the database's clock is
# stepped back, which keeps "as of time T" the same as "as of some position" (and lets a page filtered
# by time be bounded by position, engine/readmodels/time_range.py). The rows travel as one
# JSON document: encoding it with orjson is several times cheaper than binding ten typed arrays.
_WRITE_IF_HEAD = """
    WITH moved AS (
        UPDATE log_head SET position = $3 WHERE partition = $7 AND position = $4
        RETURNING greatest(
            clock_timestamp(), (SELECT e.recorded_at FROM events e WHERE e.partition = $7 AND e.position = $4)
        ) AS at
    ), written AS (
        INSERT INTO events (partition, position, stream_id, stream_version, type, data, metadata,
                            user_id, idempotency_key, recorded_at)
        SELECT $7, t.p, t.s, t.v, t.t, t.d, t.m, t.u, t.k, moved.at
        FROM moved, jsonb_to_recordset($1::jsonb)
             AS t(p bigint, s text, v bigint, t text, d jsonb, m jsonb, u text, k text)
    ), counters AS (
        INSERT INTO streams (stream_id, partition, version)
        SELECT c.key, $7, c.value::bigint FROM moved, jsonb_each_text($2::jsonb) AS c
        ON CONFLICT (stream_id, partition) DO UPDATE SET version = EXCLUDED.version
    ), cell_rows AS (
        INSERT INTO cells (sheet_id, cell_id, partition, value, formula, version, user_id, seq, position,
                           updated_at)
        SELECT c.sheet_id, c.cell_id, $7, c.value, c.formula, c.version, c.user_id, c.seq, c.position,
               moved.at
        FROM moved, jsonb_to_recordset($5::jsonb) AS c(sheet_id text, cell_id text, value jsonb,
             formula text, version bigint, user_id text, seq bigint, position bigint)
        ON CONFLICT (sheet_id, cell_id, partition) DO UPDATE SET
            value = EXCLUDED.value, formula = EXCLUDED.formula, version = EXCLUDED.version,
            user_id = EXCLUDED.user_id, seq = EXCLUDED.seq, position = EXCLUDED.position,
            updated_at = EXCLUDED.updated_at
    ), sheet_rows AS (
        -- A sheet's room never changes: only the first event of its stream, its claim, writes a row
        -- (a second claim is a Conflict), and an existing row is kept as it is.
        INSERT INTO sheets (sheet_id, partition, room_id, position)
        SELECT s.sheet_id, $7, s.room_id, s.position
        FROM moved, jsonb_to_recordset($6::jsonb) AS s(sheet_id text, room_id text, position bigint)
        ON CONFLICT (sheet_id, partition) DO NOTHING
    )
    SELECT at FROM moved
"""
_PARTITION_COUNT = "SELECT count(*) FROM log_head"
# One round trip (simple protocol, so no parameters): the partition is an int the writer was made with.
_BEGIN_AND_LOCK = "BEGIN; SELECT 1 FROM log_head WHERE partition = {partition:d} FOR UPDATE"


async def read_state(
    conn: asyncpg.Connection, items: Sequence[NewEvent], partition: int = 0, partitions: int = 1
) -> LogState:
    """What `plan` needs to decide `items` (all in `partition`), as of the head this read sees. Cells
    and sheets the batch touches are all in the result, None where they do not exist yet."""
    stream_ids = list({item.stream_id for item in items})
    keyed = [item for item in items if idempotency_key(item) is not None]
    cell_keys = list({(w.sheet_id, w.cell_id) for i in items for w in i.cells})
    sheet_ids = list({sheet for sheet, _ in cell_keys})
    rows = await conn.fetch(
        _READ_STATE,
        stream_ids,
        [i.user_id for i in keyed],
        [i.idempotency_key for i in keyed],
        [sheet for sheet, _ in cell_keys],
        [cell for _, cell in cell_keys],
        sheet_ids,
        [durable_stream(i.stream_id) for i in keyed],
        partition,
        [partition_of(sheet_stream(sheet), partitions) for sheet in sheet_ids],
    )
    head = 0
    versions: dict[str, int] = {}
    used: dict[IdempotencyKey, Duplicate] = {}
    cells: dict[CellKey, Cell | None] = dict.fromkeys(cell_keys)
    sheets: dict[str, str | None] = dict.fromkeys(sheet_ids)
    for kind, first, second, number, other, at, extra in rows:
        if kind == "h":
            head = number
        elif kind == "s":
            versions[first] = number
        elif kind == "k":
            used[(extra, first, second)] = Duplicate(other, number, at, partition)
        elif kind == "c":
            fields = orjson.loads(extra)
            cells[(first, second)] = Cell(
                second, fields["value"], fields["formula"], number, fields["user_id"], at, other
            )
        else:
            sheets[first] = second
    return LogState(head, versions, used, cells, sheets)


async def write_if_head(
    conn: asyncpg.Connection, p: Plan, encoded: tuple[str, str, str, str], partition: int = 0
) -> datetime | None:
    """Commit the plan if `partition`'s head is still at `p.base`; its recorded_at, or None if it moved."""
    rows, counters, cells, sheets = encoded
    at: datetime | None = await conn.fetchval(
        _WRITE_IF_HEAD, rows, counters, p.new_head, p.base, cells, sheets, partition
    )
    return at


class LogWriter:
    """Appends batches to one partition on one connection held across batches.

    The appender commits back to back, and checking a connection out of the pool (with its ping)
    for every batch cost about a millisecond. A connection that broke is dropped and the next batch
    opens a new one, so the writer reconnects by itself after a database restart.
    """

    def __init__(
        self,
        db_engine: AsyncEngine,
        *,
        partition: int = 0,
        partitions: int = 1,
        max_cached_streams: int = 100_000,
    ) -> None:
        self.db_engine = db_engine
        self.partition = partition
        self.partitions = partitions
        self.max_cached_streams = max_cached_streams
        # The held connection and its driver's own, asked for once: SQLAlchemy hands it over through a
        # greenlet hop, which every batch used to pay twice.
        self._held: tuple[AsyncConnection, asyncpg.Connection] | None = None
        # What this writer knows of the log as of its own last commit: the head it moved the log to,
        # and stream versions it wrote or read then. See `append` for why stale knowledge is safe.
        self._head: int | None = None
        self._versions: dict[str, int] = {}
        self._cells: dict[CellKey, Cell | None] = {}
        self._sheets: dict[str, str | None] = {}
        self.paths = {"known": 0, "read": 0, "locked": 0}
        self._checked = False  # the log's partition count was confirmed
        self._refused: EngineError | None = None  # the log is split otherwise: every batch fails so

    async def append(self, items: Sequence[NewEvent], *, optimistic: bool = True) -> list[AppendOutcome]:
        """Commit a batch, trying the cheapest path first (only the locked one without `optimistic`).

        known: decide against what this writer already knows, without reading: the head is where its
            last commit left it and idempotency keys are assumed unused. One round trip. Wrong
            knowledge cannot commit: if anyone else appended since, the head check writes nothing;
            a stale stream version or a used key makes the insert hit a unique index instead.
        read: read the state first, then the same conditional write (two round trips).
        locked: lock the head, read, write, commit: cannot go stale (see the module docstring).
        """
        if not items:
            return []
        self._check_partition(items)
        if not optimistic:
            self.paths["locked"] += 1
            return await self._append_locked(items)
        if self._head is not None and self._knows(items):
            p = plan(LogState(self._head, self._versions, {}, self._cells, self._sheets), items)
            # A plan that writes nothing was decided on knowledge alone: confirm it by reading.
            if p.rows and (outcomes := await self._try_write(p)) is not None:
                self.paths["known"] += 1
                return outcomes
            if p.rows:
                self._forget()  # the log moved on without us: what we knew is stale
        async with self._connection() as raw:
            state = await read_state(raw, items, self.partition, self.partitions)
        # Knowledge is kept only while the head is where our own last commit left it; a batch that
        # merely touches streams or cells we have not seen yet must not throw it all away.
        if state.head != self._head:
            self._forget()
        p = plan(state, items)
        if not p.rows:
            return p.resolve(None)  # only conflicts and duplicates: nothing to commit
        if (outcomes := await self._try_write(p, state)) is not None:
            self.paths["read"] += 1
            return outcomes
        self.paths["locked"] += 1
        return await self._append_locked(items)

    async def _try_write(self, p: Plan, state: LogState | None = None) -> list[AppendOutcome] | None:
        """Commit `p` if the head is still at its base; None if it moved or a unique index refused it."""
        encoded = p.encode()
        async with self._connection() as raw:
            try:
                at = await write_if_head(raw, p, encoded, self.partition)
            except asyncpg.UniqueViolationError:
                return None
        if at is None:
            return None
        self._learn(p, state, at)
        return p.resolve(at, self.partition)

    async def _append_locked(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        async with self._connection() as raw:
            await raw.execute(_BEGIN_AND_LOCK.format(partition=self.partition))
            try:
                state = await read_state(raw, items, self.partition, self.partitions)
                p = plan(state, items)
                at = await write_if_head(raw, p, p.encode(), self.partition) if p.rows else None
                if p.rows and at is None:
                    raise RuntimeError("the log head moved while this transaction held its lock")
                await raw.execute("COMMIT")
            except BaseException:
                if not raw.is_closed():
                    await raw.execute("ROLLBACK")
                raise
        if p.rows and at is not None:
            if state.head != self._head:
                self._forget()
            self._learn(p, state, at)
        return p.resolve(at, self.partition)

    def _check_partition(self, items: Sequence[NewEvent]) -> None:
        """A batch that strays into another partition would commit there under this head: refused."""
        if self.partitions == 1:
            return
        for item in items:
            if partition_of(item.stream_id, self.partitions) != self.partition:
                raise ValueError(f"{item.stream_id!r} is not in partition {self.partition}")

    def _knows(self, items: Sequence[NewEvent]) -> bool:
        for item in items:
            if item.stream_id not in self._versions:
                return False
            for write in item.cells:
                if write.sheet_id not in self._sheets or (write.sheet_id, write.cell_id) not in self._cells:
                    return False
        return True

    def _learn(self, p: Plan, state: LogState | None, at: datetime) -> None:
        if len(self._versions) + len(self._cells) > self.max_cached_streams:
            self._forget()
        if state is not None:
            self._versions.update(state.versions)
            self._cells.update(state.cells)
            # Only sheets with a room: a claim may commit in the sheet's own partition without moving
            # this one's head, so "not claimed" is never known for long. A room, once claimed, is.
            self._sheets.update({sheet: room for sheet, room in state.sheets.items() if room is not None})
        self._versions.update(p.versions)
        self._cells.update(p.learned_cells(at))
        self._sheets.update({sheet: row["room_id"] for sheet, row in p.sheet_rows.items()})
        self._head = p.new_head

    def _forget(self) -> None:
        self._head = None
        self._versions.clear()
        self._cells.clear()
        self._sheets.clear()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The held connection. A statement error leaves it clean (autocommit, or rolled back), but
        after a broken socket or a cancelled await its state is unknown: it is then never reused."""
        if self._held is not None and self._held[1].is_closed():
            # Lost while idle (a database restart, a cut network): nothing was sent on it, so a new
            # connection serves this batch instead of failing it.
            await self._drop(self._held[0])
        if self._refused is not None:
            raise self._refused
        if self._held is None:
            conn = await self.db_engine.connect()
            try:
                raw: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection
            except BaseException:
                await self._drop(conn)
                raise
            self._held = (conn, raw)
            if not self._checked:
                await self._check_log(conn, raw)
        conn, raw = self._held
        try:
            yield raw
        except asyncpg.PostgresError:
            if raw.is_closed():
                await self._drop(conn)
            raise
        except (TypeError, ValueError):
            raise  # data that cannot be encoded: the connection was not touched
        except BaseException:
            await self._drop(conn)
            raise

    async def _check_log(self, conn: AsyncConnection, raw: asyncpg.Connection) -> None:
        """Refuse a log split otherwise than this writer was made for: its streams' partitions
        would differ from the ones other writers give them. Once: a log's partitions never change."""
        try:
            count = await raw.fetchval(_PARTITION_COUNT)
        except BaseException:
            await self._drop(conn)
            raise
        if count != self.partitions:
            await self._drop(conn)
            self._refused = EngineError(
                f"the log has {count} partition(s); this writer was made for {self.partitions}"
            )
            raise self._refused
        self._checked = True

    async def _drop(self, conn: AsyncConnection) -> None:
        self._held = None
        self._forget()
        await conn.invalidate()
        await conn.close()

    async def close(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            await held[0].close()
