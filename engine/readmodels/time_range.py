"""A time range of one partition of the log as a range of its positions, found by bisection.

`recorded_at` never decreases along a partition's positions (engine/log/writer.py, even when the
database's clock steps back), so the events recorded at or after a time are a suffix of the partition
and those at or before one a prefix. (Only a log written before that rule on a clock that stepped
back, or copied from one, can hold a time that goes back; a page near such a step may miss events,
though it holds none outside its range: every page also filters on `recorded_at`.)
A page filtered on `recorded_at` alone is often planned as a walk of the partition in position order
that tests each row until enough match: on a log of 2,000,000 events a page of the last two days
took 0.3 s, and a busy room's page from 30 days back 0.16 s. Each boundary is found instead by about
log2(head) lookups of the primary key in one statement, and the page's walk starts and stops there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.log.partitions import read_head
from engine.log.schema import events


@dataclass(frozen=True, slots=True)
class PositionRange:
    """Positions outside which no event of the time range lies: after `after`, before `before` (None:
    no end, so events committed while a page is read are not cut off)."""

    after: int
    before: int | None

    def clauses(self) -> list[ColumnElement[bool]]:
        found = [events.c.position > self.after]
        if self.before is not None:
            found.append(events.c.position < self.before)
        return found


async def position_range(
    conn: AsyncConnection,
    partition: int,
    since: datetime | None,
    until: datetime | None,
    *,
    head: int | None = None,
) -> PositionRange:
    """The positions of `partition` whose events may be recorded within [since, until]; `head`, the
    partition's, when the caller has read it in the same snapshot."""
    if since is None and until is None:
        return PositionRange(0, None)
    end = (await read_head(conn, partition) if head is None else head) + 1
    after = 0
    if since is not None:
        after = await _first_passing(conn, partition, 0, end, _FROM_SINCE, since) - 1
    before = None
    if until is not None:
        before = await _first_passing(conn, partition, after, end, _AFTER_UNTIL, until)
    # Every event up to the head was recorded by `until`, so those committed since may be too: no end.
    return PositionRange(after, None if before == end else before)


# The bisection, run inside PostgreSQL: one round trip instead of one per probe (about 0.5 ms each
# from here, so 11 ms a boundary on a log of 2,000,000 events). Kept true on every row: each event at
# or before `low` fails the test, and the first event at or after `high` passes it (or there is none).
# A probe reads the first event at or after the middle, so a position without an event (none today:
# positions are gapless, in a repartitioned log too) costs nothing more; the last row's `high` is the
# answer.
_BISECT = """
    WITH RECURSIVE search(low, high) AS (
        SELECT CAST(:low AS bigint), CAST(:high AS bigint)
        UNION ALL
        SELECT CASE WHEN coalesce(probe.passes, true) THEN s.low ELSE probe.position END,
               CASE WHEN coalesce(probe.passes, true) THEN (s.low + s.high) / 2 ELSE s.high END
        FROM search s
        LEFT JOIN LATERAL (
            SELECT e.position, e.recorded_at {test} :at AS passes
            FROM events e
            WHERE e.partition = :partition AND e.position >= (s.low + s.high) / 2 AND e.position < s.high
            ORDER BY e.position
            LIMIT 1
        ) probe ON true
        WHERE s.high - s.low > 1
    )
    SELECT min(high) FROM search
"""
_FROM_SINCE = text(_BISECT.format(test=">="))  # recorded at or after `since`
_AFTER_UNTIL = text(_BISECT.format(test=">"))  # recorded after `until`


async def _first_passing(
    conn: AsyncConnection, partition: int, low: int, high: int, test: TextClause, at: datetime
) -> int:
    """The position from which every event of the partition passes `test` against `at` (`high` when
    none below it does), given that none at or before `low` passes."""
    found = await conn.execute(test, {"low": low, "high": high, "partition": partition, "at": at})
    return int(found.scalar_one())
