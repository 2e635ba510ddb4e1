"""What the projector runner costs per event folded, in the serving process and in PostgreSQL.

    python bench/projections.py [--rooms 10] [--members 20] [--events 200] [--steps 200]
    python bench/projections.py --rev before:HEAD~1 [--runs 2]

The fanout benchmark's log is built on a fresh database (bench/common.py): `--rooms` rooms of
`--members` members who joined, a sheet per room, and two members of each room editing a cell of
their own. Then, `--steps` times, `--events` more edits are appended (not measured) and one runner
step folds them (measured): the CPU time of this process and of the runner's PostgreSQL backend,
per event folded. 200 events a step are what the fanout's node folds every `PROJECTION_INTERVAL_MS`
(100 ms) at 2,000 msgs/s. The fanout measures the whole server, where the runner is a tenth of its
CPU and runs of one code differ by more than that; this measures the runner alone.

`--rev NAME:REVISION` also measures the runner of another commit (from a temporary `git worktree`,
this virtualenv serving it), the two alternating `--runs` times, each run in a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
from sqlalchemy import text

# Only what every commit's bench/common.py has: a `--rev` child imports the other commit's.
from bench.common import cpu_seconds, fresh_database
from engine.log.store import EventStore, create_db_engine
from engine.model.catalogue import CellUpdated, SheetClaimed, UserJoinedRoom
from engine.model.events import NewEvent, Origin
from engine.readmodels.runner import ProjectorRunner

ROOT = Path(__file__).resolve().parents[1]
NODE = "bench"


def joins(rooms: int, members: int) -> list[NewEvent]:
    """Every room's sheet claimed and its members joined, as the fanout benchmark's rooms are."""
    events: list[NewEvent] = []
    for r in range(rooms):
        room = f"room-{r}"
        events.append(SheetClaimed(f"sheet-{r}", room).claim(Origin(NODE, f"user-{r}-0")))
        for m in range(members):
            user, connection = f"user-{r}-{m}", f"conn-{r}-{m}"
            origin = Origin(NODE, user, connection, f"join-{r}-{m}")
            events.append(UserJoinedRoom(room, user, f"User {r}-{m}", None, connection).new(origin))
    return events


def edits(rooms: int, count: int, start: int) -> list[NewEvent]:
    """`count` cell updates from two members of each room in turn, each to a cell of its own."""
    events: list[NewEvent] = []
    for n in range(start, start + count):
        r, sender = n % rooms, (n // rooms) % 2
        user = f"user-{r}-{sender}"
        origin = Origin(NODE, user, f"conn-{r}-{sender}", f"edit-{n}")
        updated = CellUpdated(
            f"room-{r}", f"sheet-{r}", f"A{sender + 1}", n, None, user, f"User {r}-{sender}"
        )
        events.append(updated.new(origin, cells=updated.writes(None)))
    return events


async def measure(url: str, rooms: int, members: int, per_step: int, steps: int) -> dict[str, Any]:
    """One run on the fresh database `url`: the runner's CPU over `steps` steps of `per_step` new events."""
    db_engine = create_db_engine(url)
    store = EventStore(db_engine)
    try:
        await store.append(joins(rooms, members))
        runner = ProjectorRunner(db_engine, min_interval=0.0, page=max(1000, per_step))
        async with db_engine.connect() as conn:
            backend = psutil.Process((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            await conn.rollback()
            await runner.step(conn)  # the joins: start-up, not measured
            sent = 0
            for _ in range(5):  # warm: the views cached, the statements prepared
                await store.append(edits(rooms, per_step, sent))
                sent += per_step
                await runner.step(conn)
            python = database = 0.0
            folded = 0
            for _ in range(steps):
                await store.append(edits(rooms, per_step, sent))
                sent += per_step
                before_py, before_db = time.process_time(), cpu_seconds([backend])
                folded += await runner.step(conn)
                python += time.process_time() - before_py
                database += cpu_seconds([backend]) - before_db
        if not folded:
            raise SystemExit("the runner folded no events: nothing to measure")
        return {
            "events": folded,
            "steps": steps,
            "python_us_per_event": python / folded * 1e6,
            "database_us_per_event": database / folded * 1e6,
            "python_ms_per_step": python / steps * 1e3,
            "database_ms_per_step": database / steps * 1e3,
        }
    finally:
        await db_engine.dispose()


def run_child(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in a process of its own, on the code of `tree`."""
    command = [
        sys.executable, str(tree / "bench" / Path(__file__).name), "--child",
        "--rooms", str(args.rooms), "--members", str(args.members),
        "--events", str(args.events), "--steps", str(args.steps),
    ]  # fmt: skip
    out = subprocess.run(command, cwd=tree, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--events", type=int, default=200, help="events appended before each step")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rev", action="append", default=[], help="also measure a commit, NAME:REVISION")
    parser.add_argument("--runs", type=int, default=1, help="alternating runs of each code")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url = fresh_database()
        print(json.dumps(asyncio.run(measure(url, args.rooms, args.members, args.events, args.steps))))
        return
    from bench.common import revision_with  # this tree's, in the parent only

    into = Path(tempfile.mkdtemp(prefix="collab-proj-"))
    trees = [("now", ROOT)] + [revision_with(spec, into, Path(__file__)) for spec in args.rev]
    print(
        f"{args.rooms} rooms x {args.members} members, {args.events} events a step, {args.steps} steps\n"
        "| run | code | Python us / event | PostgreSQL us / event | Python ms / step "
        "| PostgreSQL ms / step |\n"
        "|---:|---|---:|---:|---:|---:|",
        flush=True,
    )
    for run in range(1, args.runs + 1):
        for name, tree in trees:
            r = run_child(tree, args)
            print(
                f"| {run} | {name} | {r['python_us_per_event']:.1f} | {r['database_us_per_event']:.1f} "
                f"| {r['python_ms_per_step']:.2f} | {r['database_ms_per_step']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
