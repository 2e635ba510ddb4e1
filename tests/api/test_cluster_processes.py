"""The per-room guarantees across three real server processes on one database, whether the nodes
learn of each other's events by NOTIFY and a read of the log or on a NATS bus, whether the log
has one partition or four (`LOG_PARTITIONS`), and with each partition written by one node
(`ROUTE_APPENDS`): one order with contiguous seqs, one winner per cell
race, an idempotent retry through another node, a gapless resume on another node, rooms in every
partition at once, and no ghost after a node's death."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from api.settings import Settings
from api.tokens import mint_token
from engine.log.partitions import partition_of
from engine.model.streams import room_stream
from tests.api.conftest import SECRET, fresh_database, make_settings, receive, start_node_process
from tests.api.live_helpers import greet, join, of_type, send, until

HEARTBEAT = 0.5
DEAD_AFTER = 2.0
HANG_GUARD = 30.0  # bounds a wait that would otherwise hang; not a speed check


@dataclass
class Cluster:
    settings: Settings
    procs: list[asyncio.subprocess.Process]
    ports: list[int]
    mode: str
    partitions: int

    def connect(self, node: int, user: str) -> Any:
        token = mint_token(self.settings, sub=user, username=user, secret=SECRET)
        return connect(f"ws://127.0.0.1:{self.ports[node]}/api/v1/ws?token={token}")


@pytest.fixture(
    scope="module",
    params=[("notify", 1), ("nats", 1), ("notify", 4), ("nats", 4), ("routed", 4)],
    ids=["notify", "nats", "notify-4-partitions", "nats-4-partitions", "routed-4-partitions"],
)
async def cluster(request: pytest.FixtureRequest, server_url: str) -> AsyncIterator[Cluster]:
    mode, partitions = request.param
    extra: dict[str, object] = {}
    if mode in ("nats", "routed"):
        extra["nats_url"] = request.getfixturevalue("nats_url")
    if mode == "routed":  # each partition written by one node, the others handing it their appends
        extra["route_appends"] = True
    async with fresh_database(server_url, partitions=1) as url:  # the nodes split it
        options: dict[str, object] = {
            "node_heartbeat_seconds": HEARTBEAT,
            "node_dead_after_seconds": DEAD_AFTER,
            "websocket_requests_per_minute": 1_000_000,
            "websocket_requests_per_hour": 1_000_000,
            "log_partitions": partitions,  # the first node to start splits the new log
            **extra,
        }
        started = [await start_node_process(url, **options) for _ in range(3)]
        try:
            found = Cluster(
                make_settings(url), [p for p, _ in started], [port for _, port in started], mode, partitions
            )
            if mode == "routed":
                await writers_settled(found)
            yield found
        finally:
            for proc, _ in started:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


async def open_member(cluster: Cluster, node: int, user: str, room: str) -> tuple[ClientConnection, int]:
    ws = await cluster.connect(node, user)
    await greet(ws)
    state = await join(ws, room)
    return ws, int(state["seq"])


async def updates_seen(ws: ClientConnection, count: int) -> list[tuple[int, str]]:
    seen: list[tuple[int, str]] = []
    while len(seen) < count:
        message = await receive(ws)
        if message["type"] == "cell_updated":
            seen.append((message["seq"], message["cell_id"]))
    return seen


def rooms_in_every_partition(tag: str, partitions: int) -> list[str]:
    """One room id in each partition of a log of `partitions`."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        room = f"room-{tag}-{n}"
        found.setdefault(partition_of(room_stream(room), partitions), room)
        n += 1
    return [found[p] for p in range(partitions)]


async def node_figures(cluster: Cluster, part: str) -> list[dict[str, Any]]:
    token = mint_token(cluster.settings, sub="root", roles=["admin"], secret=SECRET)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        found = []
        for port in cluster.ports:
            body = (await http.get(f"http://127.0.0.1:{port}/api/v1/ws/stats/detailed")).json()
            found.append(body["nodes"][body["node_id"]][part])
        return found


async def delivery_figures(cluster: Cluster) -> list[dict[str, Any]]:
    return await node_figures(cluster, "delivery")


async def routing_figures(cluster: Cluster) -> list[dict[str, Any]]:
    return [appender["routing"] for appender in await node_figures(cluster, "appender")]


async def writers_settled(cluster: Cluster) -> None:
    """Wait until every partition has one writer and every node its share: the first node took them
    all, and hands the others' shares over once it sees them beat (with 4 partitions on 3 nodes, 2, 1
    and 1, so no node may be left without one)."""
    async with asyncio.timeout(HANG_GUARD):
        while True:
            held = [set(f["writes_partitions"]) for f in await routing_figures(cluster)]
            one_each = sum(len(h) for h in held) == cluster.partitions == len(set().union(*held))
            if one_each and sum(1 for h in held if h) == min(len(held), cluster.partitions):
                return
            await asyncio.sleep(0.2)


async def test_edits_through_three_nodes_reach_everyone_in_one_contiguous_order(cluster: Cluster) -> None:
    room = f"room-{uuid.uuid4().hex[:8]}"
    members = [await open_member(cluster, n, f"e{n}", room) for n in range(3)]
    before = await delivery_figures(cluster)
    routing_before = await routing_figures(cluster) if cluster.mode == "routed" else []
    per_member = 15
    await asyncio.gather(
        *(
            send(ws, {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": f"N{n}-{i}", "value": i})
            for i in range(per_member)
            for n, (ws, _) in enumerate(members)
        )
    )
    seen = await asyncio.gather(*(updates_seen(ws, 3 * per_member) for ws, _ in members))
    for ws, _ in members:
        await ws.close()
    assert seen[0] == seen[1] == seen[2]  # the same events in the same order on every node
    seqs = [seq for seq, _ in seen[0]]
    assert seqs == list(range(seqs[0], seqs[0] + 3 * per_member))

    writer = None
    if cluster.mode == "routed":
        partition = partition_of(room_stream(room), cluster.partitions)
        after = await routing_figures(cluster)
        (writer,) = [n for n, f in enumerate(after) if partition in f["writes_partitions"]]
    for n, (b, a) in enumerate(zip(before, await delivery_figures(cluster), strict=True)):
        assert a["via"] == ("notify" if cluster.mode == "notify" else "nats")
        if cluster.mode != "notify" and n != writer:
            # The other two nodes' 30 updates came on the bus; NOTIFY nodes read each from the log.
            # Routed, the writer of the room's partition committed them all, so it needs none.
            received = a["bus_events_received"] - b["bus_events_received"]
            assert a["bus_connected"] and received >= 2 * per_member
            reads = a["log_reads"] + a["held_reads"] - b["log_reads"] - b["held_reads"]
            assert reads <= 5  # a few at most, when the machine stalls past the repair grace
    if cluster.mode == "routed":
        # One node writes the room's partition: the other two handed it their 30 updates.
        for n, (b, a) in enumerate(zip(routing_before, after, strict=True)):
            written = a["events_written_for_others"] - b["events_written_for_others"]
            forwarded = a["batches_forwarded"] - b["batches_forwarded"]
            # (and maybe their leaves, and presence events of the users' own streams)
            if n == writer:
                assert written >= 2 * per_member
            else:
                assert forwarded >= 1
            assert a["batches_not_taken"] == b["batches_not_taken"]


async def test_a_race_on_one_cell_through_three_nodes_has_one_winner(cluster: Cluster) -> None:
    room = f"room-{uuid.uuid4().hex[:8]}"
    members = [await open_member(cluster, n, f"r{n}", room) for n in range(3)]
    base = {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": "A1", "room": room}
    await send(members[0][0], {**base, "value": "seed"})
    for ws, _ in members:
        await until(ws, of_type("cell_updated", value="seed"))
    await asyncio.gather(
        *(send(ws, {**base, "value": f"v{n}", "version": 1}) for n, (ws, _) in enumerate(members))
    )

    async def outcome(ws: ClientConnection, mine: str) -> str:
        while True:
            message = await receive(ws)
            if message["type"] == "error":
                assert message["code"] == "VERSION_CONFLICT"
                return "lost"
            if message["type"] == "cell_updated" and message["value"] == mine:
                return "won"

    results = await asyncio.gather(*(outcome(ws, f"v{n}") for n, (ws, _) in enumerate(members)))
    for ws, _ in members:
        await ws.close()
    assert sorted(results) == ["lost", "lost", "won"]


async def test_a_retry_through_another_node_is_acked_with_the_original_seq(cluster: Cluster) -> None:
    room = f"room-{uuid.uuid4().hex[:8]}"
    first, _ = await open_member(cluster, 0, "idem", room)
    watcher, _ = await open_member(cluster, 2, "watch", room)
    update = {
        "type": "cell_update",
        "sheet_id": f"s-{room}",
        "cell_id": "B2",
        "value": 7,
        "client_msg_id": "m-1",
    }
    await send(first, update)
    ack = (await until(first, of_type("ack")))[-1]
    await first.close()
    again, _ = await open_member(cluster, 1, "idem", room)  # the same user, through another node
    await send(again, update)
    repeated = (await until(again, of_type("ack")))[-1]
    assert repeated["seq"] == ack["seq"]
    await send(again, {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": "B3", "value": 8})
    seen = await until(watcher, of_type("cell_updated", cell_id="B3"))
    assert [m["cell_id"] for m in seen if m["type"] == "cell_updated"] == ["B2", "B3"]  # B2 applied once
    await again.close()
    await watcher.close()


async def test_a_member_resumes_on_another_node_without_a_gap(cluster: Cluster) -> None:
    room = f"room-{uuid.uuid4().hex[:8]}"
    writer, _ = await open_member(cluster, 0, "wri", room)
    reader, _ = await open_member(cluster, 2, "rea", room)
    await send(writer, {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": "C0", "value": 0})
    last = (await until(reader, of_type("cell_updated", cell_id="C0")))[-1]["seq"]
    await reader.close()
    for i in range(1, 21):
        await send(writer, {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": f"C{i}", "value": i})
    await until(writer, of_type("cell_updated", cell_id="C20"))
    resumed = await cluster.connect(1, "rea")
    await greet(resumed)
    await send(resumed, {"type": "join_room", "room_id": room, "since": last})
    replay = await until(resumed, of_type("replay_complete"))
    await send(writer, {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": "C21", "value": 21})
    after = replay + await until(resumed, of_type("cell_updated", cell_id="C21"))
    seqs = [m["seq"] for m in after if m["type"] not in ("room_state", "replay_complete")]
    # The replay, then live: every room event after `last` exactly once, in order, across the switch.
    assert seqs == list(range(last + 1, last + 1 + len(seqs)))
    assert [m["cell_id"] for m in after if m["type"] == "cell_updated"] == [f"C{i}" for i in range(1, 22)]
    await resumed.close()
    await writer.close()


async def test_rooms_in_every_partition_keep_their_order_through_three_nodes(cluster: Cluster) -> None:
    """Rooms spread over every partition at once: each room's edits reach every member on every node
    in one contiguous order, and the log's heads say the edits went to every partition."""
    tag = uuid.uuid4().hex[:6]
    rooms = rooms_in_every_partition(tag, cluster.partitions)
    members = {room: [await open_member(cluster, n, f"p{n}", room) for n in range(3)] for room in rooms}
    per_room = 6
    await asyncio.gather(
        *(
            send(ws, {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": f"N{n}-{i}", "value": i})
            for room, joined in members.items()
            for i in range(per_room // 3)
            for n, (ws, _) in enumerate(joined)
        )
    )
    for room, joined in members.items():
        seen = await asyncio.gather(*(updates_seen(ws, per_room) for ws, _ in joined))
        assert seen[0] == seen[1] == seen[2], f"room {room}: one order on every node"
        seqs = [seq for seq, _ in seen[0]]
        assert seqs == list(range(seqs[0], seqs[0] + per_room))
        for ws, _ in joined:
            await ws.close()
    token = mint_token(cluster.settings, sub="root", roles=["admin"], secret=SECRET)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        stats = (await http.get(f"http://127.0.0.1:{cluster.ports[1]}/api/v1/ws/stats")).json()
    heads = stats["log_heads"]
    assert len(heads) == cluster.partitions and all(head > 0 for head in heads.values())


async def test_a_killed_node_leaves_no_ghost_on_the_others(cluster: Cluster) -> None:
    """Last: it kills the module's third node."""
    room = f"room-{uuid.uuid4().hex[:8]}"
    survivor, _ = await open_member(cluster, 0, "sur", room)
    await open_member(cluster, 2, "ghost", room)  # its socket dies with the node
    await until(survivor, of_type("user_joined"))
    cluster.procs[2].send_signal(signal.SIGKILL)
    await cluster.procs[2].wait()
    async with asyncio.timeout(HANG_GUARD):
        while True:
            try:
                message = await receive(survivor)
            except TimeoutError:
                continue
            if message["type"] == "user_left":
                break
    assert message["user_id"] == "ghost" and message["room_id"] == room
    await survivor.close()
