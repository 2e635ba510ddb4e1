"""How long `collab repartition` takes: a log copied into another database under other partition counts.

    python bench/repartition.py [--rooms 100] [--members 20] [--events 200000] [--partitions 1,4,16]

The log is the fanout benchmark's kind (bench/projections.py): `--rooms` rooms of `--members` members
who joined, a sheet per room, and `--events` cell updates from two members of each room, on a fresh
database (bench/common.py). Each count of `--partitions` then gets a move of that log into a new
database, timed in two parts: the copy (read in one snapshot, staged, each partition's events,
counters and head written) and the rebuild of the cells, sheets and projection tables from the copy.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_database
from bench.projections import edits, joins
from engine.cluster.repartition import move_log
from engine.log.store import EventStore, create_db_engine

BATCH = 2000  # events per append while the log is built


async def build(url: str, rooms: int, members: int, events: int) -> int:
    """The log: joins, then `events` edits; its event count."""
    db_engine = create_db_engine(url, command_timeout=600)
    store = EventStore(db_engine)
    try:
        first = joins(rooms, members)
        await store.append(first)
        for start in range(0, events, BATCH):
            await store.append(edits(rooms, min(BATCH, events - start), start))
        return len(first) + events
    finally:
        await db_engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--events", type=int, default=200_000, help="cell updates in the log")
    parser.add_argument("--partitions", default="1,4,16", help="counts to move the log into")
    args = parser.parse_args()
    source = fresh_database()
    started = time.perf_counter()
    total = asyncio.run(build(source, args.rooms, args.members, args.events))
    print(f"a log of {total:,} events built in {time.perf_counter() - started:.1f}s", flush=True)
    print(
        "| partitions | copy s | copy events/s | rebuild s | rebuild events/s | whole move s |\n"
        "|---:|---:|---:|---:|---:|---:|",
        flush=True,
    )
    for partitions in (int(p) for p in args.partitions.split(",")):
        report = asyncio.run(move_log(source, fresh_database(migrate=False), partitions))
        rebuild = report.rebuilt.cells.seconds + report.rebuilt.projections.seconds
        copy = report.seconds - rebuild
        if report.events != total:
            raise SystemExit(f"moved {report.events} events of {total}")
        print(
            f"| {partitions} | {copy:.1f} | {total / copy:,.0f} | {rebuild:.1f} | {total / rebuild:,.0f} "
            f"| {report.seconds:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
