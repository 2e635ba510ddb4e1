"""Fanout under load: collab-engine (every message durably persisted) against a minimal in-memory relay.

    python bench/fanout.py [--seconds 5] [--rates 1000,2000,5000,open] [--nodes 1,2] [--json out.json]

10 rooms x 20 members; 2 senders per room send `cell_update` with a `client_msg_id`, each to its own
cell, paced to the offered rate (open loop: sends do not wait for replies); `open` sends as fast as
the sockets take them. By default every sender sends at the same instants, one message each per
interval, so the server meets a burst of 20 messages (400 deliveries) every 20 ms at 1,000 msgs/s;
`--arrivals even` spreads the senders' sends evenly over the interval instead, as independent
clients' would be. Every member, the sender included, receives each `cell_updated`. Reported per
step: offered and achieved msgs/s, deliveries/s, p50/p99 latency from send to each delivery, lost
and duplicated deliveries, and the server side's CPU per delivery and cores used (under 0.9 at a
server's best step, the load generator rather than the server set that rate; the report says so),
and its slow windows: the 100 ms windows of sends of which some delivery took over 20 ms, with the
UTC times of the worst five, to be lined up with the server's and PostgreSQL's logs.
The server runs pinned to core 0 and this load generator to core 1 (`os.sched_setaffinity`), so
they do not share a core; both servers run the same workload in one run. The generator's 200
connections are bench/raw_client.py's: a delivery is timed as its bytes are read, and the generator
reads 40,000 frames a second without becoming the limit; `--client websockets` uses the websockets
library's client instead, as every run before 2026-12-05 evening did.
Before the measured steps each server gets one unmeasured second at 500 msgs/s, and during a step
the generator's garbage collector is off (bench/common.py `collections_paused`): both used to show
up in the measured p99 as the generator's stalls, not the server's.

`--nodes 1,2` adds a run with two collab-engine processes on one fresh database, both on core 0: each
room's members alternate between the nodes (sender 0 on the first, sender 1 on the second), so every
message reaches half its room through the other node's log follower. Those rows also give the
cross-node extra latency (p50/p99 of deliveries on the other node than the sender's, minus those on
the sender's node). For every collab-engine row `disordered` counts `cell_updated` frames whose room
seq was not above the last one that member saw (each member must see its room in seq order), and
`gaps` those that skipped seqs: no other event enters a room while steps run, so a gap is a lost event,
while `lost` also counts deliveries that were merely late (they still arrive during the next step).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.settings import Settings  # noqa: E402
from api.tokens import mint_token  # noqa: E402
from bench import raw_client  # noqa: E402
from bench.common import (  # noqa: E402
    collections_paused,
    cpu_seconds,
    database_processes,
    drop_database,
    free_port,
    fresh_database,
    percentile,
    pin_database_server,
    revision_tree,
)

Client = ClientConnection | raw_client.RawClient
SECRET = "bench-secret-" + "k" * 64
SATURATED_CORES = 0.9  # a pinned server side using less than this at its best step was not the limit
WARMUP_RATE = 500.0  # msgs/s sent for `--warmup` seconds before the measured steps
UNLIMITED = str(10**9)
WINDOW_SECONDS = 0.1  # sends are grouped by when they were sent, to find when the tail happened
SLOW_WINDOW_MS = 20.0  # a window is slow when a delivery of one of its sends took longer than this


class Deliveries:
    """Which member got which send, and how late: a flag per member and send of its room, and a log.

    One dict of every delivery of a step passed 700,000 keys after 17 s at 2,000 msgs/s, and copying
    it as it grew stopped this generator's reads for 20-30 ms, which then showed at that instant in
    every server's latency, the relay's too. A dict per member did no better: each member gets as
    many frames as the others, so all 200 dicts grew at the same instant. Flags in a bytearray per
    member, indexed by the send's number within its room, are never rehashed, and the log is a list."""

    def __init__(self) -> None:
        self._seen: dict[int, bytearray] = {}
        self.log: list[tuple[str, int, float]] = []  # client_msg_id, member, latency ms

    def add(self, member: int, slot: int, cmid: str, latency: float) -> bool:
        """Record a delivery; False if this member already had this send."""
        seen = self._seen.get(member)
        if seen is None:
            seen = self._seen[member] = bytearray(4096)
        if slot >= len(seen):
            seen.extend(bytes(max(slot + 1 - len(seen), len(seen))))
        if seen[slot]:
            return False
        seen[slot] = 1
        self.log.append((cmid, member, latency))
        return True

    def __len__(self) -> int:
        return len(self.log)

    def items(self) -> Iterator[tuple[tuple[str, int], float]]:
        for cmid, member, latency in self.log:
            yield (cmid, member), latency


@dataclass
class Step:
    """Deliveries of one offered rate, keyed by client_msg_id."""

    name: str
    # send time, sender's node, the send's number in its room
    sent_at: dict[str, tuple[float, int, int]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    same_latencies: list[float] = field(default_factory=list)  # the member is on the sender's node
    cross_latencies: list[float] = field(default_factory=list)  # ... on another node
    delivered: Deliveries = field(default_factory=Deliveries)
    duplicates: int = 0
    sequenced: int = 0  # cell_updated frames that carried a room seq
    disordered: int = 0
    gaps: int = 0  # seqs skipped: only cell_updated events enter a room while steps run
    last_delivery: float = 0.0


class Stalls:
    """What else stalled while a step ran: this generator's own loop (a tick that woke late) and the
    VM (time the hypervisor took from each core, "steal", per tenth of a second). Either shows in every
    server's latency, the relay's too; a server near saturation takes long to drain the backlog."""

    TICK = 0.005
    LATE_MS = 10.0  # a tick later than this is kept

    def __init__(self) -> None:
        self.late: list[tuple[float, float]] = []  # wall time the tick was due, ms late
        self.stolen: list[tuple[float, list[float]]] = []  # wall time of the tenth, ms stolen per core

    async def watch(self) -> None:
        steal = [cpu.steal for cpu in psutil.cpu_times(percpu=True)]
        ticks = 0
        while True:
            due = time.perf_counter() + self.TICK
            await asyncio.sleep(self.TICK)
            late = (time.perf_counter() - due) * 1000
            if late > self.LATE_MS:
                self.late.append((time.time() - late / 1000, late))
            ticks += 1
            if ticks % round(WINDOW_SECONDS / self.TICK) == 0:
                now = [cpu.steal for cpu in psutil.cpu_times(percpu=True)]
                stolen = [(b - a) * 1000 for a, b in zip(steal, now, strict=True)]
                if max(stolen) > self.LATE_MS:
                    self.stolen.append((time.time() - WINDOW_SECONDS, stolen))
                steal = now

    def near(self, at: float, span: float) -> str:
        """What of it overlapped the wall-clock interval [at, at + span): a late tick covers the time
        from when it was due until it woke, a tenth of steal the tenth it was read over."""
        found = [
            f"generator {late:.0f} ms late" for t, late in self.late if t < at + span and t + late / 1000 > at
        ]
        found += [
            "steal " + "/".join(f"{ms:.0f}" for ms in stolen) + " ms"
            for t, stolen in self.stolen
            if t < at + span and t + WINDOW_SECONDS > at
        ]
        return f" ({'; '.join(found)})" if found else ""


def slow_windows(step: Step, started: float, started_wall: float, stalls: Stalls) -> list[tuple[float, str]]:
    """The step's slow windows: each one's worst latency, and when it began (UTC, to line up with the
    server's and PostgreSQL's logs) with any stall of the generator or the VM then. A p99 over a
    minute says how long the tail is, not when it came or whose it was."""
    worst: dict[int, float] = {}
    for (cmid, _member), latency in step.delivered.items():
        window = int((step.sent_at[cmid][0] - started) / WINDOW_SECONDS)
        worst[window] = max(worst.get(window, 0.0), latency)
    return [
        (
            latency,
            time.strftime("%H:%M:%S", time.gmtime(at))
            + f".{int(at * 10) % 10}"
            + stalls.near(at, latency / 1000),
        )
        for window, latency in worst.items()
        if latency > SLOW_WINDOW_MS
        for at in [started_wall + window * WINDOW_SECONDS]
    ]


def start_server(
    target: str,
    port: int,
    database_url: str | None,
    log: Path,
    extra_env: dict[str, str] | None = None,
    workers: int = 0,
    root: Path = ROOT,
    pinned: bool = True,
    enter: Sequence[str] = (),
    host: str = "127.0.0.1",
) -> subprocess.Popen[bytes]:
    """One server process pinned to core 0 (unless not `pinned`); with `workers`, `collab serve
    --workers N` unpinned instead. An engine listens on `host`, its command prefixed with `enter`
    (another host's namespace: bench/vanish.py).
    The engine always runs as `collab serve` runs it (the operator's command: it migrates, and picks
    the protocols and limits of api/server.py), so a `--rev` is measured with its own server setup;
    the relay runs on the same loop, HTTP parser and WebSocket implementation."""
    env = {
        **os.environ,
        **({"DATABASE_URL": database_url} if database_url else {}),
        "JWT_SECRET_KEY": SECRET,
        "WEBSOCKET_REQUESTS_PER_MINUTE": UNLIMITED,
        "WEBSOCKET_REQUESTS_PER_HOUR": UNLIMITED,
        "VOLATILE_MESSAGES_PER_SECOND": UNLIMITED,
        "FANOUT_MAX_QUEUE": "100000",
        **(extra_env or {}),
    }
    env.update(LOG_LEVEL="warning", WEBSOCKET_PING_INTERVAL="3600", WEBSOCKET_PING_TIMEOUT="3600")
    if target == "collab-engine":
        # `python -m` from the variant's tree: a `--rev` runs its own code, not the installed one.
        command = [*enter, sys.executable, "-m", "api.cli", "serve", "--host", host, "--port", str(port)]
        command += ["--workers", str(workers)] if workers else []
    else:
        command = [
            sys.executable, "-m", "uvicorn", "bench.baseline_relay:app", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
            "--ws-per-message-deflate", "false", "--ws-ping-interval", "3600", "--ws-ping-timeout", "3600",
            "--log-level", "warning",
        ]  # fmt: skip
    if pinned and not workers:
        command = ["taskset", "-c", "0", *command]
    return subprocess.Popen(command, cwd=root, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def start_projector(database_url: str | None, log: Path, *, pinned: bool) -> subprocess.Popen[bytes]:
    """`collab projections run`, pinned to core 0 beside the server (its CPU is the server side's)
    unless the server is unpinned too."""
    env = {**os.environ, **({"DATABASE_URL": database_url} if database_url else {}), "JWT_SECRET_KEY": SECRET}
    command = [sys.executable, "-m", "api.cli", "projections", "run"]
    command = ["taskset", "-c", "0", *command] if pinned else command
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while b"this node projects now" not in log.read_bytes():  # it leads before any server starts
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"`collab projections run` did not start; see {log}")
        time.sleep(0.1)
    return server


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Stop gracefully, or kill after 30 s: a graceful stop can outlast a saturated run's backlog."""
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(30)


async def wait_ready(port: int, server: subprocess.Popen[bytes], host: str = "127.0.0.1") -> None:
    for _ in range(600):
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


class Load:
    """The clients: member `m` of a room connects to node `m % len(ports)`, so senders sit on every node."""

    def __init__(
        self,
        ports: list[int],
        rooms: int,
        members: int,
        senders: int,
        server_cpu: Callable[[], float] = lambda: 0.0,
        *,
        stagger: bool = False,
        raw: bool = True,
    ) -> None:
        self.urls = [f"ws://127.0.0.1:{port}/api/v1/ws" for port in ports]
        self.server_cpu = server_cpu  # CPU seconds the server side (processes and database) has used
        # Spread the senders' first sends over one interval: an even stream instead of one burst of
        # every sender per interval (which, with many slow senders, measures the burst's queueing).
        self.stagger = stagger
        self.rooms, self.members, self.senders = rooms, members, senders
        self.settings = Settings(_env_file=None, jwt_secret_key=SECRET)  # type: ignore[call-arg]
        # The lean client (bench/raw_client.py) unless `--client websockets` asks for the library's.
        self.raw = raw
        self.clients: list[Client] = []
        self.last_seq: list[int] = []  # per client: the highest room seq it has seen
        self.step: Step | None = None
        self._readers: list[asyncio.Task[None]] = []

    def node_of(self, index: int) -> int:
        return index % self.members % len(self.urls)

    async def connect_all(self) -> None:
        for r in range(self.rooms):
            for m in range(self.members):
                user = f"u{r}-{m}"
                token = mint_token(self.settings, sub=user, secret=SECRET)
                # No client keepalive (the raw client sends no pings either): an overloaded server
                # answers pings late, and the point is to measure it, not to disconnect from it.
                url = f"{self.urls[m % len(self.urls)]}?token={token}"
                index = len(self.clients)
                client: Client
                if self.raw:
                    client = await raw_client.connect(url, functools.partial(self._received, index))
                else:
                    client = await connect(url, max_queue=None, open_timeout=30, ping_interval=None)
                    self._readers.append(asyncio.create_task(self._read(client, index)))
                self.clients.append(client)
                self.last_seq.append(0)
                await client.send(orjson.dumps({"type": "join_room", "room_id": f"bench-{r}"}).decode())
        await asyncio.sleep(1.0)  # let the joins' room_state/user_joined traffic settle

    async def _read(self, ws: ClientConnection, index: int) -> None:
        """`--client websockets`: each frame timed when this connection's task gets to it."""
        with contextlib.suppress(Exception):
            while True:
                frame = await ws.recv(decode=False)
                self._received(index, frame, time.perf_counter())

    def _received(self, index: int, frame: bytes, now: float) -> None:
        step = self.step
        if step is None or b'"cell_updated"' not in frame:
            return
        message = orjson.loads(frame)
        seq = message.get("seq")
        if seq is not None:  # each client is in one room: one sequence to follow
            step.sequenced += 1
            if seq <= self.last_seq[index]:
                step.disordered += 1
            elif self.last_seq[index] and seq > self.last_seq[index] + 1:
                step.gaps += 1
            self.last_seq[index] = max(seq, self.last_seq[index])
        cmid = message.get("client_msg_id")
        sent = step.sent_at.get(cmid)
        if sent is None:
            return
        sent_time, sender_node, slot = sent
        latency = (now - sent_time) * 1000
        if not step.delivered.add(index, slot, cmid, latency):
            step.duplicates += 1
            return
        step.latencies.append(latency)
        if sender_node == self.node_of(index):
            step.same_latencies.append(latency)
        else:
            step.cross_latencies.append(latency)
        step.last_delivery = now

    async def run_step(self, name: str, rate: float | None, seconds: float) -> dict[str, object]:
        step = self.step = Step(name)
        senders = [(r, s) for r in range(self.rooms) for s in range(self.senders)]
        cpu_before = self.server_cpu()
        started, started_wall = time.perf_counter(), time.time()
        stalls, steal_before = Stalls(), psutil.cpu_times().steal
        watching = asyncio.create_task(stalls.watch())
        deadline = started + seconds

        async def send_loop(room: int, s: int) -> None:
            index = room * self.members + s
            ws, node = self.clients[index], self.node_of(index)
            interval = len(senders) / rate if rate else 0.0
            offset = interval * (room * self.senders + s) / len(senders) if self.stagger else 0.0
            next_at, i = started + offset, 0
            while (now := time.perf_counter()) < deadline:
                if interval and now < next_at:
                    await asyncio.sleep(next_at - now)
                cmid = f"{name}-{room}-{s}-{i}"
                message = {
                    "type": "cell_update", "sheet_id": f"sheet-{room}", "cell_id": f"C{s + 1}",
                    "value": i, "room": f"bench-{room}", "client_msg_id": cmid,
                }  # fmt: skip
                step.sent_at[cmid] = (time.perf_counter(), node, i * self.senders + s)
                await ws.send(orjson.dumps(message).decode())
                next_at += interval
                i += 1

        await asyncio.gather(*(send_loop(r, s) for r, s in senders))
        sent_seconds = time.perf_counter() - started
        expected = len(step.sent_at) * self.members
        drain_until = time.perf_counter() + 10
        # Polling, on purpose: the readers stay free of bookkeeping for the benchmark's sake.
        while len(step.delivered) < expected and time.perf_counter() < drain_until:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        watching.cancel()
        span = max(step.last_delivery - started, sent_seconds)
        cpu = self.server_cpu() - cpu_before  # the drain included: the work of every delivery
        row: dict[str, object] = {
            "step": name,
            "offered_msgs_per_s": rate or "open",
            "sent_msgs_per_s": round(len(step.sent_at) / sent_seconds),
            "deliveries_per_s": round(len(step.delivered) / span),
            "p50_ms": round(percentile(step.latencies, 50), 2),
            "p99_ms": round(percentile(step.latencies, 99), 2),
            "lost": expected - len(step.delivered),
            "duplicated": step.duplicates,
            "disordered": step.disordered if step.sequenced else "n/a",
            "gaps": step.gaps if step.sequenced else "n/a",
            "closed": sum(1 for ws in self.clients if ws.close_code is not None),
            "cpu_us_per_delivery": round(cpu * 1e6 / max(len(step.delivered), 1), 1),
            # Under 1 at the unthrottled step: the server side had CPU to spare, so the load
            # generator, not the server, set that step's rate.
            "server_cores": round(cpu / span, 2),
        }
        slow = slow_windows(step, started, started_wall, stalls)
        row["slow_windows"] = len(slow)
        row["generator_late_ms"] = round(max((late for _, late in stalls.late), default=0.0))
        row["steal_ms"] = round((psutil.cpu_times().steal - steal_before) * 1000)  # both cores, whole step
        row["worst_windows"] = [f"{at} {latency:.0f} ms" for latency, at in sorted(slow, reverse=True)[:5]]
        if len(self.urls) > 1:
            for q in (50, 99):
                extra = percentile(step.cross_latencies, q) - percentile(step.same_latencies, q)
                row[f"cross_extra_p{q}_ms"] = round(extra, 2)
        return row

    async def close(self) -> None:
        self.step = None  # what still arrives belongs to no step: not even parsed
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        # All at once: after a saturated step each close waits behind its socket's backlog, up to the
        # close timeout, and one after another that added up to minutes.
        await asyncio.gather(*(client.close() for client in self.clients), return_exceptions=True)


async def write_paths(load: Load, ports: list[int]) -> None:
    """Print each node's appender figures for the whole run: with several nodes appending, the
    single-round-trip path fails whenever another node moved the log head (engine/log/writer.py)."""
    token = mint_token(load.settings, sub="bench-admin", roles=["admin"], secret=SECRET)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        for port in ports:
            reply = await http.get(f"http://127.0.0.1:{port}/api/v1/ws/stats/detailed")
            body = reply.json()
            own = body["nodes"][body["node_id"]]["appender"]
            print(f"node on :{port}: batches {own['batches']}, events {own['events']},", end=" ")
            print(f"write paths {own['write_paths']},", end=" ")
            latency = own["commit_latency_ms"]
            p50, p99 = bucket_bound(latency, 50), bucket_bound(latency, 99)
            print(f"commit latency p50 <= {p50} ms, p99 <= {p99} ms,", end=" ")
            writes = body.get("socket_writes")  # absent before the held writes (a --rev)
            if writes and writes["writes"]:
                print(f"frames per socket write {writes['frames'] / writes['writes']:.2f}", end="")
            print(flush=True)


def bucket_bound(histogram: dict[str, Any], q: float) -> str:
    """The upper bound of the histogram bucket holding the q-th percentile (buckets count each value
    once, in the first bucket whose bound is at least the value)."""
    wanted = histogram["count"] * q / 100
    seen = 0
    for bound, count in histogram["buckets"].items():
        seen += count
        if count and seen >= wanted:
            return str(bound)
    return "-"


async def measure(
    target: str,
    nodes: int,
    database_url: str | None,
    args: argparse.Namespace,
    logs: Path,
    variant: Variant | None = None,
    workers: int = 0,
) -> list[dict[str, object]]:
    label = target if nodes == 1 else f"{target} x{nodes}"
    if workers and target == "collab-engine":
        label = f"collab serve --workers {workers}"
    variant = variant or Variant("")
    if variant.name:
        label = f"{label} [{variant.name}]"
    ports = [free_port() for _ in range(nodes)]
    servers: list[subprocess.Popen[bytes]] = []
    try:
        if variant.projector:  # first, so it holds the projecting lock and the server's runner stands by
            log = logs / f"{label.replace(' ', '_')}-projector.log"
            servers.append(start_projector(database_url, log, pinned=not workers))
        # One at a time: each node upgrades the schema at start, and a node announces itself to the
        # ones already up, so all know their peers before the first message.
        for i, port in enumerate(ports):
            log = logs / f"{label.replace(' ', '_')}-{i}.log"
            servers.append(start_server(target, port, database_url, log, variant.env, workers, variant.root))
            await wait_ready(port, servers[-1])
        if workers:
            await asyncio.sleep(3)  # every worker up, not just the first to listen
        processes = [psutil.Process(server.pid) for server in servers]

        def server_cpu() -> float:
            # The database's share too for the engine: persisting is part of its work per message.
            database = database_processes() if target == "collab-engine" else []
            children = [c for p in processes for c in p.children(recursive=True)]
            return cpu_seconds(processes + children + database)

        even = args.arrivals == "even"
        load = Load(
            ports, args.rooms, args.members, args.senders, server_cpu, stagger=even, raw=args.client == "raw"
        )
        await load.connect_all()
        # Unmeasured: a room's first edits open its streams and caches, which stalled the first step's
        # first tenth of a second and so set its p99 (a cost paid once per room, not per message).
        await load.run_step("warmup", WARMUP_RATE, args.warmup)
        rows = []
        for rate in args.rates.split(","):
            offered = None if rate == "open" else float(rate)
            with collections_paused():
                step = await load.run_step(f"s{rate}", offered, args.seconds)
                rows.append({"server": label, **step, "arrivals": args.arrivals, "client": args.client})
            print(rows[-1], flush=True)
        # Closed first: this process's loop, still reading a saturated step's backlog, could leave the
        # stats request unsent past the server's keep-alive timeout, which then drops the connection.
        await load.close()
        if target == "collab-engine":
            await write_paths(load, ports)
        return rows
    finally:
        for server in servers:
            server.terminate()  # all at once, then each waited for
        for server in servers:
            stop_server(server)


def report(rows: list[dict[str, object]]) -> str:
    keys = ["server", "offered_msgs_per_s", "sent_msgs_per_s", "deliveries_per_s", "p50_ms", "p99_ms"]
    keys += ["lost", "duplicated", "disordered", "gaps", "closed", "cpu_us_per_delivery", "server_cores"]
    keys += ["slow_windows", "generator_late_ms", "steal_ms", "cross_extra_p50_ms", "cross_extra_p99_ms"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "-")) for k in keys) + " |" for r in rows]
    lines += [
        f"worst windows of {r['server']} at {r['offered_msgs_per_s']} (sent from, UTC; worst delivery): "
        + ", ".join(map(str, worst))
        for r in rows
        if isinstance(worst := r.get("worst_windows"), list) and worst
    ]
    best_rows: dict[str, dict[str, object]] = {}
    for r in rows:
        held = best_rows.get(str(r["server"]))
        if held is None or int(str(r["deliveries_per_s"])) > int(str(held["deliveries_per_s"])):
            best_rows[str(r["server"])] = r
    best = {server: int(str(r["deliveries_per_s"])) for server, r in best_rows.items()}
    cores = {server: float(str(r["server_cores"])) for server, r in best_rows.items()}
    relay = max(best.get("baseline relay", 0), 1)
    lines.append("")
    for server in sorted(t for t in best if t != "baseline relay"):
        lines.append(f"saturation deliveries/s: {server} / baseline relay = {best[server] / relay:.2f}")
    spare = sorted(server for server, used in cores.items() if used < SATURATED_CORES)
    if spare:
        lines.append(
            f"not saturated at its best step (server side under {SATURATED_CORES} of a core): "
            f"{', '.join(f'{s} {cores[s]:.2f}' for s in spare)}; the load generator set that rate"
        )
    if "collab-engine" in best and "collab-engine x2" in best:
        ratio = best["collab-engine x2"] / max(best["collab-engine"], 1)
        lines.append(f"saturation deliveries/s: two nodes / one node = {ratio:.2f}")
    one, two = "collab serve --workers 1", "collab serve --workers 2"
    if one in best and two in best:
        lines.append(
            f"saturation deliveries/s: two workers / one worker = {best[two] / max(best[one], 1):.2f}"
        )
    return "\n".join(lines)


def run_workers(args: argparse.Namespace, counts: list[int], variants: list[Variant]) -> None:
    """Unpinned: the server's workers, PostgreSQL and this load generator share both cores. Each
    `--variant` (settings only) runs every worker count again."""
    runs = [(workers, variant) for variant in [Variant(""), *variants] for workers in counts]
    database_urls = [fresh_database() for _ in runs]
    logs = Path(tempfile.mkdtemp(prefix="collab-fanout-"))
    rows: list[dict[str, object]] = []
    for (workers, variant), database_url in zip(runs, database_urls, strict=True):
        rows += asyncio.run(measure("collab-engine", 1, database_url, args, logs, variant, workers=workers))
        drop_database(database_url)
    rows += asyncio.run(measure("baseline relay", 1, None, args, logs, workers=1))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, unpinned,", end=" ")
    print(f"sends {args.arrivals}, {args.client} client; server logs in {logs}")
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


@dataclass(frozen=True)
class Variant:
    """Another engine to run in the same invocation: other settings, or the code of another commit."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    root: Path = ROOT
    projector: bool = False  # the projection tables kept by `collab projections run`, not the server


def parse_variant(spec: str) -> Variant:
    """'eager:PROJECTION_INTERVAL_MS=0,X=1' -> the engine with those settings."""
    name, _, pairs = spec.partition(":")
    env = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
    if not name or not env:
        raise SystemExit(f"--variant {spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE]")
    return Variant(name, env)


def checkout(spec: str, into: Path) -> Variant:
    """'before:HEAD~1' -> the engine as that commit has it (bench/common.py `revision_tree`)."""
    name, tree = revision_tree(spec, into)
    return Variant(name, root=tree)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="1000,2000,5000,open")
    parser.add_argument("--nodes", default="1", help="collab-engine node counts to run, e.g. 1,2")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="unmeasured seconds at 500 msgs/s before the measured steps (default 1)",
    )
    parser.add_argument(
        "--arrivals",
        choices=["together", "even"],
        default="together",
        help="together: every sender sends at the same instants, a burst of one message per sender "
        "each interval (the default, as every run before); even: the senders' sends spread evenly "
        "over the interval, as independent clients' would be",
    )
    parser.add_argument(
        "--client",
        choices=["raw", "websockets"],
        default="raw",
        help="raw: the lean client of bench/raw_client.py, each frame timed as its bytes are read (the "
        "default); websockets: the websockets library's asyncio client, each frame timed when its "
        "connection's reader task gets to it (every run before 2026-12-05 evening)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="also run one engine node with these settings, e.g. 'eager:PROJECTION_INTERVAL_MS=0'",
    )
    parser.add_argument(
        "--rev",
        action="append",
        default=[],
        metavar="NAME:REVISION",
        help="also run one engine node as a commit has it, e.g. 'before:HEAD~1'",
    )
    parser.add_argument(
        "--projector-process",
        action="store_true",
        help="also run one engine node whose projection tables `collab projections run` keeps",
    )
    parser.add_argument(
        "--workers",
        default="",
        help="instead: `collab serve --workers N` for each N (e.g. 1,2) and the relay, all unpinned",
    )
    parser.add_argument(
        "--database-cores",
        default="0",
        help="the cores PostgreSQL may use: 0 (beside the server, the default) or 0,1 (unpinned)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if len(set(args.rates.split(","))) != len(args.rates.split(",")):
        parser.error("--rates: each rate once (a step's messages are named after its rate)")
    projector = [Variant("projector process", projector=True)] if args.projector_process else []
    if args.workers:
        variants = [parse_variant(v) for v in args.variant] + projector
        run_workers(args, [int(n) for n in args.workers.split(",")], variants)
        return
    node_counts = [int(n) for n in args.nodes.split(",")]
    logs = Path(tempfile.mkdtemp(prefix="collab-fanout-"))
    variants = [parse_variant(v) for v in args.variant] + [checkout(r, logs) for r in args.rev]
    variants += projector
    # Every collab-engine run gets its own fresh database, so none starts on another's log.
    database_urls = [fresh_database() for _ in node_counts]
    # A revision's server migrates its own database: this code's head may be newer than it knows.
    variant_urls = [fresh_database(migrate=v.root == ROOT) for v in variants]
    # The server keeps to core 0 and this load generator to core 1; PostgreSQL (its postmaster, whose
    # backends inherit its affinity) to `--database-cores`, core 0 beside the server unless told.
    pin_database_server({int(core) for core in args.database_cores.split(",")})
    os.sched_setaffinity(0, {1})
    rows: list[dict[str, object]] = []
    for nodes, database_url in zip(node_counts, database_urls, strict=True):
        rows += asyncio.run(measure("collab-engine", nodes, database_url, args, logs))
        drop_database(database_url)  # or autovacuum works through its log during the next run
    for variant, database_url in zip(variants, variant_urls, strict=True):
        rows += asyncio.run(measure("collab-engine", 1, database_url, args, logs, variant))
        drop_database(database_url)
    rows += asyncio.run(measure("baseline relay", 1, None, args, logs))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores,", end=" ")
    print(f"sends {args.arrivals}, {args.client} client; server logs in {logs}")
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
