"""Two nodes on one PostgreSQL behave as one server: each runs its own engine (its own appender, hub
and log follower) and they share nothing but the database. Clients on different nodes in one room see
each other's updates, all in the same seq order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from engine.log.partition_locks import Standing
from engine.log.store import EventStore
from engine.model.catalogue import CELL_UPDATED
from engine.model.events import NewEvent
from tests.api.conftest import RECEIVE_TIMEOUT, Server, fresh_database, make_settings, receive, serve
from tests.api.live_helpers import greet, send, until

HEARTBEAT = 0.3


@pytest.fixture(scope="module", params=["notify", "nats"])
async def nodes(request: pytest.FixtureRequest, server_url: str) -> AsyncIterator[tuple[Server, Server]]:
    """Two nodes that learn of each other's events by NOTIFY and a read of the log, or on a bus."""
    bus = {"nats_url": request.getfixturevalue("nats_url")} if request.param == "nats" else {}
    async with fresh_database(server_url) as database_url:
        settings = make_settings(
            database_url,
            websocket_requests_per_minute=1_000_000,
            websocket_requests_per_hour=1_000_000,
            node_heartbeat_seconds=HEARTBEAT,
            node_dead_after_seconds=10 * HEARTBEAT,
            **bus,
        )
        async with serve(settings) as first, serve(settings) as second:
            assert first.engine.node_id != second.engine.node_id
            yield first, second


async def _join(ws: Any, room: str) -> dict[str, Any]:
    await send(ws, {"type": "join_room", "room_id": room})
    state = await until(ws, lambda m: m["type"] == "room_state")
    return state[-1]


async def test_clients_on_two_nodes_see_each_other_join_and_edit_in_one_order(
    nodes: tuple[Server, Server], room: str
) -> None:
    first, second = nodes
    async with (
        first.connect(first.token("ann", username="ann")) as ann,
        second.connect(second.token("bob", username="bob")) as bob,
    ):
        await greet(ann)
        await greet(bob)
        await _join(ann, room)
        await _join(bob, room)
        joined = await until(ann, lambda m: m["type"] == "user_joined")
        assert joined[-1]["user"]["user_id"] == "bob"  # written by the other node

        per_client = 20
        sends = [
            send(ws, {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": f"{name}{i}", "value": i})
            for i in range(per_client)
            for ws, name in ((ann, "A"), (bob, "B"))
        ]
        await asyncio.gather(*sends)

        async def updates(ws: Any) -> list[tuple[int, str]]:
            seen: list[tuple[int, str]] = []
            while len(seen) < 2 * per_client:
                message = await receive(ws)
                if message["type"] == "cell_updated":
                    seen.append((message["seq"], message["cell_id"]))
            return seen

        at_ann, at_bob = await asyncio.gather(updates(ann), updates(bob))
    assert at_ann == at_bob  # the same events, in the same order, on both nodes
    seqs = [seq for seq, _ in at_ann]
    assert seqs == list(range(seqs[0], seqs[0] + 2 * per_client))  # contiguous: no gap, no repeat
    assert {cell for _, cell in at_ann} == {f"{n}{i}" for n in "AB" for i in range(per_client)}


async def test_a_race_on_one_cell_from_two_nodes_has_exactly_one_winner(
    nodes: tuple[Server, Server], room: str
) -> None:
    first, second = nodes
    async with (
        first.connect(first.token("cy", username="cy")) as cy,
        second.connect(second.token("di", username="di")) as di,
    ):
        await greet(cy)
        await greet(di)
        await _join(cy, room)
        await _join(di, room)
        sheet = f"s-{room}"
        base = {"type": "cell_update", "sheet_id": sheet, "cell_id": "A1", "room": room}
        await send(cy, {**base, "value": "seed"})
        await until(di, lambda m: m["type"] == "cell_updated")
        await until(cy, lambda m: m["type"] == "cell_updated")
        await asyncio.gather(
            send(cy, {**base, "value": "cy", "version": 1}), send(di, {**base, "value": "di", "version": 1})
        )

        async def outcome(ws: Any, name: str) -> str:
            while True:
                message = await receive(ws)
                if message["type"] == "error":
                    assert message["code"] == "VERSION_CONFLICT"
                    return "lost"
                if message["type"] == "cell_updated" and message["value"] == name:
                    return "won"

        results = await asyncio.gather(outcome(cy, "cy"), outcome(di, "di"))
    assert sorted(results) == ["lost", "won"]


async def test_two_rooms_racing_for_a_new_sheet_from_two_nodes_one_takes_it(
    nodes: tuple[Server, Server], room: str
) -> None:
    """Each node's first edit of the sheet claims it for its own room; exactly one claim commits,
    the other room's edit is refused and its room gets nothing."""
    first, second = nodes
    rooms = (f"{room}-a", f"{room}-b")
    sheet = f"s-{room}"
    async with (
        first.connect(first.token("ed", username="ed")) as ed,
        second.connect(second.token("flo", username="flo")) as flo,
    ):
        await greet(ed)
        await greet(flo)
        await _join(ed, rooms[0])
        await _join(flo, rooms[1])
        edit = {"type": "cell_update", "sheet_id": sheet, "cell_id": "A1"}
        await asyncio.gather(
            send(ed, {**edit, "room": rooms[0], "value": "ed"}),
            send(flo, {**edit, "room": rooms[1], "value": "flo"}),
        )

        async def outcome(ws: Any) -> str:
            message = await until(ws, lambda m: m["type"] in {"error", "cell_updated"})
            if message[-1]["type"] == "error":
                assert message[-1]["code"] == "VALIDATION_ERROR" and "belongs to room" in message[-1]["error"]
                return "refused"
            return "took it"

        results = await asyncio.gather(outcome(ed), outcome(flo))
    assert sorted(results) == ["refused", "took it"]
    store = EventStore(first.engine.node.store.db_engine)
    winner = rooms[results.index("took it")]
    (claim,) = await store.read_stream(f"sheet:{sheet}")
    assert claim.data == {"sheet_id": sheet, "room_id": winner}
    assert await store.sheet_room(sheet) == winner
    loser = rooms[1 - results.index("took it")]
    assert CELL_UPDATED not in {e.type for e in await store.read_stream(f"room:{loser}")}


async def test_nodes_find_each_other_and_wake_each_other(nodes: tuple[Server, Server]) -> None:
    first, second = nodes
    a, b = first.engine, second.engine
    assert b.node_id in a.node.nodes.peers
    assert a.node_id in b.node.nodes.peers
    assert a.node.follower.stats()["listening"] and b.node.follower.stats()["listening"]
    via = {a.node.follower.stats()["via"], b.node.follower.stats()["via"]}
    assert via == {"nats" if first.settings.nats_url else "notify"}  # the setting reached the engine


async def test_stats_on_either_node_count_the_whole_cluster(nodes: tuple[Server, Server], room: str) -> None:
    first, second = nodes
    admin = {"Authorization": f"Bearer {first.token('root', roles=['admin'])}"}
    async with (
        first.connect(first.token("eve")) as eve,
        second.connect(second.token("fay")) as fay,
        second.connect(second.token("gus")) as gus,
    ):
        for ws in (eve, fay, gus):
            await greet(ws)
            await _join(ws, room)
        # The other node's figures arrive with its heartbeat: wait for one that shows three sockets.
        async with asyncio.timeout(RECEIVE_TIMEOUT), httpx.AsyncClient(headers=admin) as http:
            while True:
                answers = [
                    (await http.get(f"{node.http_url}/api/v1/ws/stats/detailed")).json() for node in nodes
                ]
                if all(a["total_connections"] >= 3 for a in answers):
                    break
                await asyncio.sleep(HEARTBEAT / 2)
    for answer in answers:
        assert answer["nodes_alive"] == 2
        assert set(answer["nodes"]) == {first.engine.node_id, second.engine.node_id}
        assert answer["rooms_active"] >= 1  # one room with members on both nodes counts once
        by_node = {node_id: figures["connections"] for node_id, figures in answer["nodes"].items()}
        assert by_node[first.engine.node_id] >= 1 and by_node[second.engine.node_id] >= 2


async def test_an_event_another_writer_committed_just_before_goes_out_first(
    nodes: tuple[Server, Server], room: str
) -> None:
    """A commit that finds positions before it unpublished here (another writer's) is held until they
    are read and published, so members see the room's seqs in order."""
    first, _ = nodes
    engine = first.engine
    async with first.connect(first.token("kim")) as kim:
        await greet(kim)
        state = await _join(kim, room)
        foreign = NewEvent(
            stream_id=f"room:{room}",
            type=CELL_UPDATED,
            data={"room_id": room, "sheet_id": f"s-{room}", "cell_id": "Z9", "value": "elsewhere",
                  "formula": None, "user_id": "other", "username": "other", "version": 1},
            metadata={"user_id": "other", "node": "a-writer-elsewhere"},
            user_id="other",
        )  # fmt: skip
        await EventStore(engine.store.db_engine).append([foreign])
        await send(kim, {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": "A1", "value": 1})
        seen = [
            m for m in await until(kim, lambda m: m.get("cell_id") == "A1") if m["type"] == "cell_updated"
        ]
    assert [(m["cell_id"], m["seq"]) for m in seen] == [("Z9", state["seq"] + 1), ("A1", state["seq"] + 2)]


async def test_on_a_bus_nodes_read_the_log_only_to_repair(nodes: tuple[Server, Server], room: str) -> None:
    """On NATS the events come on the bus; on NOTIFY every one of them is read from the log."""
    first, second = nodes
    on_bus = bool(first.settings.nats_url)

    def figures() -> list[dict[str, Any]]:
        return [dict(node.engine.node.node_stats().delivery) for node in nodes]

    async with (
        first.connect(first.token("lu", username="lu")) as lu,
        second.connect(second.token("mo", username="mo")) as mo,
    ):
        await greet(lu)
        await greet(mo)
        await _join(lu, room)
        await _join(mo, room)
        before = figures()
        count = 30
        for i in range(count):
            await send(lu, {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": f"L{i}", "value": i})
            await send(mo, {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": f"M{i}", "value": i})
        for ws in (lu, mo):
            seen = 0
            while seen < 2 * count:
                seen += (await receive(ws))["type"] == "cell_updated"
    after = figures()
    for b, a in zip(before, after, strict=True):
        reads = a["log_reads"] + a["held_reads"] - b["log_reads"] - b["held_reads"]
        received = a["bus_events_received"] - b["bus_events_received"]
        if on_bus:
            assert a["bus_connected"] and received >= count  # the other node's 30 updates
            assert reads <= 5  # a few at most, when the machine stalls past the repair grace
        else:
            assert received == 0 and reads >= 1


async def test_a_node_that_stops_is_counted_out_at_once_not_at_the_next_heartbeat(server_url: str) -> None:
    """It says goodbye on its way out, so the survivor's share of the log's partitions grows now;
    with heartbeats a minute apart, only the goodbye can tell it this soon."""
    async with fresh_database(server_url) as database_url:
        settings = make_settings(database_url, node_heartbeat_seconds=60.0, node_dead_after_seconds=120.0)
        async with serve(settings) as first:
            node = first.engine.node.nodes
            assert node is not None
            async with serve(settings) as second:
                leaving = second.engine.node_id
                async with asyncio.timeout(10):
                    while leaving not in node.peers:  # noqa: ASYNC110 (its hello arrives by NOTIFY)
                        await asyncio.sleep(0.02)
                assert node.standing().holders == 2
            async with asyncio.timeout(10):
                while leaving in node.peers:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            assert node.standing() == Standing(0, 1)
