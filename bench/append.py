"""Durable appends per second and latency: one transaction per event vs the group-commit appender.

    python bench/append.py [--seconds 5] [--submitters 1,16,256] [--json out.json]
    python bench/append.py --processes 1,2,4 [--submitters 256] [--seconds 5]
    python bench/append.py --processes 1,2,4 --partitions 1,16 --rooms 256

Each submitter appends ~200-byte JSON events back to back for the given time. Both modes run in one
process against the same fresh database (embedded PostgreSQL unless BENCH_DATABASE_URL is set), with
synchronous_commit on: every counted append was durable when it returned.

`--processes` measures what adding nodes does to the log's write rate: for each count N, N processes
(each an engine node's appender: one writer connection, group commit) share the submitters and one
fresh database, and measure the same window. Reported per N: the cluster's events/s and its ratio to
one process, latency over all submitters, the batches on each write path (a head that another process
moved sends a batch from the one-round-trip path to a read, then to the locked path), and the CPU
the appending processes and PostgreSQL used in the window, so a run limited by the cores rather than
by the log's lock says so.

`--partitions` repeats that for logs created with each number of partitions (engine/log/partitions.py):
each process then runs one writer per partition, with its own head row, lock and commit, and the
ratio column compares every row with one process on a log of one partition. The events go to
`--rooms` rooms (default 10), numbered by submitter; give at least as many rooms as partitions, or
some partitions get no events. `--owned` gives each process the rooms of its own share of the
partitions (partition modulo the process count), as if every partition had one writer in the whole
cluster and each node appended only to its own: what routing appends to their partition's owner
would give, measured before building it. `--routed` measures the engine's routed appends
(`ROUTE_APPENDS`, engine/cluster/routed_appends.py) with their own cost: every process appends to
every room, holds its share of the partitions' write locks, and hands the batches of the partitions
it does not hold to their holder on NATS (`--nats-url`, default the machine's), which appends them in
its own lanes and answers each event's outcome. The NATS server's CPU is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import cpu_seconds, database_processes, fresh_database, percentile
from engine.cluster.bus import NatsBus, log_subject
from engine.cluster.routed_appends import AppendRouting
from engine.log.appender import Appender
from engine.log.partition_locks import Standing
from engine.log.partitions import ensure_partitions, partition_of
from engine.log.store import EventStore, create_db_engine
from engine.model.events import Committed, NewEvent

PAYLOAD = {
    "sheet_id": "sheet_123",
    "cell_id": "B12",
    "value": "Quarterly revenue 1,234,567.89",
    "formula": "=SUM(B2:B11)",
    "user_id": "user_42",
    "username": "jane_doe",
    "version": 1642161000001,
}  # ~200 bytes as JSON


ROOMS = 10  # the rooms the events go to: `--rooms`
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
OWN_ROOMS: list[int] = []  # with `--owned`: the rooms of this process's partitions


def event(submitter: int, i: int) -> NewEvent:
    room = OWN_ROOMS[submitter % len(OWN_ROOMS)] if OWN_ROOMS else submitter % ROOMS
    return NewEvent(f"room:bench-{room}", "CellUpdated", {**PAYLOAD, "i": i}, metadata={"s": submitter})


async def drive(
    submitters: int,
    seconds: float,
    append: Callable[[NewEvent], Awaitable[object]],
    warmup: float = 1.0,
    *,
    first: int = 0,
    measure_from: float | None = None,
    latencies: list[float] | None = None,
) -> dict[str, float]:
    """Closed loop: each submitter appends, waits for the durable outcome, appends again. The first
    `warmup` seconds (connections, prepared statements, caches) are run but not counted.

    Processes that measure one window together pass its start as `measure_from` (wall-clock time)
    and number their submitters from `first`, so that each process writes other streams."""
    latencies = [] if latencies is None else latencies
    start = time.time() + warmup if measure_from is None else measure_from
    deadline = start + seconds

    async def submitter(n: int) -> None:
        i = 0
        while (started := time.time()) < deadline:
            outcome = await append(event(n, i))
            if started >= start:
                latencies.append((time.time() - started) * 1000)
            assert isinstance(outcome, Committed)
            i += 1

    await asyncio.gather(*(submitter(n) for n in range(first, first + submitters)))
    elapsed = time.time() - start
    return {
        "submitters": submitters,
        "events": len(latencies),
        "events_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


async def run(
    url: str, seconds: float, counts: list[int], max_batch: int, max_wait_ms: float
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for submitters in counts:
        # (a) one transaction per event; a pool as large as PostgreSQL comfortably serves.
        db_engine = create_db_engine(url, pool_size=min(submitters, 40), command_timeout=60)
        store = EventStore(db_engine)

        async def single(e: NewEvent, store: EventStore = store) -> object:
            return (await store.append([e]))[0]

        rows.append({"mode": "one transaction per event", **await drive(submitters, seconds, single)})
        await db_engine.dispose()

        # (b) group commit through the appender (one writer connection).
        db_engine = create_db_engine(url, pool_size=2)
        appender = Appender(EventStore(db_engine), max_batch=max_batch, max_wait=max_wait_ms / 1000)
        await appender.start()
        result = await drive(submitters, seconds, appender.append)
        await appender.stop()
        stats = appender.stats
        rows.append(
            {
                "mode": "group commit",
                **result,
                "mean_batch": stats.events / max(stats.batches, 1),
                "paths": appender.write_paths,
            }
        )
        await db_engine.dispose()
    return rows


async def node_worker(
    url: str, first: int, submitters: int, seconds: float, measure_from: float, owner: str = "-"
) -> None:
    """One appending process of `--processes`: its share of the submitters through its own appender
    (a writer connection per partition). Prints its latencies and write paths as JSON for the parent
    to merge."""
    db_engine = create_db_engine(url, pool_size=2)
    store = EventStore(db_engine)
    partitions = await store.partitions()
    await db_engine.dispose()
    routed = owner.startswith("routed:")
    owner = owner.removeprefix("routed:")
    if owner != "-" and not routed:  # "k/N": process k of N writes only partitions p with p % N == k
        index, count = (int(n) for n in owner.split("/"))
        OWN_ROOMS[:] = [
            r for r in range(ROOMS) if partition_of(f"room:bench-{r}", partitions) % count == index
        ]
    db_engine = create_db_engine(url, pool_size=partitions + 2)  # the writers, and routing's locks
    appender = Appender(EventStore(db_engine), max_batch=1000, partitions=partitions)
    await appender.start()
    latencies: list[float] = []
    routing = bus = None
    if routed:
        index, count = (int(n) for n in owner.split("/"))
        bus, routing = await routed_appends(db_engine, appender, Standing(index, count), name=owner)
    await drive(
        submitters, seconds, appender.append, first=first, measure_from=measure_from, latencies=latencies
    )
    if routing is not None:
        # The others may still be sending this process their last events: answer them until all end.
        await asyncio.sleep(2.0)
    await appender.stop()
    if routing is not None and bus is not None:
        await routing.stop()
        await bus.stop()
    await db_engine.dispose()
    stats = appender.stats
    result = {
        "latencies": latencies,
        "paths": appender.write_paths,
        "batches": stats.batches,
        "requests": routing.forwards if routing is not None else 0,
        "not_taken": routing.not_taken if routing is not None else 0,
    }
    sys.stdout.write(json.dumps(result))


async def routed_appends(
    db_engine: AsyncEngine, appender: Appender, standing: Standing, *, name: str
) -> tuple[NatsBus, AppendRouting]:
    """This process's routing as a node has it, once it holds its share of the partitions."""
    subject = await log_subject(db_engine)

    async def stem() -> str:
        return subject

    bus = NatsBus(NATS_URL, stem, f"bench-{name}")
    await bus.start(lambda _events: None)
    routing = AppendRouting(
        db_engine,
        appender,
        bus,
        share=lambda: standing,
        timeout=11.0,
        deliver=lambda _events: None,
        poll_seconds=0.1,
    )
    await routing.start()
    appender.route = routing
    share = standing.share(appender.partitions)
    async with asyncio.timeout(30):
        while len(routing.held) < share or routing.serving != routing.held:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return bus, routing


def run_processes(
    counts: list[int],
    submitters: int,
    seconds: float,
    partitions: int = 1,
    owned: bool = False,
    routed: bool = False,
) -> list[dict[str, object]]:
    """For each process count, one fresh database (its log in `partitions`) and that many appending
    processes measuring one window; the CPU of those processes and of PostgreSQL is sampled over the
    same window."""
    rows: list[dict[str, object]] = []
    for processes in counts:
        url = fresh_database()
        if (made := asyncio.run(ensure_partitions(url, partitions))) != partitions:
            raise SystemExit(f"the new log got {made} partitions, not {partitions}")
        warmup = 2.0 + 0.5 * processes  # process start-up, connections, prepared statements
        measure_from = time.time() + warmup
        shares = [
            submitters // processes + (1 if k < submitters % processes else 0) for k in range(processes)
        ]
        firsts = [sum(shares[:k]) for k in range(processes)]
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    url,
                    str(first),
                    str(share),
                    str(seconds),
                    repr(measure_from),
                    str(ROOMS),
                    f"routed:{k}/{processes}" if routed else f"{k}/{processes}" if owned else "-",
                ],
                stdout=subprocess.PIPE,
                env={**os.environ, "NATS_URL": NATS_URL},
            )
            for k, (first, share) in enumerate(zip(firsts, shares, strict=True))
        ]
        clients = [psutil.Process(w.pid) for w in workers]
        time.sleep(max(0.0, measure_from - time.time()))
        database = database_processes()
        bus = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "nats-server"] if routed else []
        before = (cpu_seconds(clients), cpu_seconds(database), cpu_seconds(bus))
        # CPU over most of the window: at its very end the processes disconnect and their PostgreSQL
        # backends exit, and an exited process's time can no longer be read.
        sampled = seconds * 0.9
        time.sleep(sampled)
        after = (cpu_seconds(clients), cpu_seconds(database), cpu_seconds(bus))
        results = [json.loads(w.communicate()[0]) for w in workers]
        if any(w.returncode for w in workers):
            raise SystemExit(f"an appending process failed at {processes} processes")
        latencies = [ms for r in results for ms in r["latencies"]]
        # A process that holds no partition (routed, more processes than partitions) wrote nothing.
        paths = {name: sum(r["paths"].get(name, 0) for r in results) for name in ("known", "read", "locked")}
        rows.append(
            {
                "partitions": f"{partitions}, routed"
                if routed
                else f"{partitions}, owned"
                if owned
                else partitions,
                "processes": processes,
                "submitters": submitters,
                "events_per_s": len(latencies) / seconds,
                "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99),
                "mean_batch": len(latencies) / max(sum(r["batches"] for r in results), 1),
                "paths": paths,
                "appenders_cpu_s": (after[0] - before[0]) / sampled,
                "database_cpu_s": (after[1] - before[1]) / sampled,
                "nats_cpu_s": (after[2] - before[2]) / sampled,
                "requests": sum(r["requests"] for r in results),
                "not_taken": sum(r["not_taken"] for r in results),
            }
        )
    return rows


def report_processes(rows: list[dict[str, object]]) -> str:
    lines = [
        "| partitions | processes | submitters | events/s | vs 1 process, 1 partition | p50 ms | p99 ms | "
        "mean batch | batches known / read / locked | CPU cores: appenders / PostgreSQL | stopped by |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    one = next(
        (float(r["events_per_s"]) for r in rows if r["processes"] == 1 and r["partitions"] == 1),  # type: ignore[arg-type]
        None,
    )
    for r in rows:
        paths = r["paths"]
        assert isinstance(paths, dict)
        ratio = f"{float(r['events_per_s']) / one:.2f}x" if one else "-"  # type: ignore[arg-type]
        cells = [
            r["partitions"],
            r["processes"],
            r["submitters"],
            f"{r['events_per_s']:,.0f}",
            ratio,
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['mean_batch']:.1f}",
            f"{paths['known']} / {paths['read']} / {paths['locked']}",
            f"{r['appenders_cpu_s']:.2f} / {r['database_cpu_s']:.2f}"
            + (f" / NATS {r['nats_cpu_s']:.2f}, {r['requests']:,} requests" if r.get("requests") else "")
            + (f", {r['not_taken']:,} written where asked (no holder)" if r.get("not_taken") else ""),
            limit(r),
        ]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def limit(row: dict[str, object]) -> str:
    """What stopped a run: the machine's cores when the appenders, PostgreSQL and NATS kept nearly all
    of them busy; the heads' row locks when a fifth or more of the batches queued on one; else
    neither (the submitters' round trips)."""
    paths = row["paths"]
    assert isinstance(paths, dict)
    busy = 0.0
    for key in ("appenders_cpu_s", "database_cpu_s", "nats_cpu_s"):
        value = row[key]
        assert isinstance(value, float | int)
        busy += value
    cores = os.cpu_count() or 1
    locked = paths["locked"] / max(1, sum(paths.values()))
    if busy >= 0.85 * cores:
        return f"CPU: {busy:.2f} of {cores} cores"
    if locked >= 0.2:
        return f"the heads' locks: {locked:.0%} of batches"
    return f"neither: {busy:.2f} of {cores} cores, {locked:.0%} of batches locked"


def report(rows: list[dict[str, object]]) -> str:
    lines = [
        "| mode | submitters | events/s | p50 ms | p99 ms | mean batch |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        batch = f"{r['mean_batch']:.1f}" if "mean_batch" in r else "1"
        lines.append(
            f"| {r['mode']} | {r['submitters']} | {r['events_per_s']:,.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {batch} |"
        )
    by = {(r["mode"], r["submitters"]): float(r["events_per_s"]) for r in rows}  # type: ignore[arg-type]
    for n in sorted({int(r["submitters"]) for r in rows}):  # type: ignore[call-overload]
        single, grouped = by.get(("one transaction per event", n)), by.get(("group commit", n))
        if single and grouped:
            lines.append(
                f"\ngroup commit / one transaction per event at {n} submitters: {grouped / single:.1f}x"
            )
    return "\n".join(lines)


def event_loop_runner() -> Callable[..., Any]:
    """uvloop's, as a node's server runs on (api/server.py), when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run
    return uvloop.run


def main() -> None:
    global ROOMS, NATS_URL
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--submitters", default="1,16,256")
    parser.add_argument("--max-batch", type=int, default=1000)
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument("--processes", help="appending processes on one database, e.g. 1,2,4")
    parser.add_argument(
        "--partitions", default="1", help="with --processes: logs of these partitions, e.g. 1,16"
    )
    parser.add_argument("--rooms", type=int, default=10, help="rooms the events go to (default 10)")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--owned",
        action="store_true",
        help="with --partitions: each process appends to its own partitions only",
    )
    parser.add_argument(
        "--routed",
        action="store_true",
        help="with --partitions: every process appends everywhere, handing other owners' events on NATS",
    )
    parser.add_argument(
        "--nats-url",
        default=NATS_URL,
        help="for --routed (default: $NATS_URL, else the machine's)",
    )
    parser.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    ROOMS, NATS_URL = args.rooms, args.nats_url
    if args.worker:
        url, first, share, seconds, measure_from, rooms, owner = args.worker
        ROOMS = int(rooms)
        event_loop_runner()(
            node_worker(url, int(first), int(share), float(seconds), float(measure_from), owner)
        )
        return
    if args.processes:
        submitters = int(args.submitters) if args.submitters.isdigit() else 256
        counts = [int(n) for n in args.processes.split(",")]
        rows = [
            row
            for partitions in (int(p) for p in args.partitions.split(","))
            for row in run_processes(
                counts,
                submitters,
                args.seconds,
                partitions,
                args.owned and partitions > 1,
                args.routed and partitions > 1,
            )
        ]
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
        print(report_processes(rows))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        return
    url = fresh_database()
    counts = [int(n) for n in args.submitters.split(",")]
    rows = event_loop_runner()(run(url, args.seconds, counts, args.max_batch, args.max_wait_ms))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, database {url.split('@')[-1]}")
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
