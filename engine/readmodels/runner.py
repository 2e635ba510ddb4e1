"""The projector runner: follows the log from its checkpoint and keeps the projection tables
(rooms, room_members, declared_statuses, typing, notifications, uploads, ai_requests) at what the
pure folds of engine/projections/ give.

Each step is one transaction per partition of the log (engine/log/partitions.py), each partition
with a checkpoint of its own: lock the checkpoint row, read the next page of events after it, load
the views those events touch (from memory, or from the tables: engine/readmodels/tables.py), fold
the events into them (engine/readmodels/rows/, the code the rebuild uses too), write the rows that
changed and move the checkpoint. Every row names its partition, and a step reads and writes
only its own partition's rows. So the tables and the checkpoint always move together,
and a runner that crashes or is stopped resumes exactly where its last commit left off, without
applying any event twice.

Why nothing is skipped: a partition's appends are serialised by its `log_head` row lock, so position
order is commit order there and an event can never become visible below a position already read
(engine/log/store.py). Reading `position > checkpoint` in order is therefore complete, and the folds
check it too (a room raises on a gap in its seq). Partitions fold independently: every row is fed
by one owner's streams, which live in one partition.

Why one runner per partition at a time, and how: every engine process has a runner, and a runner
projects the partitions whose session advisory lock `(LOCK_CLASS, partition)` it holds
(engine/log/partition_locks.py). Each takes free partitions up to its share of the partition count
among the runners sharing them (`share`: its standing among the live nodes, for an engine; alone, for
a projector process, which so takes every free partition), and hands back what is over its share when
more nodes come; every `poll_seconds` it looks again. So the nodes share the projecting, and a
partition whose holder's process or connection dies (PostgreSQL releases the lock with the session) is
taken over once the survivors' share grows to it. The locks save work; correctness does not depend on
them: the checkpoint row lock taken first in every step serialises any two writers (including
`engine/readmodels/rebuild.py`, which takes the same row lock), and a runner that finds a checkpoint
somewhere other than where it left it drops its cached views and reloads them from the tables. A
checkpoint row that is locked (a rebuild of that partition holds it while it folds) is skipped until
the next step, so the partition being rebuilt holds back no other.

When it runs: the engine wakes it after each of its own commits (`wake`), and it polls every
`poll_seconds` for commits of other nodes; a wake that arrives while a step reads is not lost,
because the flag is cleared before the read. Steps are at least `min_interval` apart: under load a
step then folds every commit of that interval in one transaction (one checkpoint move, one row write
per touched view) instead of one step per commit, at the price of tables that lag by up to that long.

Determinism: the folds take time from `recorded_at`, never from the clock, so the rows the runner
writes are exactly those a rebuild from zero writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.log.lifecycle import STOP_TIMEOUT, cancel_and_wait
from engine.log.partition_locks import ALONE, Standing, balance
from engine.log.partitions import read_heads
from engine.model.events import RecordedEvent
from engine.readmodels.rows import MODELS, ReadModel, Views, fold_routed, route
from engine.readmodels.tables import load_views, write_views

log = logging.getLogger(__name__)

CHECKPOINT = "projections"
# The advisory locks that elect a partition's projecting runner, `(LOCK_CLASS, partition)`: any fixed
# 32-bit number no other code uses.
LOCK_CLASS = 0x636F6C70  # "colp"

_ENSURE_CHECKPOINT = """
    INSERT INTO projector_checkpoints (partition, name, position) VALUES (:partition, :name, 0)
    ON CONFLICT (partition, name) DO NOTHING
"""
_LOCK_CHECKPOINT = (
    "SELECT position FROM projector_checkpoints WHERE partition = :partition AND name = :name FOR UPDATE"
)
_CHECKPOINT_EXISTS = "SELECT 1 FROM projector_checkpoints WHERE partition = :partition AND name = :name"
# The columns in RecordedEvent's order (a unit test holds them so). jsonb comes back decoded: SQLAlchemy's
# asyncpg dialect registers a codec on connect with the engine's `json_deserializer` (engine/log/store.py).
_READ_EVENTS = (
    "SELECT position, stream_id, stream_version, type, data, metadata, recorded_at, user_id, idempotency_key,"
    " partition FROM events WHERE partition = $1 AND position > $2 ORDER BY position LIMIT $3"
)
_MOVE_CHECKPOINT = (
    "UPDATE projector_checkpoints SET position = :position, updated_at = now() "
    "WHERE partition = :partition AND name = :name"
)


async def lock_checkpoint(conn: AsyncConnection, name: str = CHECKPOINT, partition: int = 0) -> int:
    """The checkpoint's position in `partition`, its row locked until the transaction ends (created at
    0 if new)."""
    key = {"name": name, "partition": partition}
    found = (await conn.execute(text(_LOCK_CHECKPOINT), key)).scalar()
    if found is None:
        await conn.execute(text(_ENSURE_CHECKPOINT), key)
        found = (await conn.execute(text(_LOCK_CHECKPOINT), key)).scalar_one()
    return int(found)


async def _try_lock_checkpoint(conn: AsyncConnection, partition: int) -> int | None:
    """`lock_checkpoint`, or None at once when another transaction holds the row (a rebuild of the
    partition, which holds it while it folds the whole partition)."""
    key = {"name": CHECKPOINT, "partition": partition}
    found = (await conn.execute(text(_LOCK_CHECKPOINT + " SKIP LOCKED"), key)).scalar()
    if found is not None:
        return int(found)
    if (await conn.execute(text(_CHECKPOINT_EXISTS), key)).scalar():
        return None
    return await lock_checkpoint(conn, partition=partition)  # a new checkpoint


async def move_checkpoint(
    conn: AsyncConnection, position: int, name: str = CHECKPOINT, partition: int = 0
) -> None:
    await conn.execute(text(_MOVE_CHECKPOINT), {"name": name, "partition": partition, "position": position})


async def read_events(
    conn: AsyncConnection, after: int, limit: int, partition: int = 0
) -> list[RecordedEvent]:
    """Up to `limit` events of `partition` with position > `after`, in position order (complete:
    engine/log/store.py), in `conn`'s transaction, which must have run a statement already (SQLAlchemy
    sends BEGIN with its first one; a step locks its checkpoint first).

    On the driver's connection: a step reads a page of hundreds of events, and SQLAlchemy's result
    rows cost more to build than the events made of them (about a third of a step's Python).
    """
    raw: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection
    if conn.in_transaction() and not raw.is_in_transaction():
        raise RuntimeError("read_events before the transaction's first statement would run outside it")
    rows = await raw.fetch(_READ_EVENTS, partition, after, limit)
    return [RecordedEvent(*row) for row in rows]


class ProjectorRunner:
    """One per engine: `start()` it, `wake()` it after commits, `stop()` it; `active` says whether
    this one holds a partition's lock and projects (`held`: which), `positions` how far the tables
    have got in each partition it projected."""

    def __init__(
        self,
        db_engine: AsyncEngine,
        *,
        poll_seconds: float = 0.5,
        min_interval: float = 0.0,
        page: int = 1000,
        retry_seconds: float = 1.0,
        max_cached_views: int = 100_000,
        models: Sequence[ReadModel] = MODELS,
        share: Callable[[], Standing] = lambda: ALONE,
    ) -> None:
        self.db_engine = db_engine
        self.poll_seconds = poll_seconds
        self.min_interval = min_interval
        self.page = page
        self.retry_seconds = retry_seconds
        self.max_cached_views = max_cached_views
        self.models = tuple(models)
        self.active = False  # holds a partition's advisory lock: this runner projects it
        self.held: set[int] | None = None  # the partitions it projects; None: every one (`step` alone)
        self._share = share  # where this runner stands among those sharing the partitions
        # Each partition's checkpoint as of this runner's last step there (rows are fed by one owner's
        # streams, so partitions fold independently: docs/scaling.md).
        self.positions: dict[int, int] = {}
        self.events_applied = 0
        self.steps_applied = 0  # steps that applied events: with `min_interval`, fewer than commits
        self._views: Views = {}  # valid only while every checkpoint is at `positions`
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._standing_by = False  # logged once per turn of standing by

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="projector-runner")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task, STOP_TIMEOUT)
        self.active = False

    def wake(self) -> None:
        """Something was committed: look at the log now rather than at the next poll."""
        self._wake.set()

    async def step(self, conn: AsyncConnection) -> int:
        """Fold the next page of each partition of the log into the tables, one transaction per
        partition; the events applied (at most `page` a partition)."""
        self._wake.clear()  # before the read: a commit after it wakes the next wait
        # Idle polls only read: locking a checkpoint row is a write. A head at our checkpoint also
        # means nobody moved it (a rebuild sets it to a head, never beyond).
        heads = await read_heads(conn)
        await conn.rollback()
        applied = 0
        for partition, head in sorted(heads.items()):
            if self.held is not None and partition not in self.held:
                continue
            known = self.positions.get(partition)
            if known is None or head > known:
                applied += await self._step(conn, partition)
        return applied

    async def _step(self, conn: AsyncConnection, partition: int) -> int:
        async with conn.begin():
            position = await _try_lock_checkpoint(conn, partition)
            if position is None:  # a rebuild of this partition holds it: the others go on meanwhile
                return 0
            if position != self.positions.get(partition):
                self._views = {}  # someone else (a rebuild, another runner) moved the tables
            batch = await read_events(conn, position, self.page, partition)
            if not batch:
                self.positions[partition] = position
                return 0
            routed = route(self.models, batch)
            working: Views = {}
            stored: Views = {}  # the cached views: exactly what the tables hold, so writes can diff
            for model in self.models:
                cached = self._views.get(model.name, {})
                keys = routed[model.name].keys()
                stored[model.name] = {key: cached[key] for key in keys if key in cached}
                working[model.name] = dict(stored[model.name])
                working[model.name].update(
                    await load_views(
                        conn, model, [key for key in keys if key not in cached], partition=partition
                    )
                )
            for model in self.models:
                # One model at a time, the loop handed back before each fold: a step's CPU comes in
                # pieces, so deliveries wait for one model's fold rather than the whole page's.
                await asyncio.sleep(0)
                changed = fold_routed((model,), routed, working)[model.name]
                now = {key: working[model.name][key] for key in changed}
                await write_views(conn, model, now, partition=partition, stored=stored[model.name])
            await move_checkpoint(conn, batch[-1].position, partition=partition)
        self._remember(working)
        self.positions[partition] = batch[-1].position
        self.events_applied += len(batch)
        self.steps_applied += 1
        return len(batch)

    def _remember(self, working: Views) -> None:
        if sum(len(views) for views in self._views.values()) > self.max_cached_views:
            self._views = {}
        for name, views in working.items():
            self._views.setdefault(name, {}).update(views)

    async def _run(self) -> None:
        while True:
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away, or a fold refused an event: retry
                log.error("projector runner: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(self.retry_seconds)
            else:
                # Another node projects: stand by. A plain sleep, not `_sleep`: commits keep setting
                # the wake flag, which only the projecting runner clears, so waiting on it would spin.
                if not self._standing_by:
                    log.info("projector runner: another process projects; this one stands by")
                    self._standing_by = True
                await asyncio.sleep(self.poll_seconds)

    async def _lead(self) -> None:
        """Take partitions' advisory locks up to this runner's share and project them for as long as
        it holds any, looking again at its share every `poll_seconds`; return at once if it gets
        none."""
        conn = await self.db_engine.connect()
        self.held = set()
        locked = False
        try:
            await self._balance(conn)
            locked = bool(self.held)
            if not self.held:
                return
            self.active = True
            self._standing_by = False
            self._views, self.positions = {}, {}
            log.info("projector runner: this node projects partitions %s", sorted(self.held))
            loop = asyncio.get_running_loop()
            balanced = loop.time()
            while self.held:
                started = loop.time()
                if started - balanced >= self.poll_seconds:
                    await self._balance(conn)
                    balanced = started
                if await self.step(conn) < self.page:
                    await self._sleep()
                    # Let commits gather: the next step folds all of them at once.
                    await asyncio.sleep(max(0.0, self.min_interval - (loop.time() - started)))
        finally:
            self.active = False
            self.held = None
            if locked:
                # Ending the session is what releases the locks, also when the connection broke; a
                # pooled connection handed back would keep holding them.
                with contextlib.suppress(Exception):
                    await conn.invalidate()
            await conn.close()

    async def _balance(self, conn: AsyncConnection) -> None:
        """Take free partitions up to this runner's share, and hand back what is over it."""
        assert self.held is not None
        partitions = await read_heads(conn)
        for partition in await balance(conn, LOCK_CLASS, self.held, partitions, self._share()):
            self.positions.pop(partition, None)  # whoever takes it moves its checkpoint
            log.info("projector runner: partition %d handed over to another node", partition)

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.poll_seconds)


__all__ = ["CHECKPOINT", "LOCK_CLASS", "ProjectorRunner", "lock_checkpoint", "move_checkpoint", "read_events"]
