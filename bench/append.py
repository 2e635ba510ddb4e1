"""Durable appends per second and latency: one transaction per event vs the group-commit appender.

    python bench/append.py [--seconds 5] [--submitters 1,16,256] [--json out.json]

Each submitter appends ~200-byte JSON events back to back for the given time. Both modes run in one
process against the same fresh database (embedded PostgreSQL unless BENCH_DATABASE_URL is set), with
synchronous_commit on: every counted append was durable when it returned.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_database, percentile
from engine.log.appender import Appender
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


def event(submitter: int, i: int) -> NewEvent:
    return NewEvent(
        f"room:bench-{submitter % 10}", "CellUpdated", {**PAYLOAD, "i": i}, metadata={"s": submitter}
    )


async def drive(
    submitters: int, seconds: float, append: Callable[[NewEvent], Awaitable[object]], warmup: float = 1.0
) -> dict[str, float]:
    """Closed loop: each submitter appends, waits for the durable outcome, appends again. The first
    `warmup` seconds (connections, prepared statements, caches) are run but not counted."""
    latencies: list[float] = []
    measure_from = time.perf_counter() + warmup
    deadline = measure_from + seconds

    async def submitter(n: int) -> None:
        i = 0
        while (started := time.perf_counter()) < deadline:
            outcome = await append(event(n, i))
            if started >= measure_from:
                latencies.append((time.perf_counter() - started) * 1000)
            assert isinstance(outcome, Committed)
            i += 1

    await asyncio.gather(*(submitter(n) for n in range(submitters)))
    elapsed = time.perf_counter() - measure_from
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
    by = {(r["mode"], r["submitters"]): r["events_per_s"] for r in rows}
    for n in sorted({r["submitters"] for r in rows}):  # type: ignore[type-var]
        single, grouped = by.get(("one transaction per event", n)), by.get(("group commit", n))
        if single and grouped:
            lines.append(
                f"\ngroup commit / one transaction per event at {n} submitters: {grouped / single:.1f}x"
            )  # type: ignore[operator]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--submitters", default="1,16,256")
    parser.add_argument("--max-batch", type=int, default=1000)
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    url = fresh_database()
    counts = [int(n) for n in args.submitters.split(",")]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    rows = runner(run(url, args.seconds, counts, args.max_batch, args.max_wait_ms))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, database {url.split('@')[-1]}")
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
