"""History and time travel for auditors: pages of the log, and rooms, sheets and cells as of any point.

Every answer is read from the `events` table and, for state, folded by the same projectors the live
path uses (`engine.projections.rooms`, `engine.projections.cells`), so "as of seq N" can never disagree
with what clients were sent at seq N.

Paging. Pages are cut by log position, the position in the room's partition of the log (both its
streams are there; engine/log/partitions.py): the room's durable events and its volatile twin
interleave only by position (volatile events have no seq), and a position cursor serves both.
Reading `position > cursor` in position order never skips an event, because the store makes position
order commit order (engine/log/store.py, top docstring): no event can become visible below a position
a reader has passed.

"As of" a point. A point is a log position P: the position of the room's event `seq`, or the newest
event of the room (either stream) recorded at or before a time; `recorded_at` never decreases along
positions (engine/log/writer.py), so a time cuts the log at one position. The room is every event of
its two streams up to P, folded from the newest snapshot at or before P (engine/readmodels/snapshots.py). A
fold
that passes a multiple of `snapshot_every` stores a snapshot there, so a room is replayed in full at
most once. A sheet is folded from its own `CellUpdated` events only, filtered in SQL, so it needs no
snapshot: those are all the events its projection reads. A room's members show the statuses they had
declared by the point, read from their own streams (`stream_walk.statuses_at`); the fold, and so a
snapshot, holds none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, Select, and_, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.log.partitions import check_partition, partition_count, partition_of, read_head
from engine.log.schema import events, sheets, streams
from engine.model.actors import glob_prefix, glob_regex
from engine.model.catalogue import CATALOGUE, CELL_EVENTS, VOLATILE_EVENTS, written_cells
from engine.model.errors import NotFound, ValidationFailed
from engine.model.events import RecordedEvent
from engine.model.identifiers import identifier_problem
from engine.model.streams import (
    ROOM_STREAM_PREFIX,
    VOLATILE_STREAM_PREFIX,
    room_stream,
    sheet_stream,
    volatile_stream,
)
from engine.projections import cells as cells_projection
from engine.projections.cells import Cell, Sheet
from engine.projections.rooms import RoomView, apply_many, with_statuses
from engine.readmodels.snapshots import Snapshot, SnapshotStore
from engine.readmodels.stream_walk import (
    Bounds,
    Claim,
    admitted,
    newest_at,
    scan_streams,
    statuses_at,
    walk_is_cheaper,
    walk_streams,
)
from engine.readmodels.time_range import position_range

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a page holds: types (None: all), a `recorded_at` range, both ends included and kept
    in UTC (`_utc_time`), and the rooms a reader's `rooms` claim admits (its glob patterns,
    `Actor.rooms`; None: every stream)."""

    types: frozenset[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    rooms: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        unknown = sorted((self.types or frozenset()) - CATALOGUE)
        if unknown:
            valid = sorted(CATALOGUE)
            raise ValidationFailed(
                f"types: unknown event type(s) {', '.join(unknown)}; valid types: {', '.join(valid)}",
                types=unknown,
                valid=valid,
            )
        for name, at in (("since", self.since), ("until", self.until)):
            if at is not None:
                object.__setattr__(self, name, _utc_time(name, at))
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValidationFailed("since is after until")

    def clauses(self) -> list[ColumnElement[bool]]:
        """The types and the time range as filters on events (the rooms are matched in the `streams`
        table instead, `stream_walk.admitted`, or for one room against its id)."""
        return self.bounds(after=0).clauses()

    def bounds(self, after: int, before: int | None = None) -> Bounds:
        """The filter over the positions after `after` and before `before`, as the walks take it."""
        return Bounds(after, before, self.types, self.since, self.until)

    def stream_patterns(self) -> list[str] | None:
        """The streams of the admitted rooms (and their volatile twins) as anchored regular expressions:
        a reader narrowed to some rooms sees no user's own stream either."""
        if self.rooms is None:
            return None
        prefix = f"^({VOLATILE_STREAM_PREFIX})?{ROOM_STREAM_PREFIX}"  # no regex metacharacters
        return [prefix + glob_regex(pattern)[1:] for pattern in self.rooms]

    def stream_prefixes(self) -> list[str] | None:
        """What every admitted stream id starts with, one of these."""
        if self.rooms is None:
            return None
        starts = [room_stream(glob_prefix(pattern)) for pattern in self.rooms]
        return [prefix for start in starts for prefix in (start, volatile_stream(start))]


@dataclass(frozen=True, slots=True)
class Page:
    events: list[RecordedEvent]
    next_cursor: int | None  # the position to read after for the next page; None: nothing more now


@dataclass(frozen=True, slots=True)
class SheetAsOf:
    sheet: Sheet
    room_seq: int  # the seq of the sheet's room at that point


class History:
    """Read-only queries over the log (and the snapshot cache). Stateless apart from the pool."""

    def __init__(
        self, db_engine: AsyncEngine, *, snapshot_every: int = 100, partitions: int | None = None
    ) -> None:
        if snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        self.db_engine = db_engine
        # A room's events, cells and positions are all in its partition, so every read of a room
        # names that one partition (engine/log/partitions.py): its positions are the room's cursors.
        # The count is the log's, read once when not given (it never changes).
        self._partitions = partitions
        self.snapshot_every = snapshot_every
        self.snapshots = SnapshotStore(db_engine)

    # Pages of events.

    async def room_events(
        self,
        room_id: str,
        *,
        after_seq: int | None = None,
        cursor: int | None = None,
        limit: int = 100,
        where: EventFilter = EventFilter(),
        include_volatile: bool = False,
    ) -> Page:
        """A page of the room's events after `after_seq` (a room seq) or `cursor` (a page's
        `next_cursor`); volatile events too, merged by position, when `include_volatile`."""
        head = await self.room_seq(room_id)
        if after_seq is not None and cursor is not None:
            raise ValidationFailed("give after_seq or cursor, not both")
        if after_seq is not None:
            cursor = await self._position_of(room_id, _bounded_seq(after_seq, head, name="after_seq"))
        if where.types is not None and not include_volatile and (volatile := where.types & VOLATILE_EVENTS):
            raise ValidationFailed(
                f"{', '.join(sorted(volatile))} events are volatile: ask with include_volatile=true"
            )
        if where.rooms is not None and not any(fnmatchcase(room_id, pattern) for pattern in where.rooms):
            _check_page(cursor or 0, limit)
            return Page([], None)  # a claim that does not admit the room admits none of its events
        streams = _room_streams(room_id, include_volatile)
        partition = await self._partition(room_id)
        return await self._walk_page(streams, where, partition=partition, after=cursor or 0, limit=limit)

    async def all_events(
        self,
        *,
        after_position: int = 0,
        limit: int = 100,
        where: EventFilter = EventFilter(),
        partition: int = 0,
    ) -> Page:
        """A page of one partition of the log (every stream in it) after `after_position`: positions
        count within a partition (engine/log/partitions.py), so a reader of a log of several tails
        each partition with a cursor of its own."""
        check_partition(partition, await self.partitions())
        if where.rooms is not None:
            return await self._admitted_page(where, partition=partition, after=after_position, limit=limit)
        clauses = [*where.clauses(), *await self._times(partition, where)]
        return await self._page(clauses, partition=partition, after=after_position, limit=limit)

    async def export_room(
        self, room_id: str, *, include_volatile: bool = False, page_size: int = MAX_PAGE
    ) -> AsyncIterator[list[RecordedEvent]]:
        """The room's events page by page, up to the log head when the export starts (so a busy room's
        export ends), each page read on its own so memory holds one page at a time.

        Checks the room exists before it yields; the caller can answer NotFound before streaming.
        """
        await self.room_seq(room_id)
        partition = await self._partition(room_id)
        upto = await self._head(partition)
        streams = _room_streams(room_id, include_volatile)
        return self._pages(streams, partition, after=0, upto=upto, size=page_size)

    # Time travel.

    async def room_state(
        self, room_id: str, *, seq: int | None = None, at: datetime | None = None
    ) -> RoomView:
        """The room as of its event `seq`, or as of time `at` (the newest room event recorded then), or,
        with neither, as it is now; each member with the status they had declared by then, as the
        `room_state` sent then showed it (declarations are in the users' own streams, not the room's)."""
        view = await self._fold_room(room_id, seq, at)
        if not view.members:
            return view
        if at is not None:
            by = _utc_time("at", at)
        elif seq is not None and view.last_activity is not None:
            by = view.last_activity  # the moment of the room's event `seq`: the newest event folded
        else:
            by = _LATEST  # now: after every event
        async with self.db_engine.connect() as conn:
            declared = await statuses_at(conn, list(view.members), by, partitions=await self.partitions())
        return with_statuses(view, declared)

    async def _fold_room(self, room_id: str, seq: int | None, at: datetime | None) -> RoomView:
        """The room's fold as of `seq` or `at` (or now), from the newest snapshot before that point:
        the projection alone, every member "online" (`room_state` lays the statuses over it)."""
        point = await self._point(room_id, seq, at)
        partition = await self._partition(room_id)
        snapshot = None
        if point:
            snapshot = await self.snapshots.latest(room_id, partition=partition, upto_position=point)
        view = snapshot.view if snapshot is not None else RoomView(room_id)
        after = snapshot.position if snapshot is not None else 0
        async for page in self._pages(_room_streams(room_id, True), partition, after=after, upto=point):
            view = await self._fold(view, page)
        return view

    async def snapshot(self, room_id: str) -> Snapshot:
        """Store (if not there yet) and return a snapshot of the room at its current seq."""
        head = await self.room_seq(room_id)
        view = await self._fold_room(room_id, head, None)  # a snapshot holds the fold alone
        position = await self._position_of(room_id, head)
        snapshot = Snapshot(room_id, head, position, view, await self._partition(room_id))
        await self.snapshots.save(snapshot)
        return snapshot

    async def sheet_cells(
        self, sheet_id: str, *, seq: int | None = None, at: datetime | None = None
    ) -> SheetAsOf:
        """The sheet's cells as of seq `seq` of its room, or as of time `at`, or, with neither, now."""
        room_id = await self.sheet_room(sheet_id)
        head = await self.room_seq(room_id)
        if seq is not None and at is not None:
            raise ValidationFailed("give at most one of seq and at")
        if seq is None and at is None:
            seq = head
        if seq is not None:
            upto = _bounded_seq(seq, head)
        else:
            assert at is not None
            upto = await self._seq_at(room_id, _utc_time("at", at))
        sheet = Sheet(sheet_id)
        async for page in self._cell_pages(room_id, sheet_id, events.c.stream_version <= upto):
            sheet = cells_projection.apply_many(sheet, page)
        return SheetAsOf(sheet, upto)

    async def cell_history(
        self, sheet_id: str, cell_id: str, *, after_seq: int = 0, limit: int = 100
    ) -> tuple[list[Cell], int | None]:
        """The cell's versions, oldest first, after room seq `after_seq`; and the next `after_seq`.

        `after_seq` is bounded by the room's seq as in `room_events`; a cell never written is NotFound
        whatever `after_seq` is, while one written only up to it has an empty page.
        """
        room_id = await self.sheet_room(sheet_id)
        _check_id("cell_id", cell_id)
        _check_limit(limit)
        _bounded_seq(after_seq, await self.room_seq(room_id), name="after_seq")
        writes = self._cell_query(await self._partition(room_id), room_id, sheet_id, cell_id)
        found = await self._fetch(writes.where(events.c.stream_version > after_seq).limit(limit + 1))
        if not found and (after_seq == 0 or not await self._fetch(writes.limit(1))):
            raise NotFound(f"cell {cell_id!r} of sheet {sheet_id!r} was never written")
        more = len(found) > limit
        found = found[:limit]
        versions: list[Cell] = []
        for event in found:
            for written in written_cells(event.type, event.data):
                if written["cell_id"] == cell_id:
                    versions.append(
                        cells_projection.apply_cell(versions[-1] if versions else None, event, written)
                    )
        return versions, (found[-1].stream_version if more else None)

    # Lookups.

    async def room_seq(self, room_id: str) -> int:
        """The room's current seq; NotFound for a room no one ever joined."""
        _check_id("room_id", room_id)
        # The stream's counter row (engine/log/store.py) is its newest version, without scanning its events.
        query = select(streams.c.version).where(
            streams.c.partition == await self._partition(room_id), streams.c.stream_id == room_stream(room_id)
        )
        async with self.db_engine.connect() as conn:
            seq = (await conn.execute(query)).scalar()
        if not seq:
            raise NotFound(f"room {room_id!r} has no history")
        return int(seq)

    async def sheet_room(self, sheet_id: str) -> str:
        """The sheet's room; NotFound for a sheet never edited."""
        _check_id("sheet_id", sheet_id)
        async with self.db_engine.connect() as conn:
            claimed_in = partition_of(sheet_stream(sheet_id), await self.partitions())
            query = select(sheets.c.room_id).where(
                sheets.c.partition == claimed_in, sheets.c.sheet_id == sheet_id
            )
            room = (await conn.execute(query)).scalar()
        if room is None:
            raise NotFound(f"sheet {sheet_id!r} was never edited")
        return str(room)

    # Internals.

    async def _point(self, room_id: str, seq: int | None, at: datetime | None) -> int:
        """The log position that `seq` or `at` names in this room (0: before its first event); with
        neither, the room's newest event, its cursors included."""
        if seq is not None and at is not None:
            raise ValidationFailed("give at most one of seq and at")
        head = await self.room_seq(room_id)
        if seq is not None:
            return await self._position_of(room_id, _bounded_seq(seq, head))
        partition = await self._partition(room_id)
        if at is not None:
            at = _utc_time("at", at)
            async with self.db_engine.connect() as conn:
                found = [await newest_at(conn, partition, s, at) for s in _room_streams(room_id, True)]
            return max(newest.position for newest in found)
        newest = [_newest_position(partition, stream) for stream in _room_streams(room_id, True)]
        query = select(func.greatest(literal(0), *newest))
        async with self.db_engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def _seq_at(self, room_id: str, at: datetime) -> int:
        """The room's seq as of `at`: its newest durable event recorded then (0: none yet)."""
        async with self.db_engine.connect() as conn:
            newest = await newest_at(conn, await self._partition(room_id), room_stream(room_id), at)
        return newest.version

    async def _position_of(self, room_id: str, seq: int) -> int:
        if seq == 0:
            return 0
        query = select(events.c.position).where(
            events.c.partition == await self._partition(room_id),
            events.c.stream_id == room_stream(room_id),
            events.c.stream_version == seq,
        )
        async with self.db_engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def partitions(self) -> int:
        if self._partitions is None:
            async with self.db_engine.connect() as conn:
                self._partitions = await partition_count(conn)
        return self._partitions

    async def _partition(self, room_id: str) -> int:
        return partition_of(room_stream(room_id), await self.partitions())

    async def _times(self, partition: int, where: EventFilter) -> list[ColumnElement[bool]]:
        """The filter's time range as bounds on position too, so a page walks only the positions that
        range can hold (engine/readmodels/time_range.py)."""
        if where.since is None and where.until is None:
            return []
        async with self.db_engine.connect() as conn:
            return (await position_range(conn, partition, where.since, where.until)).clauses()

    async def _walk_page(
        self, streams: list[str], where: EventFilter, *, partition: int, after: int, limit: int
    ) -> Page:
        """`_page` over a few streams, each read along its own index (engine/readmodels/stream_walk.py).
        One snapshot: the time range's positions (an open end when every event was recorded by
        `until`) hold for the events the walk reads, none committed after them."""
        _check_page(after, limit)
        async with self.db_engine.connect() as conn:
            snapshot = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with snapshot.begin():
                span = await position_range(snapshot, partition, where.since, where.until)
                bounds = where.bounds(max(after, span.after), span.before)
                found = await walk_streams(snapshot, partition, streams, bounds, limit + 1)
        return _paged(found, limit)

    async def _admitted_page(self, where: EventFilter, *, partition: int, after: int, limit: int) -> Page:
        """`_page` over the streams a claim admits: walked one by one when they are few and sparse, else
        found by a scan (engine/readmodels/stream_walk.py). One snapshot, so no stream created meanwhile
        can hold an event the page passes over."""
        _check_page(after, limit)
        async with self.db_engine.connect() as conn:
            snapshot = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with snapshot.begin():
                claim = Claim(where.stream_prefixes() or [], where.stream_patterns() or [])
                streams = await admitted(snapshot, partition, claim)
                head = await read_head(snapshot, partition)
                span = await position_range(snapshot, partition, where.since, where.until, head=head)
                bounds = where.bounds(max(after, span.after), span.before)
                if walk_is_cheaper(streams, head, bounds.after, limit + 1, typed=where.types is not None):
                    found = await walk_streams(snapshot, partition, streams.ids, bounds, limit + 1)
                else:
                    found = await scan_streams(snapshot, partition, streams, bounds, limit + 1, head)
        return _paged(found, limit)

    async def _head(self, partition: int) -> int:
        async with self.db_engine.connect() as conn:
            return await read_head(conn, partition)

    async def _fold(self, view: RoomView, page: Sequence[RecordedEvent]) -> RoomView:
        """`apply_many` over the page, storing a snapshot after each durable event whose seq is a
        multiple of `snapshot_every` (the view then holds exactly the events up to its position)."""
        start = 0
        durable = room_stream(view.room_id)
        for index, event in enumerate(page):
            if event.stream_id == durable and event.stream_version % self.snapshot_every == 0:
                view = apply_many(view, page[start : index + 1])
                start = index + 1
                await self.snapshots.save(
                    Snapshot(view.room_id, view.seq, event.position, view, event.partition)
                )
        return apply_many(view, page[start:])

    async def _page(
        self, where: list[ColumnElement[bool]], *, partition: int, after: int, limit: int
    ) -> Page:
        _check_page(after, limit)
        query = (
            select(events)
            .where(events.c.partition == partition, events.c.position > after, *where)
            .order_by(events.c.position)
            .limit(limit + 1)
        )
        return _paged(await self._fetch(query), limit)

    async def _pages(
        self, streams: list[str], partition: int, *, after: int, upto: int, size: int = MAX_PAGE
    ) -> AsyncIterator[list[RecordedEvent]]:
        while True:
            async with self.db_engine.connect() as conn:
                page = await walk_streams(conn, partition, streams, Bounds(after, upto + 1), size)
            if page:
                yield page
            if len(page) < size:
                return
            after = page[-1].position

    async def _cell_pages(
        self, room_id: str, sheet_id: str, bound: ColumnElement[bool], size: int = MAX_PAGE
    ) -> AsyncIterator[list[RecordedEvent]]:
        """The sheet's updates within `bound`, in seq order, page by page."""
        after = 0
        partition = await self._partition(room_id)
        while True:
            query = self._cell_query(
                partition, room_id, sheet_id, None, bound, events.c.stream_version > after
            )
            page = await self._fetch(query.limit(size))
            if page:
                yield page
            if len(page) < size:
                return
            after = page[-1].stream_version

    def _cell_query(
        self, partition: int, room_id: str, sheet_id: str, cell_id: str | None, *bounds: ColumnElement[bool]
    ) -> Select[Any]:
        """The cell events of the sheet (or those writing one of its cells) within `bounds`, in seq order:
        `CellUpdated` names its cell, a `CellsUpdated` holds it in its `cells` list."""
        where = [
            events.c.partition == partition,
            events.c.stream_id == room_stream(room_id),
            events.c.type.in_(sorted(CELL_EVENTS)),
            events.c.data["sheet_id"].astext == sheet_id,
            *bounds,
        ]
        if cell_id is not None:
            where.append(
                or_(
                    events.c.data["cell_id"].astext == cell_id,
                    events.c.data["cells"].contains([{"cell_id": cell_id}]),
                )
            )
        return select(events).where(and_(*where)).order_by(events.c.stream_version)

    async def _fetch(self, query: Any) -> list[RecordedEvent]:
        async with self.db_engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [RecordedEvent(**row) for row in rows]


def _newest_position(partition: int, stream_id: str) -> ScalarSelect[Any]:
    """The position of the stream's newest event, or NULL.

    Read as the stream's highest version, not as `max(position)`: positions and versions rise together
    within a stream, and this order is the `(stream_id, stream_version)` index's, so the plan is a
    backward scan of the stream's own entries whatever the statistics say. `max(position)` over the
    room's streams may be planned as a backward scan of the whole partition instead, when the sample
    undercounts the streams; on a log of 2,000,000 events that took 0.3-0.6 s (docs/performance.md).
    """
    bounds = [events.c.partition == partition, events.c.stream_id == stream_id]
    newest = select(events.c.position).where(*bounds).order_by(events.c.stream_version.desc()).limit(1)
    return newest.scalar_subquery()


def _room_streams(room_id: str, include_volatile: bool) -> list[str]:
    durable = room_stream(room_id)
    return [durable, volatile_stream(durable)] if include_volatile else [durable]


def _bounded_seq(seq: int, head: int, name: str = "seq") -> int:
    """`seq` if the room has it (0: before its first event); the error names the parameter `name`."""
    if not 0 <= seq <= head:
        raise ValidationFailed(f"{name} {seq} is outside the room's 0..{head}", seq=head)
    return seq


def _check_id(name: str, value: str) -> None:
    # No stored id breaks the identifier rule (PostgreSQL cannot even hold a NUL): refuse such an id
    # before the query fails.
    if (problem := identifier_problem(value)) is not None:
        raise ValidationFailed(f"{name} {problem}")


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def _utc_time(name: str, at: datetime) -> datetime:
    """`at` in UTC, the one way every time parameter reaches a query.

    A time without zone would be read in the server's zone: it is refused rather than guessed. A zoned
    time whose UTC value falls outside years 1..9999 (`9999-12-31T23:59:59-05:00`) has no Python or
    driver value: it is before every event or after every one, so _EARLIEST or _LATEST (which the driver
    sends as -infinity and infinity) gives the same answer.
    """
    offset = at.utcoffset()
    if offset is None:
        raise ValidationFailed(f"{name} needs a time zone (e.g. 2026-11-26T10:00:00Z)")
    try:
        return at.astimezone(UTC)
    except OverflowError:
        # A positive offset shifts the time back, past year 1; a negative one forward, past 9999.
        return _EARLIEST if offset > timedelta(0) else _LATEST


def _paged(found: list[RecordedEvent], limit: int) -> Page:
    """A page of the first `limit` of `found` (read as `limit + 1`, so a next page is known to exist)."""
    more = len(found) > limit
    found = found[:limit]
    return Page(found, found[-1].position if more else None)


def _check_page(after: int, limit: int) -> None:
    _check_limit(limit)
    if after < 0:
        raise ValidationFailed("the cursor must not be negative")


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be 1 to {MAX_PAGE}")


__all__ = ["MAX_PAGE", "EventFilter", "History", "Page", "SheetAsOf"]
