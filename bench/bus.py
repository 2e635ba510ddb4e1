"""Cross-node delivery: three collab-engine nodes on one database, on NOTIFY and on a NATS bus.

    python bench/bus.py [--seconds 10] [--rate 1000] [--nodes 3] [--drop-every 100] [--nats-url URL]
                        [--partitions 1]

Every room has one member on each node, and each member sends `cell_update`s (paced so that the
whole run appends `--rate` events a second), so every event is delivered on its own node and on the
others. Three runs on fresh databases: nodes waking each other with NOTIFY (each then reads the log),
nodes on NATS, and nodes on NATS through a proxy that drops one bus message in `--drop-every` on its
way to each node (1% by default: a real network fault, the nodes run unchanged). Reported per run:
the cross-node latency (send to delivery at a member on another node than the sender's) against the
same-node one, log-read statements a second per node (range reads plus head polls, from each node's
`/ws/stats/detailed`), the hop (per event and node, how long after the event's first delivery on
any node a member on that node got it: the cross-node delivery itself, without the commit every
copy waits for), lost / duplicated / out-of-order deliveries, and with drops the repair latency:
the delivery latency of exactly the events whose bus message the proxy dropped. `--partitions` is the
`LOG_PARTITIONS` of the nodes, so each run's fresh log is created with that many partitions; `--modes`
adds `routed`, nodes on NATS with `ROUTE_APPENDS` (each partition written by one node). The nodes
run pinned to core 0 and this load generator to core 1, as in bench/fanout.py, or with `--unpinned`
all of them on every core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.tokens import mint_token  # noqa: E402
from bench.common import free_port, fresh_database, percentile, pin_database_server  # noqa: E402
from bench.fanout import SECRET, Load, Step, start_server, stop_server, wait_ready  # noqa: E402


@dataclass
class LossyBusProxy:
    """A TCP proxy in front of NATS that drops every `every`-th message the server sends to this
    client (MSG and HMSG frames; everything else passes), and remembers the events it dropped."""

    upstream: tuple[str, int]
    every: int
    port: int = 0
    seen: int = 0
    dropped_messages: int = 0
    dropped: set[str] = field(default_factory=set)  # client_msg_ids of the events in dropped messages
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.upstream)
        tasks = [
            asyncio.create_task(self._pipe(client_r, server_w)),
            asyncio.create_task(self._messages(server_r, client_w)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        client_w.close()
        server_w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()

    async def _messages(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            body = b""
            if line.startswith((b"MSG ", b"HMSG ")):
                body = await reader.readexactly(int(line.split()[-1]) + 2)
                self.seen += 1
                if self.every and self.seen % self.every == 0:
                    self.dropped_messages += 1
                    for event in body[:-2].split(b"\n"):
                        with contextlib.suppress(ValueError, KeyError, TypeError):
                            self.dropped.add(orjson.loads(event)["m"]["client_msg_id"])
                    continue
            writer.write(line + body)
            await writer.drain()


async def delivery_figures(ports: list[int], admin: str, part: str = "delivery") -> list[dict[str, Any]]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {admin}"}, timeout=30) as http:
        figures = []
        for port in ports:
            body = (await http.get(f"http://127.0.0.1:{port}/api/v1/ws/stats/detailed")).json()
            figures.append(body["nodes"][body["node_id"]][part])
        return figures


async def writers_elected(ports: list[int], admin: str, partitions: int) -> list[set[int]]:
    """Routed: wait until each partition has one writer and the first node has handed every other
    its share (it takes every partition while it is alone); the partitions each node writes."""
    async with asyncio.timeout(60):
        while True:
            held = [
                set(a["routing"]["writes_partitions"])
                for a in await delivery_figures(ports, admin, "appender")
            ]
            one_each = sum(len(h) for h in held) == partitions == len(set().union(*held))
            if one_each and sum(1 for h in held if h) == min(len(ports), partitions):
                return held
            await asyncio.sleep(0.2)


def hop_latencies(step: Step, load: Load) -> list[float]:
    """Cross-node delivery itself: per event and node, how long after the event's first delivery (on
    whichever node wrote it, or had it first) a member on that node got it. The time to commit, common
    to every node's copy, is left out; what remains is the bus, the other node's loop and its send.
    Events that reached one node only are left out (they count as lost), and with drops a hop
    includes the repair."""
    firsts: dict[str, dict[int, float]] = {}
    for (cmid, member), latency in step.delivered.items():
        nodes = firsts.setdefault(cmid, {})
        node = load.node_of(member)
        nodes[node] = min(latency, nodes.get(node, latency))
    hops: list[float] = []
    for nodes in firsts.values():
        if len(nodes) > 1:
            first, *later = sorted(nodes.values())
            hops += [latency - first for latency in later]
    return hops


async def run(mode: str, database_url: str, args: argparse.Namespace, logs: Path) -> dict[str, object]:
    host, _, port = args.nats_url.removeprefix("nats://").partition(":")
    proxies: list[LossyBusProxy] = []
    ports = [free_port() for _ in range(args.nodes)]
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for i, node_port in enumerate(ports):
            env: dict[str, str] = {"LOG_PARTITIONS": str(args.partitions)}
            if mode == "nats, routed":
                env["ROUTE_APPENDS"] = "true"
            if mode != "notify":
                url = args.nats_url
                if mode == "nats, drops":
                    proxies.append(LossyBusProxy((host, int(port or 4222)), args.drop_every))
                    await proxies[-1].start()
                    url = proxies[-1].url
                env["NATS_URL"] = url
            log = logs / f"{mode.replace(', ', '-')}-{i}.log"
            servers.append(
                start_server("collab-engine", node_port, database_url, log, env, pinned=not args.unpinned)
            )
            await wait_ready(node_port, servers[-1])
        load = Load(ports, args.rooms, args.nodes, args.nodes, stagger=True, raw=args.client == "raw")
        await load.connect_all()
        admin = mint_token(load.settings, sub="bench-admin", roles=["admin"], secret=SECRET)
        writers: list[set[int]] = []
        if mode == "nats, routed":
            writers = await writers_elected(ports, admin, args.partitions)
        before = await delivery_figures(ports, admin)
        started = time.perf_counter()
        row = await load.run_step("bus", args.rate, args.seconds)
        elapsed = time.perf_counter() - started
        step = load.step  # before closing, which ends the step
        after = await delivery_figures(ports, admin)
        await load.close()
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            stop_server(server)
        for proxy in proxies:
            await proxy.stop()

    assert step is not None
    hops = hop_latencies(step, load)
    reads = [
        (a["log_reads"] + a["head_reads"] - b["log_reads"] - b["head_reads"]) / elapsed
        for a, b in zip(after, before, strict=True)
    ]
    result: dict[str, object] = {
        "mode": mode,
        "partitions": args.partitions,
        "client": args.client,
        "events_per_s": row["sent_msgs_per_s"],
        "deliveries": len(step.delivered),
        "same_p50_ms": round(percentile(step.same_latencies, 50), 2),
        "same_p99_ms": round(percentile(step.same_latencies, 99), 2),
        "cross_p50_ms": round(percentile(step.cross_latencies, 50), 2),
        "cross_p99_ms": round(percentile(step.cross_latencies, 99), 2),
        "hop_p50_ms": round(percentile(hops, 50), 2),
        "hop_p99_ms": round(percentile(hops, 99), 2),
        "log_reads_per_s_per_node": " / ".join(f"{r:.1f}" for r in reads),
        "lost": row["lost"],
        "duplicated": row["duplicated"],
        "disordered": row["disordered"],
        "gaps": row["gaps"],
    }
    if writers:
        result["partitions_written_per_node"] = " / ".join(str(len(h)) for h in writers)
    if proxies:
        repaired = [
            latency
            for (cmid, member), latency in step.delivered.items()
            if cmid in proxies[load.node_of(member)].dropped
        ]
        result["bus_messages_dropped"] = sum(p.dropped_messages for p in proxies)
        result["bus_messages_seen"] = sum(p.seen for p in proxies)
        result["repaired_deliveries"] = len(repaired)
        result["repair_p50_ms"] = round(percentile(repaired, 50), 1) if repaired else "n/a"
        result["repair_p99_ms"] = round(percentile(repaired, 99), 1) if repaired else "n/a"
    print(result, flush=True)
    return result


def report(rows: list[dict[str, object]]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="events appended a second, all nodes")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument(
        "--client",
        choices=["raw", "websockets"],
        default="raw",
        help="the load's connections: bench/raw_client.py's (the default) or the websockets library's, "
        "as every run before 2026-12-05 evening",
    )
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--drop-every", type=int, default=100, help="the proxy drops one bus message in N")
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument(
        "--modes",
        default="notify,nats,nats-drops",
        help="of notify, nats, nats-drops and routed (NATS with ROUTE_APPENDS: each partition written by one "
        "node, the others handing it their appends)",
    )
    parser.add_argument("--partitions", type=int, default=1, help="LOG_PARTITIONS of each run's new log")
    parser.add_argument(
        "--unpinned",
        action="store_true",
        help="nodes, PostgreSQL and this load generator all on every core, as the scheduler places them",
    )
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="collab-bus-"))
    cores = os.sched_getaffinity(0)
    pin_database_server(cores if args.unpinned else {0})
    os.sched_setaffinity(0, cores if args.unpinned else {1})
    names = {"notify": "notify", "nats": "nats", "nats-drops": "nats, drops", "routed": "nats, routed"}
    modes = [names[m] for m in args.modes.split(",")]
    databases = [fresh_database() for _ in modes]  # each run on a log of its own
    rows = [asyncio.run(run(mode, url, args, logs)) for mode, url in zip(modes, databases, strict=True)]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; server logs in {logs}")
    print(report(rows))


if __name__ == "__main__":
    main()
