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
out before the move stop being valid. Each source partition is replayed in position order and the
partitions are merged by `recorded_at`, ties in partition order: a stream lives in one partition, so
its versions stay in order, and a target partition's times go back only where a source partition's
did (a clock stepped back). Derived again:
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
import collections
import contextlib
import heapq
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError

from engine.log import migrate
from engine.log.partitions import MAX_PARTITIONS, NODES_RUNNING, partition_of
from engine.log.schema import KEY_SCOPE
from engine.log.session_settings import session_settings
from engine.log.store import create_db_engine, libpq_dsn
from engine.model.catalogue import UPLOAD_EVENTS
from engine.model.errors import EngineError, SchemaMismatch
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
# A page of one source partition, by its key. JSON read as text and copied as text: PostgreSQL's own
# spelling of each value, stored again as is.
_READ_PAGE = """
    SELECT partition, position, stream_id, stream_version, type, data::text, metadata::text, user_id,
           idempotency_key, recorded_at
    FROM events WHERE partition = $1 AND position > $2 ORDER BY position LIMIT $3
"""
# A migrated database has the log's tables; any other table in a database without a schema version
# means it is some other application's.
_TABLES = "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
_LOG_ID = "SELECT log_id::text FROM log_head LIMIT 1"
_HAS_LOG = "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'log_head'"
# A file id whose upload events are in more than one user's streams: possible only in a log from before
# the file claims (migration 0010), where two users' starts for one id could both be accepted.
_SHARED_FILE_IDS = f"""
    SELECT data->>'file_id' AS file_id, array_agg(DISTINCT durable) AS streams
    FROM (SELECT data, {KEY_SCOPE} AS durable FROM events WHERE type = ANY($1::text[])) AS uploads
    GROUP BY data->>'file_id' HAVING count(DISTINCT durable) > 1
"""
# The move's own session may wait on locks and sit idle between statements for as long as it takes.
_NO_TIMEOUTS = "SET LOCAL statement_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0"
_NO_SESSION_TIMEOUTS = "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0"
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
_PARTITION_COUNT = "SELECT count(*) FROM log_head"
_BLOCK_COLUMNS = ("user_id", "blocked_until", "reason")
_READ_BLOCKS = f"SELECT {', '.join(_BLOCK_COLUMNS)} FROM rate_blocks WHERE blocked_until > now()"
# A target whose empty log was served once may hold a block of its own for the user: the later end wins.
_WRITE_BLOCK = f"""
    INSERT INTO rate_blocks ({", ".join(_BLOCK_COLUMNS)}) VALUES ($1, $2, $3)
    ON CONFLICT (user_id) DO UPDATE SET blocked_until = EXCLUDED.blocked_until, reason = EXCLUDED.reason
    WHERE rate_blocks.blocked_until < EXCLUDED.blocked_until
"""


class MoveRefused(EngineError):
    """The move cannot go on; `fix` says what to do. Nothing is ever written to the source, and the
    target is left as the message says (untouched for most refusals)."""

    def __init__(self, message: str, fix: str, *, copied: bool = False) -> None:
        super().__init__(message)
        self.fix = fix
        self.copied = copied  # the events reached the target; what failed came after


class TargetFailed(EngineError):
    """The target's database failed during the move (its connection went, or it refused a statement);
    the cause is chained. Told apart from the source's failures so the operator is sent to the right
    database. The source is never written; `written` says whether the target may hold part of the log
    (then it must be dropped and created again before another move)."""

    def __init__(self, message: str, *, written: bool) -> None:
        super().__init__(message)
        self.written = written


# What the target's driver, server and network raise; anything else (a bug) is not theirs.
# OSError: every connection these blocks open is the target's, so a host, route or socket that fails is.
_DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, DBAPIError, OSError)


@contextlib.asynccontextmanager
async def _on_target(*, written: bool = False) -> AsyncIterator[None]:
    """Inside the block, a failure of the target's database is raised as TargetFailed; `written`: the
    block may have committed part of the log there."""
    try:
        yield
    except _DATABASE_ERRORS as exc:
        raise TargetFailed(_what_the_server_said(exc), written=written) from exc


def _what_the_server_said(exc: BaseException) -> str:
    """The driver's own message, not SQLAlchemy's wrapping of it (the statement, its parameters, a link)."""
    said: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(said).strip().splitlines()
    return lines[0] if lines else type(said).__name__


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
    await _check_source(source_url, partitions)
    source_log = await _value(source_url, _LOG_ID, int_=False)
    async with _on_target():
        await _prepare_target(target_url, partitions, source_log=source_log)
    async with contextlib.AsyncExitStack() as connections:
        source = await _connect(source_url)
        connections.push_async_callback(source.close)
        async with _on_target():
            target = await _connect(target_url)
            connections.push_async_callback(target.close)
            # The copy's statements take as long as the log is big: a role's timeout must not cut them.
            await target.execute(_NO_SESSION_TIMEOUTS)
        copied = await _copy_in_snapshot(source, source_url, target, partitions, page)
    db_engine = create_db_engine(target_url, pool_size=2, command_timeout=600)
    try:
        rebuilt = await rebuild_all(db_engine)
    except Exception as exc:
        raise MoveRefused(
            f"every event was copied, but rebuilding the target's tables failed: {exc}",
            "Run collab projections rebuild with DATABASE_URL set to the target before any node serves it "
            "(its cells and sheets decide edits), or drop it and move again.",
            copied=True,
        ) from exc
    finally:
        await db_engine.dispose()
    return MoveReport(
        copied.source_partitions,
        {partition: copied.heads.get(partition, 0) for partition in range(partitions)},
        len(copied.versions),
        copied.blocks,
        rebuilt,
        time.perf_counter() - started,
    )


@dataclass(frozen=True, slots=True)
class _Copied:
    source_partitions: int
    heads: dict[int, int]
    versions: dict[str, int]
    blocks: int


async def _copy_in_snapshot(
    source: asyncpg.Connection, source_url: str, target: asyncpg.Connection, partitions: int, page: int
) -> _Copied:
    """Stage the source's events, check them, and write the target's partitions, all in one snapshot
    of the source taken while its appends are held: every append moves its partition's head, so the
    lock (taken before the snapshot, which the first query fixes) keeps the log as read until the copy
    is written. Nothing is written to the source."""
    async with source.transaction(isolation="repeatable_read"):
        await source.execute(_NO_TIMEOUTS)
        await source.execute(_HOLD_APPENDS)
        running = int(await source.fetchval(NODES_RUNNING))
        if running:
            raise _served(running)
        source_partitions = int(await source.fetchval(_PARTITION_COUNT))
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
        async with _on_target(written=True):
            for partition in range(partitions):
                await _write_partition(target, partition, heads.get(partition, 0))
            await target.executemany(_WRITE_BLOCK, [tuple(row) for row in blocks])
        # A node that started on the source during the move had its appends held, and they commit
        # once the lock goes: acked to its clients, missing from the copy. Seen outside the snapshot.
        started_meanwhile = await _nodes_running(source_url)
        if started_meanwhile:
            raise MoveRefused(
                f"{started_meanwhile} node(s) started on the source during the move: what they append "
                "is not in the copy",
                "Stop them, drop and create the target again, and move again.",
            )
    return _Copied(source_partitions, heads, versions, len(blocks))


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(libpq_dsn(url), server_settings=session_settings())


async def check_reachable(url: str) -> None:
    """Connect to `url` once: the driver's error when the database cannot be reached or is missing."""
    conn = await asyncpg.connect(libpq_dsn(url))
    await conn.close()


async def _check_source(url: str, partitions: int) -> None:
    """The source's schema is this code's head (its tables have the columns the move reads), no node
    serves it, and its file ids allow `partitions`: checked before the target is touched, and again
    in the move's snapshot."""
    await _refuse_other_schema(
        url,
        "source",
        "Bring it to this code's schema first (collab migrate, with DATABASE_URL set to the source), or "
        "move it with the collab-engine that migrated it.",
    )
    running = await _nodes_running(url)
    if running:
        raise _served(running)
    conn = await _connect(url)
    try:
        await _refuse_shared_file_ids(conn, partitions)
    finally:
        await conn.close()


async def _refuse_other_schema(url: str, side: str, fix: str) -> None:
    """MoveRefused unless the database's schema is this code's head: the move reads and writes the
    head schema's tables on both sides."""
    try:
        await asyncio.to_thread(migrate.check_known, url)
    except SchemaMismatch as exc:
        raise MoveRefused(f"in the {side}, {exc}", fix) from exc
    revision = await asyncio.to_thread(migrate.current_revision, url)
    head = migrate.head_revision()
    if revision is None:
        raise MoveRefused(f"the {side} database has no collab-engine schema", fix)
    if revision != head:
        raise MoveRefused(
            f"the {side}'s schema is at revision {revision!r}, older than this code's {head!r}", fix
        )


def _served(running: int) -> MoveRefused:
    return MoveRefused(
        f"{running} node(s) serve the source log: their appends would wait out the move",
        "Stop every collab serve on the source database (and collab projections run), then move it.",
    )


async def _prepare_target(url: str, partitions: int, *, source_log: object) -> None:
    """Migrate the target to head with `partitions` heads, refusing (before touching it) the source
    itself, a database of another application, one that holds a log already or is served, and after
    migrating it one whose empty log has another count."""
    revision = await asyncio.to_thread(migrate.current_revision, url)
    if revision is None:
        if await _value(url, _TABLES):
            raise MoveRefused(
                "the target database has tables and no collab-engine schema: it belongs to something else",
                "Create an empty database (CREATE DATABASE) and pass its URL as the target.",
            )
    else:
        if not await _value(url, _HAS_LOG):
            raise MoveRefused(
                "the target database has a schema but no collab-engine log: it belongs to something else",
                "Create an empty database (CREATE DATABASE) and pass its URL as the target.",
            )
        await _refuse_other_schema(  # the checks below read the head schema's tables
            url,
            "target",
            "Move into an empty database (CREATE DATABASE), or bring the target to this code's schema "
            "first (collab migrate, with DATABASE_URL set to it).",
        )
        if await _value(url, _LOG_ID, int_=False) == source_log:
            raise MoveRefused(
                "the target is the source database: a log is moved into a database of its own",
                "Create an empty database (CREATE DATABASE) and pass its URL as the target.",
            )
        running = await _nodes_running(url)
        if running:
            raise MoveRefused(
                f"{running} node(s) already serve the target database",
                "Stop them: nodes are pointed at the target once the move has finished.",
            )
        appended = await _value(url, "SELECT coalesce(sum(position), 0) FROM log_head")
        if appended:
            raise MoveRefused(
                f"the target database already holds a log of {appended} event(s)",
                "Move into an empty database: drop and create the target again (a move that stopped "
                "midway leaves one like this).",
            )
    await asyncio.to_thread(migrate.upgrade_to_head, url, partitions)
    has = await _value(url, _PARTITION_COUNT)
    if has != partitions:
        raise MoveRefused(
            f"the target's empty log already has {has} partition(s), not {partitions}",
            "Move into a new database (no schema), or one whose empty log has the count asked for.",
        )


async def _nodes_running(url: str) -> int:
    """Nodes alive on the database at `url`, read on a connection of its own (outside any snapshot)."""
    return int(await _value(url, NODES_RUNNING))


async def _value(url: str, query: str, *, int_: bool = True) -> Any:
    """One value read on a connection of its own, for the checks made outside the move's two."""
    conn = await _connect(url)
    try:
        found = await conn.fetchval(query)
        return int(found) if int_ else found
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
    async with _on_target():
        await target.execute(_STAGED)
    heads: dict[int, int] = {}
    versions: dict[str, int] = {}
    batch: list[tuple[object, ...]] = []
    async for row in _merged(source, source_partitions, page):
        stream_id, version = row["stream_id"], int(row["stream_version"])
        if version != versions.get(stream_id, 0) + 1:
            raise MoveRefused(
                f"stream {stream_id!r} goes from version {versions.get(stream_id, 0)} to {version} in the "
                "source log: it is damaged",
                "Nothing was written to the source; restore it from a backup before moving it.",
            )
        versions[stream_id] = version
        partition = partition_of(stream_id, partitions)
        heads[partition] = position = heads.get(partition, 0) + 1
        batch.append((partition, position, *tuple(row)[2:]))
        if len(batch) >= page:
            await _copy(target, batch)
            batch = []
    if batch:
        await _copy(target, batch)
    async with _on_target():
        await target.execute("CREATE INDEX ON moving (partition, position)")
    return heads, versions


async def _merged(
    source: asyncpg.Connection, source_partitions: int, page: int
) -> AsyncIterator[asyncpg.Record]:
    """Every event, each source partition in position order (its own order, whatever its clocks did),
    the partitions merged by `recorded_at`, ties in partition order: a stream lives in one partition,
    so its versions come in order, and a target partition's times go back only where a source's did."""
    pages = {p: _Pages(source, p, page) for p in range(source_partitions)}
    heap: list[tuple[Any, int, asyncpg.Record]] = []
    for partition, pager in pages.items():
        first = await pager.next()
        if first is not None:
            heapq.heappush(heap, (first["recorded_at"], partition, first))
    while heap:
        _, partition, row = heapq.heappop(heap)
        yield row
        following = await pages[partition].next()
        if following is not None:
            heapq.heappush(heap, (following["recorded_at"], partition, following))


class _Pages:
    """One source partition's events in position order, a page at a time, by its primary key."""

    def __init__(self, source: asyncpg.Connection, partition: int, page: int) -> None:
        self.source, self.partition, self.page = source, partition, page
        self.rows: collections.deque[asyncpg.Record] = collections.deque()
        self.after = 0
        self.done = False

    async def next(self) -> asyncpg.Record | None:
        if not self.rows and not self.done:
            found = await self.source.fetch(_READ_PAGE, self.partition, self.after, self.page)
            self.rows.extend(found)
            self.done = len(found) < self.page
            if found:
                self.after = int(found[-1]["position"])
        return self.rows.popleft() if self.rows else None


async def _copy(target: asyncpg.Connection, rows: list[tuple[object, ...]]) -> None:
    async with _on_target():
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


__all__ = ["PAGE", "MoveRefused", "MoveReport", "TargetFailed", "check_reachable", "move_log"]
