"""What one durable commit of the log costs, in the appending process and in PostgreSQL.

    python bench/commit.py [--commits 2000] [--sizes 1,8] [--json out.json]

A log writer (engine/log/writer.py, as an appender's lane uses it) commits batches of `--sizes` cell
updates back to back on a fresh database (bench/common.py), `--commits` times per size, and again on
the same connection with `synchronous_commit` off: the difference is what making each commit durable
costs (its WAL flush), which the fanout pays once per batch. Reported per commit: wall time, this
process's CPU and the CPU of the writer's PostgreSQL backend. With `synchronous_commit` off the WAL
writer process flushes in the background, many commits at a time, and its CPU is not counted. The
engine never turns `synchronous_commit` off for durable events; the second mode only measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from bench.common import cpu_seconds, fresh_database
from bench.projections import edits, joins
from engine.log.store import EventStore, create_db_engine
from engine.log.writer import LogWriter
from engine.model.events import NewEvent

ROOMS = 10
WARM_COMMITS = 50


def batches(size: int, commits: int, sent: int) -> list[list[NewEvent]]:
    """Built before the clock starts: making the events is the caller's work, not the commit's."""
    return [edits(ROOMS, size, sent + n * size) for n in range(commits)]


async def commit_all(writer: LogWriter, planned: list[list[NewEvent]]) -> None:
    for batch in planned:
        await writer.append(batch)


async def measure(url: str, sizes: list[int], commits: int) -> list[dict[str, Any]]:
    db_engine = create_db_engine(url)
    try:
        await EventStore(db_engine).append(joins(ROOMS, 2))
        writer = EventStore(db_engine).writer()
        # The writer's own connection: its backend is the one whose CPU a commit costs.
        async with writer._connection() as raw:
            backend = psutil.Process(await raw.fetchval("SELECT pg_backend_pid()"))
        rows, sent = [], 0
        for durable in (True, False):
            async with writer._connection() as raw:
                await raw.execute(f"SET synchronous_commit = {'on' if durable else 'off'}")
                # A writer that reconnected would have dropped the setting and moved to another backend.
                assert await raw.fetchval("SELECT pg_backend_pid()") == backend.pid
            for size in sizes:
                await commit_all(writer, batches(size, WARM_COMMITS, sent))
                sent += size * WARM_COMMITS
                planned = batches(size, commits, sent)
                sent += size * commits
                wall, python, database = time.perf_counter(), time.process_time(), cpu_seconds([backend])
                await commit_all(writer, planned)
                wall, python = time.perf_counter() - wall, time.process_time() - python
                database = cpu_seconds([backend]) - database
                rows.append(
                    {
                        "events_per_commit": size,
                        "synchronous_commit": "on" if durable else "off (measuring only)",
                        "commits": commits,
                        "wall_us": round(wall / commits * 1e6),
                        "process_cpu_us": round(python / commits * 1e6),
                        "backend_cpu_us": round(database / commits * 1e6),
                    }
                )
                print(rows[-1], flush=True)
        await writer.close()
        return rows
    finally:
        await db_engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--sizes", default="1,8", help="events per commit, e.g. 1,8")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = asyncio.run(measure(fresh_database(), [int(n) for n in args.sizes.split(",")], args.commits))
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
