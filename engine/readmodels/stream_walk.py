"""Pages of a few streams' events in position order, read stream by stream, and the claim's streams
scanned in bounded windows when they are too many or too dense for that.

A page of some streams (a room and its volatile twin, or the rooms an auditor's `rooms` claim admits)
asked as one filter on `stream_id` over the partition in position order costs every row between the
matches. On a log of 2,000,000 events a quiet room's export took 0.5 s a page that way, and an
auditor's page over one quiet room 0.3-1.0 s (1.8 s for a claim admitting no stream there). PostgreSQL
makes that plan whenever it guesses the streams are dense, which a prepared statement's generic plan
always does. Here each stream is read along its own `(stream_id, stream_version)` index instead:
positions and versions rise together within a stream, so the first version after the page's cursor
is found by bisecting the stream's versions (about log2(version) lookups), the next versions follow
it, and the streams' runs are merged by position in the same statement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    RowMapping,
    Text,
    TextualSelect,
    any_,
    bindparam,
    column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.log.partitions import partition_of
from engine.log.schema import events
from engine.model.catalogue import USER_STATUS_CHANGED
from engine.model.events import RecordedEvent
from engine.model.streams import user_id_of, user_stream

# Each stream's row in `search` keeps: its versions up to `low` lie at or before `after`, those from
# `high` on after it (0 and version + 1 hold at the start; a cursor of 0 needs no search). Its run is
# its next `window` versions, a range of its index whatever the plan (a generic plan would otherwise
# read the rest of the stream and sort it), read per stream: a lateral with a limit cannot be made a
# join, which a plan could turn into a scan of the partition. The runs hold every event of the
# streams up to `cut`, the first position at which a full run stops (NULL: every run reached its
# stream's end), so the page holds events up to it only; `cut`'s one row comes back even when no
# event qualifies.
_WALK = """
    WITH RECURSIVE search(stream_id, low, high) AS (
        SELECT s.stream_id, CAST(0 AS bigint),
               CASE WHEN CAST(:after AS bigint) = 0 THEN CAST(1 AS bigint) ELSE s.version + 1 END
        FROM streams s
        WHERE s.partition = :partition AND s.stream_id = ANY(CAST(:streams AS text[]))
        UNION ALL
        SELECT s.stream_id,
               CASE WHEN probe.position <= :after THEN (s.low + s.high) / 2 ELSE s.low END,
               CASE WHEN probe.position <= :after THEN s.high ELSE (s.low + s.high) / 2 END
        FROM search s
        JOIN events probe
          ON probe.partition = :partition AND probe.stream_id = s.stream_id
         AND probe.stream_version = (s.low + s.high) / 2
        WHERE s.high - s.low > 1
    ),
    runs AS (
        SELECT run.* FROM search s
        CROSS JOIN LATERAL (
            SELECT e.* FROM events e
            WHERE e.partition = :partition AND e.stream_id = s.stream_id
              AND e.stream_version > s.low AND e.stream_version <= s.low + :window
            ORDER BY e.stream_version
            LIMIT :window
        ) run
        WHERE s.high - s.low <= 1
    ),
    cut AS (
        SELECT min(last) AS position
        FROM (SELECT max(position) AS last, count(*) AS held FROM runs GROUP BY stream_id) run
        WHERE held = :window
    )
    SELECT {columns}, cut.position AS cut
    FROM cut
    LEFT JOIN runs run
      ON (cut.position IS NULL OR run.position <= cut.position)
     AND (CAST(:before AS bigint) IS NULL OR run.position < :before) {filters}
    ORDER BY run.position
    LIMIT :limit
"""


# The time range holds along positions (engine/readmodels/time_range.py) except in a log written on a
# clock that stepped back before `recorded_at` was kept from going back; its events are filtered
# here too, so such a log's pages hold no event outside the range either.
_TYPES = """
     AND (CAST(:types AS text[]) IS NULL OR run.type = ANY(CAST(:types AS text[])))"""
_TIMES = """
     AND (CAST(:since AS timestamptz) IS NULL OR run.recorded_at >= :since)
     AND (CAST(:until AS timestamptz) IS NULL OR run.recorded_at <= :until)"""


def _statement(filtered: bool) -> TextualSelect:
    filters = _TYPES + _TIMES if filtered else ""
    columns = ", ".join(f"run.{column.name}" for column in events.c)  # named: not the table's order
    statement = text(_WALK.format(filters=filters, columns=columns))
    return statement.columns(*events.c, column("cut", BigInteger))


_WALKS = {filtered: _statement(filtered) for filtered in (False, True)}

# What a filtered walk's window and a scan's span grow to: MAX_WINDOW versions over all the walk's
# streams (a walk of many streams hardly grows: each stream's window starts at a page), MAX_SPAN
# positions (or a scan's first span, when larger). A statement's runs are held in memory, and a
# statement is not interrupted.
MAX_WINDOW = 16_384
MAX_SPAN = 65_536


@dataclass(frozen=True, slots=True)
class Bounds:
    """Which of the streams' events a page may hold: positions after `after` and before `before` (None:
    no end), of `types` (None: every type), recorded within [since, until] (None: no bound)."""

    after: int
    before: int | None = None
    types: frozenset[str] | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def filtered(self) -> bool:
        """Whether some of the streams' events within the positions may be left out."""
        return self.types is not None or self.since is not None or self.until is not None

    def clauses(self) -> list[ColumnElement[bool]]:
        """The types and the time range as filters on events (the positions are bounded apart)."""
        found: list[ColumnElement[bool]] = []
        if self.types is not None:
            found.append(events.c.type.in_(sorted(self.types)))
        if self.since is not None:
            found.append(events.c.recorded_at >= self.since)
        if self.until is not None:
            found.append(events.c.recorded_at <= self.until)
        return found


async def walk_streams(
    conn: AsyncConnection,
    partition: int,
    streams: Sequence[str],
    bounds: Bounds,
    limit: int,
) -> list[RecordedEvent]:
    """The first `limit` events of `streams` (ids, all in `partition`) within `bounds`, in position order.

    Each statement reads a window of each stream's next versions, no more than the positions left
    before `bounds.before` can hold; when its runs stop short of a full page (the types filter left
    too few, or a run filled first), the walk goes on from their cut. The window is `limit` versions;
    with a filter (types, times) it doubles after each statement, up to `MAX_WINDOW` versions over all
    the streams. A type that matches little would otherwise cost a statement per `limit` versions (3,336
    statements for a page of one over a 10,000-event room); doubling costs about log2 of that for a
    room's one or two streams, reading two to three times the versions the page passes over. The
    window of a walk of many streams can hardly grow; the cost model sends such walks to the scan."""
    found: list[RecordedEvent] = []
    if not streams:
        return found
    statement = _WALKS[bounds.filtered]
    parameters: dict[str, object] = {"partition": partition, "streams": list(streams)}
    parameters["before"] = bounds.before
    if bounds.filtered:
        types = None if bounds.types is None else sorted(bounds.types)
        parameters |= {"types": types, "since": bounds.since, "until": bounds.until}
    after, reach = bounds.after, limit
    while True:
        window = reach if bounds.before is None else min(reach, bounds.before - after - 1)
        if window < 1:
            return found
        wanted = {"after": after, "limit": limit - len(found), "window": window}
        rows = (await conn.execute(statement, parameters | wanted)).mappings().all()
        cut = rows[0]["cut"]
        found += [RecordedEvent(**_event(row)) for row in rows if row["position"] is not None]
        if len(found) >= limit or cut is None or (bounds.before is not None and cut >= bounds.before - 1):
            return found
        after = cut
        if bounds.filtered:
            reach = max(reach, min(2 * reach, MAX_WINDOW // len(streams)))


def _event(row: RowMapping) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name != "cut"}


# The same bisection by time: `recorded_at` never decreases along positions (engine/log/writer.py), so
# neither along a stream's versions. Versions up to `low` were recorded at or before `at`, those from
# `high` on after it.
_NEWEST_AT = text("""
    WITH RECURSIVE search(low, high) AS (
        SELECT CAST(0 AS bigint), s.version + 1
        FROM streams s
        WHERE s.partition = :partition AND s.stream_id = :stream
        UNION ALL
        SELECT CASE WHEN probe.recorded_at <= :at THEN (s.low + s.high) / 2 ELSE s.low END,
               CASE WHEN probe.recorded_at <= :at THEN s.high ELSE (s.low + s.high) / 2 END
        FROM search s
        JOIN events probe
          ON probe.partition = :partition AND probe.stream_id = :stream
         AND probe.stream_version = (s.low + s.high) / 2
        WHERE s.high - s.low > 1
    )
    SELECT s.low, coalesce((
        SELECT e.position FROM events e
        WHERE e.partition = :partition AND e.stream_id = :stream AND e.stream_version = s.low
    ), 0)
    FROM search s
    WHERE s.high - s.low <= 1
""")


@dataclass(frozen=True, slots=True)
class Newest:
    """A stream's newest event as of a time: its version and position (0 and 0: none yet)."""

    version: int
    position: int


async def newest_at(conn: AsyncConnection, partition: int, stream: str, at: datetime) -> Newest:
    """The stream's newest event recorded at or before `at`, found in about log2(version) lookups of its
    index (a filter on `recorded_at` over the stream's index read every event after `at`: 0.1-1 s
    for a busy room a month back on a log of 2,000,000 events)."""
    parameters = {"partition": partition, "stream": stream, "at": at}
    found = (await conn.execute(_NEWEST_AT, parameters)).first()
    return Newest(0, 0) if found is None else Newest(int(found[0]), int(found[1]))


# Each user's status as of a time: the same bisection, over every user stream at once, finds the
# newest version recorded by then (`low`); the newest status from there back is read along the stream's
# index. No filter on `recorded_at` is left for the planner to answer from the log's time index, which
# it does when it takes streams for huge (a scan of the log by time, not a read of the user's entries).
_STATUSES_AT = text("""
    WITH RECURSIVE search(partition, stream_id, low, high) AS (
        SELECT s.partition, s.stream_id, CAST(0 AS bigint), s.version + 1
        FROM streams s
        WHERE s.partition = ANY(CAST(:partitions AS smallint[]))
          AND s.stream_id = ANY(CAST(:streams AS text[]))
        UNION ALL
        SELECT s.partition, s.stream_id,
               CASE WHEN probe.recorded_at <= :at THEN (s.low + s.high) / 2 ELSE s.low END,
               CASE WHEN probe.recorded_at <= :at THEN s.high ELSE (s.low + s.high) / 2 END
        FROM search s
        JOIN events probe
          ON probe.partition = s.partition AND probe.stream_id = s.stream_id
         AND probe.stream_version = (s.low + s.high) / 2
        WHERE s.high - s.low > 1
    )
    SELECT s.stream_id, (
        SELECT e.data->>'status' FROM events e
        WHERE e.partition = s.partition AND e.stream_id = s.stream_id AND e.type = :type
          AND e.stream_version <= s.low
        ORDER BY e.stream_version DESC
        LIMIT 1
    ) AS status
    FROM search s
    WHERE s.high - s.low <= 1
""")


async def statuses_at(
    conn: AsyncConnection, user_ids: Sequence[str], at: datetime, *, partitions: int
) -> dict[str, str]:
    """Each user's declared status (their newest `UserStatusChanged`) recorded at or before `at`, for
    those who had declared one by then; `partitions` is the log's partition count."""
    streams = [user_stream(user_id) for user_id in user_ids]
    if not streams:
        return {}
    parameters = {
        "partitions": sorted({partition_of(stream, partitions) for stream in streams}),
        "streams": streams,
        "at": at,
        "type": USER_STATUS_CHANGED,
    }
    rows = await conn.execute(_STATUSES_AT, parameters)
    return {user_id_of(row.stream_id): str(row.status) for row in rows if row.status is not None}


@dataclass(frozen=True, slots=True)
class Admitted:
    """The streams of one partition a claim admits, as the `streams` table counts them."""

    ids: list[str]
    events: int  # their versions summed: how many of the partition's events are theirs
    longest: int


@dataclass(frozen=True, slots=True)
class Claim:
    """Which stream ids a claim admits: those matching one of `patterns` (anchored regular expressions),
    each of which starts with one of `prefixes`."""

    prefixes: list[str]
    patterns: list[str]


# The prefix first (CASE keeps the order): a regular expression costs about 1 us a row, `^@` a tenth.
_ADMITTED = text("""
    SELECT stream_id, version FROM streams
    WHERE partition = :partition
      AND CASE WHEN stream_id ^@ ANY(CAST(:prefixes AS text[]))
               THEN stream_id ~ ANY(CAST(:patterns AS text[])) ELSE false END
""")


async def admitted(conn: AsyncConnection, partition: int, claim: Claim) -> Admitted:
    """The partition's streams the claim admits, read from the `streams` table."""
    parameters = {"partition": partition, "prefixes": claim.prefixes, "patterns": claim.patterns}
    found = (await conn.execute(_ADMITTED, parameters)).all()
    versions = [int(version) for _, version in found]
    return Admitted([str(stream_id) for stream_id, _ in found], sum(versions), max(versions, default=0))


def walk_is_cheaper(streams: Admitted, head: int, after: int, limit: int, *, typed: bool = False) -> bool:
    """Whether reading the streams one by one visits fewer rows than scanning the partition from
    `after` until `limit` of theirs turn up, the scan's rows counted by the streams' share of the
    partition (the walk reads each stream's search and run). A types filter may match all of their
    events or none: the walk must then be cheaper both ways, the second counting the walk as reading
    all of their events after `after` (by their share again) and the scan every event there."""
    if streams.events == 0:
        return True
    searches = len(streams.ids) * math.ceil(math.log2(streams.longest + 1))
    runs = len(streams.ids) * min(limit, streams.longest)
    if searches + runs > _scan_rows(streams, head, after, limit):
        return False
    left = max(head - after, 0)
    return not typed or searches + math.ceil(left * min(streams.events / max(head, 1), 1.0)) <= left


def _scan_rows(streams: Admitted, head: int, after: int, limit: int) -> int:
    return math.ceil(min(max(head - after, 0), limit * head / max(streams.events, 1)))


async def scan_streams(
    conn: AsyncConnection, partition: int, streams: Admitted, bounds: Bounds, limit: int, head: int
) -> list[RecordedEvent]:
    """The first `limit` events of `streams` within `bounds`, in position order, found by scanning the
    partition: for streams dense enough that walking each costs more. The scan goes in windows of
    positions, each a range of the primary key whatever the plan (a filter on many stream ids can be
    planned as reading all their events and sorting them), sized to hold about two pages of theirs,
    and doubled, up to `MAX_SPAN` positions, after each that held too few (the streams or the types
    rarer there than on average); `head` is the partition's, read in the same snapshot."""
    found: list[RecordedEvent] = []
    span = max(limit, 2 * _scan_rows(streams, head, 0, limit))
    end = head if bounds.before is None else min(head, bounds.before - 1)
    after = bounds.after
    ids = bindparam("ids", streams.ids, type_=ARRAY(Text))
    while len(found) < limit and after < end:
        upto = min(after + span, end)
        query = select(events).where(
            events.c.partition == partition,
            events.c.position > after,
            events.c.position <= upto,
            events.c.stream_id == any_(ids),
            *bounds.clauses(),
        )
        rows = await conn.execute(query.order_by(events.c.position).limit(limit - len(found)))
        found += [RecordedEvent(**row) for row in rows.mappings()]
        after = upto
        span = max(span, min(2 * span, MAX_SPAN))
    return found


__all__ = [
    "MAX_SPAN",
    "MAX_WINDOW",
    "Admitted",
    "Bounds",
    "Claim",
    "Newest",
    "admitted",
    "newest_at",
    "scan_streams",
    "statuses_at",
    "walk_is_cheaper",
    "walk_streams",
]
