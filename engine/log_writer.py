"""How one batch is written to the log: decided in Python, committed in one round trip.

Appends are serialised by the `log_head` row lock (engine/store.py explains why). The cost of that
lock is how long it is held: every round trip made while holding it, and every wait for this event
loop to resume the coroutine between round trips, is time no other batch can commit. So a batch is
written optimistically:

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
at the head it commits on, because no append can commit between its read and its write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.events import AppendOutcome, Committed, Conflict, Duplicate, NewEvent

# The head, each stream's version, and the idempotency keys already used, in one round trip.
_READ_STATE = """
    SELECT 'h', NULL::text, NULL::text, position, NULL::bigint, NULL::timestamptz
    FROM log_head WHERE id = 1
    UNION ALL
    SELECT 's', stream_id, NULL::text, version, NULL::bigint, NULL::timestamptz
    FROM streams WHERE stream_id = ANY($1::text[])
    UNION ALL
    SELECT 'k', e.user_id, e.idempotency_key, e.stream_version, e.position, e.recorded_at
    FROM events e
    JOIN unnest($2::text[], $3::text[]) AS k(user_id, idempotency_key)
      ON e.user_id = k.user_id AND e.idempotency_key = k.idempotency_key
"""

# Moves the head from $4 to $3 and writes the batch, or writes nothing if the head is not at $4.
# `moved` is evaluated first (the inserts read it), so the lock is taken before any row is written.
# Its clock_timestamp() is read after the lock is granted: recorded_at then never decreases along
# positions, which keeps "as of time T" the same as "as of some position". The rows travel as one
# JSON document: encoding it with orjson is several times cheaper than binding ten typed arrays.
_WRITE_IF_HEAD = """
    WITH moved AS (
        UPDATE log_head SET position = $3 WHERE id = 1 AND position = $4
        RETURNING clock_timestamp() AS at
    ), written AS (
        INSERT INTO events (position, stream_id, stream_version, type, data, metadata,
                            user_id, idempotency_key, recorded_at)
        SELECT t.p, t.s, t.v, t.t, t.d, t.m, t.u, t.k, moved.at
        FROM moved, jsonb_to_recordset($1::jsonb)
             AS t(p bigint, s text, v bigint, t text, d jsonb, m jsonb, u text, k text)
    ), counters AS (
        INSERT INTO streams (stream_id, version)
        SELECT c.key, c.value::bigint FROM moved, jsonb_each_text($2::jsonb) AS c
        ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version
    )
    SELECT at FROM moved
"""
_BEGIN_AND_LOCK = "BEGIN; SELECT 1 FROM log_head WHERE id = 1 FOR UPDATE"


@dataclass(frozen=True, slots=True)
class LogState:
    head: int
    versions: dict[str, int]
    used_keys: dict[tuple[str, str], Duplicate]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a batch will do at `base` (the head it was decided on)."""

    base: int
    outcomes: list[Conflict | Duplicate | tuple[int, int]]  # (position, version) for items written
    rows: list[dict[str, Any]]
    versions: dict[str, int]  # the new version of each stream written

    @property
    def new_head(self) -> int:
        return self.base + len(self.rows)

    def encode(self) -> tuple[str, str]:
        """The rows and the stream counters as JSON; raises TypeError for data JSON cannot hold."""
        return orjson.dumps(self.rows).decode(), orjson.dumps(self.versions).decode()

    def resolve(self, recorded_at: datetime | None) -> list[AppendOutcome]:
        """The outcomes once committed at `recorded_at` (None when nothing was written)."""
        out: list[AppendOutcome] = []
        for o in self.outcomes:
            if isinstance(o, _PendingDuplicate):
                out.append(Duplicate(o[0], o[1], recorded_at))  # type: ignore[arg-type]
            elif isinstance(o, tuple):
                out.append(Committed(o[0], o[1], recorded_at))  # type: ignore[arg-type]
            else:
                out.append(o)
        return out


def _key(item: NewEvent) -> tuple[str, str] | None:
    return (item.user_id, item.idempotency_key) if item.idempotency_key and item.user_id else None


def plan(state: LogState, items: Sequence[NewEvent]) -> Plan:
    """Decide each item on its own against `state` and the items before it in the batch.

    Pure, and O(len(items)): `state.versions` may be a writer's large cache, so it is read, never copied.
    """
    done: dict[tuple[str, str], Duplicate | tuple[int, int]] = dict(state.used_keys)
    outcomes: list[Conflict | Duplicate | tuple[int, int]] = []
    rows: list[dict[str, Any]] = []
    written: dict[str, int] = {}
    position = state.head
    for item in items:
        key = _key(item)
        prior = done.get(key) if key is not None else None
        if prior is not None:
            # A key repeated within this batch points at the position it is about to get.
            outcomes.append(prior if isinstance(prior, Duplicate) else _PendingDuplicate(*prior))
            continue
        current = written.get(item.stream_id)
        if current is None:
            current = state.versions.get(item.stream_id, 0)
        if item.expected_version is not None and item.expected_version != current:
            outcomes.append(Conflict(item.expected_version, current))
            continue
        position += 1
        written[item.stream_id] = current + 1
        outcomes.append((position, current + 1))
        rows.append(
            {
                "p": position,
                "s": item.stream_id,
                "v": current + 1,
                "t": item.type,
                "d": item.data,
                "m": item.metadata,
                "u": item.user_id,
                "k": item.idempotency_key,
            }
        )
        if key is not None:
            done[key] = (position, current + 1)
    return Plan(state.head, outcomes, rows, written)


class _PendingDuplicate(tuple[int, int]):
    """A duplicate of an item written in the same batch: resolved to a Duplicate with its timestamp."""

    __slots__ = ()

    def __new__(cls, position: int, version: int) -> _PendingDuplicate:
        return super().__new__(cls, (position, version))


async def read_state(conn: asyncpg.Connection, items: Sequence[NewEvent]) -> LogState:
    stream_ids = list({item.stream_id for item in items})
    keyed = [item for item in items if _key(item) is not None]
    rows = await conn.fetch(
        _READ_STATE, stream_ids, [i.user_id for i in keyed], [i.idempotency_key for i in keyed]
    )
    head = 0
    versions: dict[str, int] = {}
    used: dict[tuple[str, str], Duplicate] = {}
    for kind, first, key, version, position, at in rows:
        if kind == "h":
            head = version
        elif kind == "s":
            versions[first] = version
        else:
            used[(first, key)] = Duplicate(position, version, at)
    return LogState(head, versions, used)


async def write_if_head(conn: asyncpg.Connection, p: Plan, encoded: tuple[str, str]) -> datetime | None:
    """Commit the plan if the head is still at `p.base`; its recorded_at, or None if it moved."""
    rows, counters = encoded
    at: datetime | None = await conn.fetchval(_WRITE_IF_HEAD, rows, counters, p.new_head, p.base)
    return at


class LogWriter:
    """Appends batches on one connection held across batches.

    The appender commits back to back, and checking a connection out of the pool (with its ping)
    for every batch cost about a millisecond. A connection that broke is dropped and the next batch
    opens a new one, so the writer reconnects by itself after a database restart.
    """

    def __init__(self, db_engine: AsyncEngine, *, max_cached_streams: int = 100_000) -> None:
        self.db_engine = db_engine
        self.max_cached_streams = max_cached_streams
        self._conn: AsyncConnection | None = None
        # What this writer knows of the log as of its own last commit: the head it moved the log to,
        # and stream versions it wrote or read then. See `append` for why stale knowledge is safe.
        self._head: int | None = None
        self._versions: dict[str, int] = {}
        self.paths = {"known": 0, "read": 0, "locked": 0}

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
        if not optimistic:
            self.paths["locked"] += 1
            return await self._append_locked(items)
        if self._head is not None and all(item.stream_id in self._versions for item in items):
            p = plan(LogState(self._head, self._versions, {}), items)
            # A plan that writes nothing was decided on knowledge alone: confirm it by reading.
            if p.rows and (outcomes := await self._try_write(p)) is not None:
                self.paths["known"] += 1
                return outcomes
        self._forget()
        async with self._connection() as raw:
            state = await read_state(raw, items)
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
                at = await write_if_head(raw, p, encoded)
            except asyncpg.UniqueViolationError:
                return None
        if at is None:
            return None
        self._learn(p, state)
        return p.resolve(at)

    async def _append_locked(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        async with self._connection() as raw:
            await raw.execute(_BEGIN_AND_LOCK)
            try:
                state = await read_state(raw, items)
                p = plan(state, items)
                at = await write_if_head(raw, p, p.encode()) if p.rows else None
                if p.rows and at is None:
                    raise RuntimeError("the log head moved while this transaction held its lock")
                await raw.execute("COMMIT")
            except BaseException:
                if not raw.is_closed():
                    await raw.execute("ROLLBACK")
                raise
        if p.rows:
            self._learn(p, state)
        return p.resolve(at)

    def _learn(self, p: Plan, state: LogState | None) -> None:
        if len(self._versions) > self.max_cached_streams:
            self._versions.clear()
        if state is not None:
            self._versions.update(state.versions)
        self._versions.update(p.versions)
        self._head = p.new_head

    def _forget(self) -> None:
        self._head = None
        self._versions.clear()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The held connection. A statement error leaves it clean (autocommit, or rolled back), but
        after a broken socket or a cancelled await its state is unknown: it is then never reused."""
        if self._conn is None:
            self._conn = await self.db_engine.connect()
        conn = self._conn
        raw: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection  # type: ignore[assignment]
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

    async def _drop(self, conn: AsyncConnection) -> None:
        self._conn = None
        self._forget()
        await conn.invalidate()
        await conn.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
