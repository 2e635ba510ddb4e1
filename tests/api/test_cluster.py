"""Two nodes on one PostgreSQL behave as one server: each runs its own engine (its own appender, hub
and log follower) and they share nothing but the database. Clients on different nodes in one room see
each other's updates, all in the same seq order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api.conftest import Server, make_settings, receive, serve
from tests.api.live_helpers import greet, send, until


@pytest.fixture(scope="module")
async def nodes(database_url: str) -> AsyncIterator[tuple[Server, Server]]:
    settings = make_settings(
        database_url, websocket_requests_per_minute=1_000_000, websocket_requests_per_hour=1_000_000
    )
    async with serve(settings) as first, serve(settings) as second:
        assert first.app.state.engine.node_id != second.app.state.engine.node_id
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


async def test_nodes_find_each_other_and_wake_each_other(nodes: tuple[Server, Server]) -> None:
    first, second = nodes
    a, b = first.app.state.engine, second.app.state.engine
    assert b.node_id in a.nodes.peers
    assert a.node_id in b.nodes.peers
    assert a.follower.stats()["listening"] and b.follower.stats()["listening"]
