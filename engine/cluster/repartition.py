"""Moving a log to another number of partitions: offline, into a database of its own.

A log's partition count is fixed when it is created (engine/log/partitions.py): a stream's partition
is its hash modulo the count, so another count puts most streams in other partitions, and positions,
which are per partition, have to be numbered again. So a log is moved, not split in place: the source
is only read, in one snapshot taken while its appends are held (a lock on its heads, kept until the
copy is written, so nothing appended meanwhile can be left behind), and the target is a database
nothing serves yet, which the nodes are pointed at once the move has finished. A move that stops
midway leaves the source as it was; the target is dropped and the move run again.

Carried over unchanged: every event, with its stream, stream version (a room's seq), type, data,
metadata, user, idempotency key and `recorded_at`, so clients resume rooms at the seqs they hold and
a retried `client_msg_id` is still recognised. Numbered again: positions, so history cursors handed
out before the move stop being valid. The events are replayed in `recorded_at` order, ties in the
source's partition and position order: position order in a log of one, and in any log each stream's
versions in order, so `recorded_at` never goes backwards within a target partition. Derived again:
the streams' counters and the heads (from the events), the cells, the sheets and every projection
table (the rebuild, engine/readmodels/rebuild.py), and room snapshots (made again by the first
time-travel read that wants one). Not carried: the nodes' registry and rate-limit counters, working
state of the nodes that served the source; rate-limit blocks still in force are.

Like every append, each target partition is written by a transaction of its own: the events are
first copied into a temporary table of the move's session, then each partition's events, stream
counters and head go in together.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import asyncpg
from sqlalchemy.engine import make_url

from engine.log import migrate
from engine.log.partitions import MAX_PARTITIONS, partition_of
from engine.log.store import create_db_engine, libpq_dsn
from engine.model.catalogue import UPLOAD_EVENTS
from engine.model.errors import EngineError
from engine.model.streams import durable_stream
from engine.readmodels.rebuild import FullReport, rebuild_all

PAGE = 5000  # events per fetch from the source and per copy into the target

_COLUMNS = (
    "partition",
    "position",
    "stream_id",
    "stream_version",
    "type",
    "data",
    "metadata",
    "user_id",
    "idempotency_key",
    "recorded_at",
)
# JSON read as text and copied as text: PostgreSQL's own spelling of each value, stored again as is.
_READ = (
    "SELECT partition, position, stream_id, stream_version, type, data::text, metadata::text, user_id, "
    "idempotency_key, recorded_at FROM events ORDER BY {order}"
)
# A log of one partition is already in `recorded_at` order along its positions: read by its key.
_ONE_PARTITION_ORDER = "partition, position"
_MERGED_ORDER = "recorded_at, partition, position"
_NODES_RUNNING = (
    "SELECT count(*) FROM nodes WHERE stopped_at IS NULL AND heartbeat_at > now() - interval '1 minute'"
)
# A file id whose upload events are in more than one user's streams: possible only in a log from before
# the file claims (migration 0010), where two users' starts for one id could both be accepted.
_SHARED_FILE_IDS = """
    SELECT data->>'file_id' AS file_id, array_agg(DISTINCT durable) AS streams
    FROM (SELECT data, regexp_replace(stream_id, '^volatile:', '') AS durable FROM events
          WHERE type = ANY($1::text[])) AS uploads
    GROUP BY data->>'file_id' HAVING count(DISTINCT durable) > 1
"""
_STAGED = "CREATE TEMPORARY TABLE moving (LIKE events INCLUDING DEFAULTS) ON COMMIT PRESERVE ROWS"
# SHARE conflicts with ROW EXCLUSIVE, which every append takes to move its partition's head, and with
# nothing a read takes.
_HOLD_APPENDS = "LOCK TABLE log_head IN SHARE MODE"
_LOCK_TARGET_HEAD = "SELECT position FROM log_head WHERE partition = $1 FOR UPDATE"
_WRITE_EVENTS = f"""
    INSERT INTO events ({", ".join(_COLUMNS)})
    SELECT {", ".join(_COLUMNS)} FROM moving WHERE partition = $1 ORDER BY position
"""
_WRITE_STREAMS = """
    INSERT INTO streams (stream_id, partition, version)
    SELECT stream_id, $1, max(stream_version) FROM moving WHERE partition = $1 GROUP BY stream_id
"""
_WRITE_HEAD = "UPDATE log_head SET position = $2 WHERE partition = $1"
_READ_COUNTERS = "SELECT stream_id, version FROM streams"
_BLOCK_COLUMNS = ("user_id", "blocked_until", "reason")
_READ_BLOCKS = f"SELECT {', '.join(_BLOCK_COLUMNS)} FROM rate_blocks WHERE blocked_until > now()"
# A target whose empty log was served once may hold a block of its own for the user: the later end wins.
_WRITE_BLOCK = f"""
    INSERT INTO rate_blocks ({", ".join(_BLOCK_COLUMNS)}) VALUES ($1, $2, $3)
    ON CONFLICT (user_id) DO UPDATE SET blocked_until = EXCLUDED.blocked_until, reason = EXCLUDED.reason
    WHERE rate_blocks.blocked_until < EXCLUDED.blocked_until
"""


class MoveRefused(EngineError):
    """The source or the target is not fit for a move; nothing was written. `fix` says what to do."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


@dataclass(frozen=True, slots=True)
class MoveReport:
    source_partitions: int
    heads: dict[int, int]  # target partition -> its head (its event count: positions are gapless)
    streams: int
    blocks: int  # rate-limit blocks carried over
    rebuilt: FullReport
    seconds: float

    @property
    def events(self) -> int:
        return sum(self.heads.values())


async def move_log(source_url: str, target_url: str, partitions: int, *, page: int = PAGE) -> MoveReport:
    """Copy the log at `source_url` into `target_url` as a log of `partitions`, and rebuild the target's
    derived tables. The target must be a database nothing serves, either new (no schema) or holding an
    empty log; the source must have no node running on it. MoveRefused when either is not so."""
    started = time.perf_counter()
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise MoveRefused(
            f"a log has 1 to {MAX_PARTITIONS} partitions, not {partitions}", "Pick a count in that range."
        )
    if _same_database(source_url, target_url):
        raise MoveRefused(
            "the target is the source database: a log is moved into a database of its own",
            "Create an empty database (CREATE DATABASE) and pass its URL as the target.",
        )
    await _check_source(source_url)
    await _prepare_target(target_url, partitions)
    async with contextlib.AsyncExitStack() as connections:
        source = await asyncpg.connect(libpq_dsn(source_url))
        connections.push_async_callback(source.close)
        target = await asyncpg.connect(libpq_dsn(target_url))
        connections.push_async_callback(target.close)
        # One snapshot of the source for everything read from it, taken once appends are held: every
        # append moves its partition's head, so the lock (taken before the snapshot, which the first
        # query fixes) keeps the log as read until the copy is written. Nothing is written there.
        async with source.transaction(isolation="repeatable_read"):
            await source.execute(_HOLD_APPENDS)
            running = int(await source.fetchval(_NODES_RUNNING))
            if running:
                raise _served(running)
            source_partitions = int(await source.fetchval("SELECT count(*) FROM log_head"))
            await _refuse_shared_file_ids(source, partitions)
            heads, versions = await _stage(source, target, partitions, source_partitions, page)
            counters = {row["stream_id"]: int(row["version"]) for row in await source.fetch(_READ_COUNTERS)}
            blocks = await source.fetch(_READ_BLOCKS)
            if counters != versions:
                wrong = sorted(set(counters.items()) ^ set(versions.items()))[:3]
                raise MoveRefused(
                    f"the source's stream counters disagree with its events (e.g. {wrong}): it is damaged",
                    "Nothing was written to the source; restore it from a backup before moving it.",
                )
            for partition in range(partitions):
                await _write_partition(target, partition, heads.get(partition, 0))
            await target.executemany(_WRITE_BLOCK, [tuple(row) for row in blocks])
    db_engine = create_db_engine(target_url, pool_size=2, command_timeout=600)
    try:
        rebuilt = await rebuild_all(db_engine)
    finally:
        await db_engine.dispose()
    full_heads = {partition: heads.get(partition, 0) for partition in range(partitions)}
    return MoveReport(
        source_partitions, full_heads, len(versions), len(blocks), rebuilt, time.perf_counter() - started
    )


async def check_reachable(url: str) -> None:
    """Connect to `url` once: the driver's error when the database cannot be reached or is missing."""
    conn = await asyncpg.connect(libpq_dsn(url))
    await conn.close()


def _same_database(a: str, b: str) -> bool:
    one, other = make_url(a), make_url(b)
    return (one.host or "", one.port or 5432, one.database) == (
        other.host or "",
        other.port or 5432,
        other.database,
    )


async def _check_source(url: str) -> None:
    """The source's schema is this code's head (its tables have the columns the move reads) and no
    node serves it (an append after the snapshot would be left behind)."""
    await asyncio.to_thread(migrate.check_known, url)  # SchemaMismatch for a schema newer than this code
    revision = await asyncio.to_thread(migrate.current_revision, url)
    head = migrate.head_revision()
    if revision != head:
        raise MoveRefused(
            f"the source database's schema is at {revision or 'nothing'}, not {head}",
            "Upgrade it first (collab migrate, with DATABASE_URL set to the source), then move it.",
        )
    running = await _nodes_running(url)
    if running:
        raise _served(running)


def _served(running: int) -> MoveRefused:
    return MoveRefused(
        f"{running} node(s) serve the source log: their appends would wait out the move",
        "Stop every collab serve on the source database (and collab projections run), then move it.",
    )


async def _prepare_target(url: str, partitions: int) -> None:
    """Migrate the target to head with `partitions` heads, refusing one that holds a log already, has
    another count, or is served."""
    if await asyncio.to_thread(migrate.current_revision, url) is not None:
        appended = await _value(url, "SELECT coalesce(sum(position), 0) FROM log_head")
        if appended:
            raise MoveRefused(
                f"the target database already holds a log of {appended} event(s)",
                "Move into an empty database: drop and create the target again (a move that stopped "
                "midway leaves one like this).",
            )
    await asyncio.to_thread(migrate.upgrade_to_head, url, partitions)
    has = await _value(url, "SELECT count(*) FROM log_head")
    if has != partitions:
        raise MoveRefused(
            f"the target's empty log already has {has} partition(s), not {partitions}",
            "Move into a new database (no schema), or one whose empty log has the count asked for.",
        )
    running = await _nodes_running(url)
    if running:
        raise MoveRefused(
            f"{running} node(s) already serve the target database",
            "Stop them: nodes are pointed at the target once the move has finished.",
        )


async def _nodes_running(url: str) -> int:
    return await _value(url, _NODES_RUNNING)


async def _value(url: str, query: str) -> int:
    """One number read on a connection of its own, for the checks made before the move's two."""
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def _refuse_shared_file_ids(source: asyncpg.Connection, partitions: int) -> None:
    """A file id's `uploads` row is folded from its uploader's streams, in the uploader's partition. In
    a log from before the file claims two users may have started one id; moved to partitions that
    separate them, the id would get a row in each. Such a log is refused, naming the ids."""
    split = [
        row["file_id"]
        for row in await source.fetch(_SHARED_FILE_IDS, sorted(UPLOAD_EVENTS))
        if len({partition_of(stream, partitions) for stream in row["streams"]}) > 1
    ]
    if split:
        raise MoveRefused(
            f"file id(s) {', '.join(split[:5])} have upload events in two users' streams, which "
            f"{partitions} partitions would separate",
            "Such ids come from before the file claims; move to a count that keeps their users together "
            "(1 always does), or keep the log as it is.",
        )


async def _stage(
    source: asyncpg.Connection, target: asyncpg.Connection, partitions: int, source_partitions: int, page: int
) -> tuple[dict[int, int], dict[str, int]]:
    """Copy every event into the target session's temporary `moving` table at its new partition and
    position; each partition's head and each stream's version. MoveRefused if a stream's versions are
    not 1, 2, 3... in the order read (a damaged source)."""
    await target.execute(_STAGED)
    order = _ONE_PARTITION_ORDER if source_partitions == 1 else _MERGED_ORDER
    heads: dict[int, int] = {}
    versions: dict[str, int] = {}
    batch: list[tuple[object, ...]] = []
    async for row in source.cursor(_READ.format(order=order), prefetch=page):
        stream_id, version = row["stream_id"], int(row["stream_version"])
        if version != versions.get(stream_id, 0) + 1:
            raise MoveRefused(
                f"stream {stream_id!r} goes from version {versions.get(stream_id, 0)} to {version} in the "
                "source log: it is damaged",
                "Nothing was written to the source; restore it from a backup before moving it.",
            )
        versions[stream_id] = version
        partition = partition_of(durable_stream(stream_id), partitions)
        heads[partition] = position = heads.get(partition, 0) + 1
        batch.append((partition, position, *tuple(row)[2:]))
        if len(batch) >= page:
            await _copy(target, batch)
            batch = []
    if batch:
        await _copy(target, batch)
    await target.execute("CREATE INDEX ON moving (partition, position)")
    return heads, versions


async def _copy(target: asyncpg.Connection, rows: list[tuple[object, ...]]) -> None:
    await target.copy_records_to_table("moving", records=rows, columns=list(_COLUMNS))


async def _write_partition(target: asyncpg.Connection, partition: int, head: int) -> None:
    """One partition's events, stream counters and head, in one transaction, under its head's lock."""
    async with target.transaction():
        if await target.fetchval(_LOCK_TARGET_HEAD, partition):
            raise MoveRefused(
                f"partition {partition} of the target was appended to during the move",
                "Stop whatever serves the target, drop and create it again, and move again.",
            )
        await target.execute(_WRITE_EVENTS, partition)
        await target.execute(_WRITE_STREAMS, partition)
        await target.execute(_WRITE_HEAD, partition, head)


__all__ = ["PAGE", "MoveRefused", "MoveReport", "check_reachable", "move_log"]
