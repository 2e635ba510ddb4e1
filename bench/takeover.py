"""How long a killed node's partitions go without a holder: nodes on one log of several partitions,
on NATS with `ROUTE_APPENDS`, one of them killed with SIGKILL (no goodbye), timed until the survivors
hold every partition's projecting and writing lock again.

    python bench/takeover.py [--nodes 3] [--partitions 4] [--runs 5] [--heartbeat 5] [--dead-after 15]
                             [--vanish] [--rev NAME:REVISION ...]

With `--vanish` the node's host vanishes instead (it needs root and ip): the oldest node runs in a
network namespace of its own, joined to the machine by a veth pair, on a PostgreSQL of the
benchmark's own that listens on loopback and on the pair, with a NATS server of its own on the pair,
and the pair's link is taken down (bench/vanish.py), so its database sessions and its bus go silent
and its process lives on. Timed from the link going down; a run that has not settled after three times
`--dead-after` and a minute is reported as that bound.

Each run starts the nodes on a fresh database (the first splits its new log into `--partitions`),
waits until every partition's two locks are held and every node holds its share, kills the oldest
node (it holds the most) at a random point of a heartbeat interval, and polls `pg_locks` every 10 ms
until the dead node's locks are gone and the survivors hold every partition again. In between, its
partitions are projected by nobody (the REST reads of "now" lag for them) and their appends are
written wherever they arrive. `--rev` measures another commit's nodes in the same invocation,
alternating with this tree's run by run. The nodes are not pinned: this measures waiting, not CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bus import report  # noqa: E402
from bench.common import free_port, fresh_database, revision_tree  # noqa: E402
from bench.fanout import start_server, stop_server, wait_ready  # noqa: E402
from bench.vanish import Host, can_make_hosts, nats_server, other_host, tcp_postgres  # noqa: E402
from engine.cluster.routed_appends import LOCK_CLASS as WRITING  # noqa: E402
from engine.readmodels.runner import LOCK_CLASS as PROJECTING  # noqa: E402

_HELD = """
SELECT l.classid::bigint AS lock_class, l.pid, count(*) AS held FROM pg_locks AS l
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.classid::bigint = ANY($1::bigint[])
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
GROUP BY l.classid, l.pid
"""


async def held(conn: asyncpg.Connection) -> dict[int, list[int]]:
    """Per lock class, how many partitions each holding session holds."""
    found: dict[int, list[int]] = {PROJECTING: [], WRITING: []}
    for row in await conn.fetch(_HELD, [PROJECTING, WRITING]):
        found[int(row["lock_class"])].append(int(row["held"]))
    return found


def settled(holders: dict[int, list[int]], partitions: int, nodes: int) -> bool:
    """Every partition held once, by as many holders as there are nodes (or partitions)."""
    return all(
        sum(counts) == partitions and len(counts) == min(nodes, partitions) for counts in holders.values()
    )


async def one_run(
    tree: Path, url: str, args: argparse.Namespace, logs: Path, tag: str, other: Host | None
) -> dict[str, float]:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    env = {
        "LOG_PARTITIONS": str(args.partitions),
        "NATS_URL": args.nats_url,
        "ROUTE_APPENDS": "true",
        "NODE_HEARTBEAT_SECONDS": str(args.heartbeat),
        "NODE_DEAD_AFTER_SECONDS": str(args.dead_after),
    }
    servers: list[subprocess.Popen[bytes]] = []
    conn = await asyncpg.connect(dsn)
    try:
        for i in range(args.nodes):
            port = free_port()
            log = logs / f"{tag}-{i}.log"
            if other is not None and i == 0:  # the oldest, on the host that vanishes
                node_url = make_url(url).set(host=other.gateway).render_as_string(hide_password=False)
                server = start_server(
                    "collab-engine", port, node_url, log, env, root=tree, pinned=False,
                    enter=other.enter, host=other.address,
                )  # fmt: skip
                servers.append(server)
                await wait_ready(port, server, other.address)
            else:
                servers.append(start_server("collab-engine", port, url, log, env, root=tree, pinned=False))
                await wait_ready(port, servers[-1])
        async with asyncio.timeout(120):
            while not settled(await held(conn), args.partitions, args.nodes):  # noqa: ASYNC110 (polled)
                await asyncio.sleep(0.05)
        # Killed at a random point of the heartbeat and of the reads between beats.
        await asyncio.sleep(args.heartbeat * (1 + random.random()))
        # The oldest goes: it holds the extra partitions.
        if other is not None:
            other.vanish()
        else:
            servers[0].send_signal(signal.SIGKILL)
            servers[0].wait()
        return await taken_over(conn, args)
    finally:
        await conn.close()
        for server in servers:
            if server.poll() is None:
                stop_server(server)


async def taken_over(conn: asyncpg.Connection, args: argparse.Namespace) -> dict[str, float]:
    """Seconds from now until each lock class is held in full again, after its holder's locks went
    (a killed node's backends end a moment after it); the bound for one that never is."""
    gone = time.monotonic()
    bound = args.dead_after * 3 + 60
    released: set[int] = set()
    taken: dict[int, float] = {}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(bound):
            while len(taken) < 2:
                for lock_class, counts in (await held(conn)).items():
                    if sum(counts) < args.partitions:
                        released.add(lock_class)
                    elif lock_class in released and lock_class not in taken:
                        taken[lock_class] = time.monotonic() - gone
                await asyncio.sleep(0.01)
    return {"projecting_s": taken.get(PROJECTING, bound), "writing_s": taken.get(WRITING, bound)}


def summary(name: str, runs: list[dict[str, float]]) -> dict[str, object]:
    row: dict[str, object] = {"code": name, "runs": len(runs)}
    for key in ("projecting_s", "writing_s"):
        values = [run[key] for run in runs]
        each = " / ".join(f"{v:.2f}" for v in values)
        row[key.replace("_s", "")] = f"median {statistics.median(values):.2f} s ({each})"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--heartbeat", type=float, default=5.0, help="NODE_HEARTBEAT_SECONDS (the default)")
    parser.add_argument(
        "--dead-after", type=float, default=15.0, help="NODE_DEAD_AFTER_SECONDS (the default)"
    )
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--vanish", action="store_true", help="the node's host vanishes (root and ip)")
    parser.add_argument("--rev", action="append", default=[], help="NAME:REVISION, measured alongside")
    args = parser.parse_args()
    if args.vanish and not can_make_hosts():
        parser.error("--vanish takes root and ip (Debian's iproute2)")
    logs = Path(tempfile.mkdtemp(prefix="collab-takeover-"))
    trees = [("now", ROOT), *(revision_tree(spec, logs) for spec in args.rev)]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
    with contextlib.ExitStack() as stack:
        other = None
        if args.vanish:  # a server of its own that the other host reaches; the runs' databases are there
            other = stack.enter_context(other_host())
            addresses = ("127.0.0.1", other.gateway)
            server_url = stack.enter_context(tcp_postgres(ROOT / ".data", addresses, [other.network]))
            os.environ["BENCH_DATABASE_URL"] = server_url
            args.nats_url = stack.enter_context(nats_server(other.gateway))  # lost with the link, too
        for run in range(args.runs):
            for name, tree in trees:
                if other is not None:
                    other.reappear()
                url = fresh_database(migrate=False)  # each tree's first node migrates it to its own head
                results[name].append(asyncio.run(one_run(tree, url, args, logs, f"{name}-{run}", other)))
                print(name, run, results[name][-1], flush=True)
    fault = "host vanished" if args.vanish else "killed"
    print(
        f"python {sys.version.split()[0]}; {args.nodes} nodes, {args.partitions} partitions, {fault}; "
        f"logs in {logs}"
    )
    print(report([summary(name, runs) for name, runs in results.items()]))


if __name__ == "__main__":
    main()
