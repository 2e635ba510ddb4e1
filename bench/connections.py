"""Idle connections: memory per open WebSocket and connections opened per second, collab-engine against
the bare relay of bench/fanout.py, in one run.

    python bench/connections.py [--connections 5000] [--concurrency 50] [--rev NAME:REVISION]

Each server runs pinned to core 0 (collab-engine with its PostgreSQL), this client on core 1. Each
connection is its own user (the engine's per-user cap is not what is measured) and joins nothing.
After a warm-up of 200 connections opened and closed, the server's resident memory is read, then
`--connections` are opened, `--concurrency` handshakes at a time: connections/s is that count over
the time to open them all, and memory per connection is the growth of the server process's resident
set (PostgreSQL's is not counted: an idle WebSocket holds no database session) two seconds after the
last one opened, divided by their number. `--rev` also runs collab-engine as a commit has it (see
bench/fanout.py), to measure a change before and after in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.settings import Settings  # noqa: E402
from api.tokens import mint_token  # noqa: E402
from bench.common import free_port, fresh_database, pin_database_server  # noqa: E402
from bench.fanout import SECRET, Variant, checkout, start_server, stop_server, wait_ready  # noqa: E402

WARM_UP = 200
NO_CAPS = {"MAX_CONNECTIONS": "1000000", "MAX_CONNECTIONS_PER_USER": "1000000"}


async def open_many(url: str, first: int, count: int, concurrency: int) -> list[ClientConnection]:
    """`count` connections, user ids from `first` on, at most `concurrency` handshakes at a time."""
    settings = Settings(_env_file=None, jwt_secret_key=SECRET)  # type: ignore[call-arg]
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> ClientConnection:
        token = mint_token(settings, sub=f"idle-{i}", secret=SECRET)
        async with gate:
            return await connect(f"{url}?token={token}", open_timeout=60, ping_interval=None)

    return list(await asyncio.gather(*(one(first + i) for i in range(count))))


async def close_all(clients: list[ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


async def measure(
    target: str, database_url: str | None, args: argparse.Namespace, logs: Path, variant: Variant
) -> dict[str, object]:
    port = free_port()
    label = f"{target} [{variant.name}]" if variant.name else target
    log = logs / f"{label.replace(' ', '_')}.log"
    server = start_server(target, port, database_url, log, NO_CAPS, root=variant.root)
    try:
        await wait_ready(port, server)
        url = f"ws://127.0.0.1:{port}/api/v1/ws"
        process = psutil.Process(server.pid)
        await close_all(await open_many(url, 0, WARM_UP, args.concurrency))
        await asyncio.sleep(2)
        before = process.memory_info().rss
        started = time.perf_counter()
        clients = await open_many(url, WARM_UP, args.connections, args.concurrency)
        opening = time.perf_counter() - started
        await asyncio.sleep(2)
        after = process.memory_info().rss
        await close_all(clients)
        row: dict[str, object] = {
            "server": label,
            "connections": args.connections,
            "opened_per_s": round(args.connections / opening),
            "rss_before_mib": round(before / 2**20, 1),
            "rss_after_mib": round(after / 2**20, 1),
            "kib_per_connection": round((after - before) / 1024 / args.connections, 1),
        }
        print(row, flush=True)
        return row
    finally:
        stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--rev",
        action="append",
        default=[],
        metavar="NAME:REVISION",
        help="also run collab-engine as a commit has it, e.g. 'before:HEAD~1'",
    )
    args = parser.parse_args()
    with contextlib.suppress(ValueError, OSError):  # each connection is a file descriptor
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    os.sched_setaffinity(0, {1})
    logs = Path(tempfile.mkdtemp(prefix="collab-connections-"))
    variants = [Variant("")] + [checkout(spec, logs) for spec in args.rev]
    # Each engine on a database of its own; a revision's server migrates its own to its head.
    urls = [fresh_database(migrate=v.root == ROOT) for v in variants]
    pin_database_server({0})
    rows = [
        asyncio.run(measure("collab-engine", url, args, logs, variant))
        for variant, url in zip(variants, urls, strict=True)
    ]
    rows.append(asyncio.run(measure("baseline relay", None, args, logs, Variant(""))))
    keys = ["server", "connections", "opened_per_s", "rss_before_mib", "rss_after_mib", "kib_per_connection"]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; server logs in {logs}")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    relay = rows[-1]
    for engine in rows[:-1]:
        for key, what in (("kib_per_connection", "memory per connection"), ("opened_per_s", "opened/s")):
            ratio = float(str(engine[key])) / max(float(str(relay[key])), 1e-9)
            print(f"{what}: {engine['server']} / relay = {ratio:.2f}")


if __name__ == "__main__":
    main()
