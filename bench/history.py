"""History reads on a large log: room pages, an auditor's claimed pages, exports and time travel.

    python bench/history.py [--events 2000000] [--days 60] [--repeat 3]
    python bench/history.py --rev before:HEAD~1 [--runs 2]

A synthetic log is written straight into a fresh database (bench/common.py) by one SQL statement, not
through the engine: `--events` events over `--days` days, a fifth of them in 5 busy rooms and the rest
in 2,000 quiet ones, 30% of each room's as cursor moves in its volatile twin; of the durable ones,
cell updates (a sheet per room) and joins, and ten leaves in `busy-0`, the first 5% into the log (a
rare type). Then each read below is timed `--repeat` times through `engine.readmodels.history.History`,
in process, against that log; a room's state as of a point is folded without the snapshots an
earlier fold stored (they are deleted first), so each time is a fold from the start.

`--rev NAME:REVISION` also times the reads with another commit's engine (from a temporary
`git worktree`, this virtualenv serving it; its `History` must take a claim's glob patterns, as from
commit 6e83c23 on), the codes alternating `--runs` times on the same log, each in a process of its
own. Reported per read: the fastest and slowest time of all runs of each code, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import fresh_database
from engine.log.store import create_db_engine
from engine.model.catalogue import CELL_UPDATED, CURSOR_MOVED, USER_JOINED_ROOM, USER_LEFT_ROOM
from engine.readmodels.history import EventFilter, History

ROOT = Path(__file__).resolve().parents[1]
BUSY, QUIET = 5, 2000

# Position i's stream: every fifth position is a busy room's (busy-0..4 in turn), the others a quiet
# room's (7919 is prime to 2,000, so they take turns evenly). 29 of each 97 events are cursor moves
# in the room's volatile twin; a durable event is a leave at every `leave_every`-th position from
# `leave_every / 2` on (a multiple of 25: busy-0's), a join at every seventh, and a cell update
# otherwise. Versions are numbered per stream afterwards.
_FILL = """
    WITH drawn AS (
        SELECT i,
               CASE WHEN i % 5 = 0 THEN 'busy-' || ((i / 5) % {busy})
                    ELSE 'room-' || ((i * 7919) % {quiet} + 1) END AS room,
               i % {leave_every} <> {leave_every} / 2 AND (i * 31) % 97 < 29 AS volatile,
               'u' || (i % 20) AS user_id
        FROM generate_series(CAST(1 AS bigint), {events}) AS i
    ),
    typed AS (
        SELECT i, room, user_id,
               CASE WHEN volatile THEN 'volatile:room:' || room ELSE 'room:' || room END AS stream_id,
               CASE WHEN volatile THEN '{moved}'
                    WHEN i % {leave_every} = {leave_every} / 2 THEN '{left}'
                    WHEN i % 7 = 0 THEN '{joined}'
                    ELSE '{updated}' END AS type
        FROM drawn
    )
    INSERT INTO events (partition, position, stream_id, stream_version, type, data, user_id, recorded_at)
    SELECT 0, i, stream_id, row_number() OVER (PARTITION BY stream_id ORDER BY i), type,
           CASE type
               WHEN '{updated}' THEN jsonb_build_object(
                   'room_id', room, 'sheet_id', 's-' || room, 'cell_id', 'A' || (i % 500),
                   'value', i, 'formula', NULL, 'user_id', user_id, 'username', user_id, 'version', i)
               WHEN '{moved}' THEN jsonb_build_object(
                   'room_id', room, 'user_id', user_id, 'username', user_id, 'x', i % 800, 'y', i % 600,
                   'cell', NULL)
               ELSE jsonb_build_object(
                   'room_id', room, 'user_id', user_id, 'username', user_id, 'email', NULL,
                   'connection_id', 'c' || i)
           END,
           user_id,
           CAST(:start AS timestamptz) + (CAST(:span AS interval) * i / {events})
    FROM typed
"""

_STREAMS = """
    INSERT INTO streams (stream_id, partition, version)
    SELECT stream_id, 0, max(stream_version) FROM events GROUP BY stream_id
"""

_SHEETS = """
    INSERT INTO sheets (sheet_id, partition, room_id, position)
    SELECT data->>'sheet_id', 0, min(data->>'room_id'), min(position)
    FROM events WHERE type = :updated GROUP BY data->>'sheet_id'
"""


async def build(url: str, events: int, days: int) -> None:
    """The synthetic log, its streams' versions, its head and its sheets, analyzed."""
    db_engine = create_db_engine(url, command_timeout=3600)  # one statement writes the whole log
    try:
        async with db_engine.begin() as conn:
            partitions = (await conn.execute(text("SELECT count(*) FROM log_head"))).scalar_one()
            if partitions != 1:
                raise SystemExit("the synthetic log is written for a log of one partition")
            leave_every = max(50, events // 10 // 50 * 50)
            fill = _FILL.format(
                busy=BUSY, quiet=QUIET, leave_every=leave_every, events=events, moved=CURSOR_MOVED,
                left=USER_LEFT_ROOM, joined=USER_JOINED_ROOM, updated=CELL_UPDATED,
            )  # fmt: skip
            start = datetime.now().astimezone() - timedelta(days=days)
            await conn.execute(text(fill), {"start": start, "span": timedelta(days=days)})
            await conn.execute(text(_STREAMS))
            await conn.execute(text(_SHEETS), {"updated": CELL_UPDATED})
            await conn.execute(text("UPDATE log_head SET position = :head"), {"head": events})
        async with db_engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE events"))
            await conn.execute(text("VACUUM ANALYZE streams"))
    finally:
        await db_engine.dispose()


Read = Callable[[], Awaitable[Any]]


async def _drain(pages: Any) -> int:
    return sum([len(page) async for page in pages])


def reads(history: History, db_engine: AsyncEngine, last: datetime) -> dict[str, Read]:
    """Each read by name; times count back from the log's last event."""

    def back(days: float) -> datetime:
        return last - timedelta(days=days)

    def claim(*patterns: str, types: frozenset[str] | None = None) -> EventFilter:
        return EventFilter(rooms=patterns, types=types)

    async def folded(room: str, *, at: datetime | None = None) -> Any:
        """The room as of `at`, or as of its middle seq, from its first event."""
        async with db_engine.begin() as conn:
            await conn.execute(text("DELETE FROM room_snapshots"))
        if at is not None:
            return await history.room_state(room, at=at)
        return await history.room_state(room, seq=await history.room_seq(room) // 2)

    leaves = frozenset({USER_LEFT_ROOM})
    return {
        "room page, busy, from the start": lambda: history.room_events("busy-1", limit=100),
        "room page, quiet, from the start": lambda: history.room_events("room-7", limit=100),
        "room page, busy, since 30 days back": lambda: history.room_events(
            "busy-1", limit=100, where=EventFilter(since=back(30))
        ),
        "room page of one leave, busy-0": lambda: history.room_events(
            "busy-0", limit=1, where=EventFilter(types=leaves)
        ),
        "/events since 2 days back": lambda: history.all_events(limit=100, where=EventFilter(since=back(2))),
        "claim of one quiet room": lambda: history.all_events(limit=100, where=claim("room-7")),
        "claim matching no room": lambda: history.all_events(limit=100, where=claim("nothing-*")),
        "claim of 100 rooms (room-1??)": lambda: history.all_events(limit=100, where=claim("room-1??")),
        "claim busy-0, one leave": lambda: history.all_events(limit=1, where=claim("busy-0", types=leaves)),
        "claim of every room, one leave": lambda: history.all_events(limit=1, where=claim("*", types=leaves)),
        "export, quiet room": lambda: history.export_room("room-7", include_volatile=True),
        "quiet room as of its middle seq, folded": lambda: folded("room-7"),
        "busy room as of 59 days back, folded": lambda: folded("busy-1", at=back(59)),
        "sheet of a busy room as of 58 days back": lambda: history.sheet_cells("s-busy-1", at=back(58)),
        "a busy room's cell history": lambda: history.cell_history("s-busy-1", "A30", limit=100),
    }


async def measure(url: str, repeat: int) -> dict[str, list[float]]:
    db_engine = create_db_engine(url)
    history = History(db_engine)
    try:
        async with db_engine.connect() as conn:
            last = (await conn.execute(text("SELECT max(recorded_at) FROM events"))).scalar_one()
        timings: dict[str, list[float]] = {}
        for name, read in reads(history, db_engine, last).items():
            timings[name] = []
            for _ in range(repeat):
                started = time.perf_counter()
                answer = await read()
                if hasattr(answer, "__aiter__"):
                    await _drain(answer)
                timings[name].append((time.perf_counter() - started) * 1e3)
        return timings
    finally:
        await db_engine.dispose()


def run_child(tree: Path, url: str, repeat: int) -> dict[str, list[float]]:
    command = [sys.executable, str(tree / "bench" / Path(__file__).name), "--child", url]
    command += ["--repeat", str(repeat)]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the reads of {tree} failed:\n{done.stderr}")
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3, help="times each read is timed in a run")
    parser.add_argument("--rev", action="append", default=[], help="also time a commit, NAME:REVISION")
    parser.add_argument("--runs", type=int, default=1, help="alternating runs of each code")
    parser.add_argument("--json", type=Path, help="write every time here too")
    parser.add_argument("--child", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.child, args.repeat))))
        return
    url = fresh_database()
    started = time.perf_counter()
    asyncio.run(build(url, args.events, args.days))
    print(f"{args.events:,} events over {args.days} days written in {time.perf_counter() - started:.0f} s")
    from bench.common import revision_with  # this tree's, in the parent only

    into = Path(tempfile.mkdtemp(prefix="collab-hist-"))
    trees = [("now", ROOT)] + [revision_with(spec, into, Path(__file__)) for spec in args.rev]
    times: dict[str, dict[str, list[float]]] = {name: {} for name, _ in trees}
    for _ in range(args.runs):
        for name, tree in trees:
            for read, ms in run_child(tree, url, args.repeat).items():
                times[name].setdefault(read, []).extend(ms)
    names = [name for name, _ in trees]
    print("| read | " + " | ".join(f"{name}, ms" for name in names) + " |")
    print("|---|" + "---:|" * len(names))
    for read in times["now"]:
        cells = [f"{min(times[n][read]):.1f}-{max(times[n][read]):.1f}" for n in names]
        print(f"| {read} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(times, indent=2))


if __name__ == "__main__":
    main()
