"""A node killed with SIGKILL leaves no ghosts: a survivor notices its silent heartbeat and records
the departures of its connections, which the members on the surviving node hear as `user_left`.

The nodes here use a database of their own: their short heartbeat settings must not meet the other
tests' servers, which beat at the default pace and would look dead to them."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from websockets.asyncio.client import connect

from api.tokens import mint_token
from engine.cluster.reaper import NODE_LOST_ERROR
from engine.log.store import EventStore, create_db_engine
from engine.model.catalogue import AI_FAILED, AI_PROGRESSED, AI_REQUEST_STARTED, NODE_LOST, USER_LEFT_ROOM
from engine.model.streams import user_stream
from tests.api.conftest import SECRET, fresh_database, make_settings, receive, serve, start_node_process
from tests.api.live_helpers import greet, send, until
from tests.api.test_websocket_ai import GatedProvider, ai_request, fill

HEARTBEAT = 0.5
DEAD_AFTER = 2.0
HANG_GUARD = 30.0  # the bound for clearing a dead node's presence; not a speed check


@pytest.fixture
async def own_database(server_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_url) as url:
        yield url


async def start_node(database_url: str) -> tuple[asyncio.subprocess.Process, int]:
    return await start_node_process(
        database_url, node_heartbeat_seconds=HEARTBEAT, node_dead_after_seconds=DEAD_AFTER
    )


async def test_a_killed_node_s_users_leave_their_rooms_on_the_surviving_node(own_database: str) -> None:
    room = f"room-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        own_database, node_heartbeat_seconds=HEARTBEAT, node_dead_after_seconds=DEAD_AFTER
    )
    proc, port = await start_node(own_database)
    try:
        async with serve(settings) as survivor, survivor.connect(survivor.token("sue")) as sue:
            await greet(sue)
            await send(sue, {"type": "join_room", "room_id": room})
            await until(sue, lambda m: m["type"] == "room_state")

            doomed_token = survivor.token("dan", username="dan")
            doomed = await connect(f"ws://127.0.0.1:{port}/api/v1/ws?token={doomed_token}")
            await greet(doomed)
            await send(doomed, {"type": "join_room", "room_id": room})
            await until(doomed, lambda m: m["type"] == "room_state")
            joined = await until(sue, lambda m: m["type"] == "user_joined")  # written by the other node
            assert joined[-1]["user"]["user_id"] == "dan"

            proc.send_signal(signal.SIGKILL)
            await proc.wait()

            async with asyncio.timeout(HANG_GUARD):
                while True:
                    message = await receive_patiently(sue)
                    if message["type"] == "user_left":
                        break
            assert message["user_id"] == "dan" and message["room_id"] == room
            await doomed.close()

        db = create_db_engine(own_database)
        try:
            leaves = [e for e in await EventStore(db).read_stream(f"room:{room}") if e.type == USER_LEFT_ROOM]
        finally:
            await db.dispose()
        # Recorded once, by the survivor (sue's own leave at the end is an ordinary disconnect).
        assert [e.data["reason"] for e in leaves if e.data["user_id"] == "dan"] == [NODE_LOST]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def receive_patiently(ws: object) -> dict[str, object]:
    """`receive`, retried past its per-message timeout: the departure comes after the dead node's
    silence, which is longer than one receive waits."""
    while True:
        try:
            return await receive(ws)  # type: ignore[arg-type]
        except TimeoutError:
            continue


async def test_a_node_taken_for_dead_closes_its_connections_and_registers_again(own_database: str) -> None:
    """A node that stalled past the dead-node window finds its row marked stopped by a survivor, whose
    leaves removed its users: it must not carry on serving sockets the log says are gone. It records
    their departures too, under the survivor's keys: here the survivor recorded none, as when a join
    reached the log after the survivor read the node's memberships."""
    settings = make_settings(
        own_database, node_heartbeat_seconds=HEARTBEAT, node_dead_after_seconds=DEAD_AFTER
    )
    room = f"room-{uuid.uuid4().hex[:8]}"
    async with serve(settings) as node, node.connect(node.token("pat")) as pat:
        await greet(pat)
        await send(pat, {"type": "join_room", "room_id": room})
        await until(pat, lambda m: m["type"] == "room_state")
        node_id = node.engine.node_id
        db = create_db_engine(own_database)
        try:
            async with db.begin() as conn:  # the mark a survivor's reaper leaves (engine/cluster/reaper.py)
                await conn.execute(
                    text("UPDATE nodes SET stopped_at = now() WHERE node_id = :n"), {"n": node_id}
                )
            async with asyncio.timeout(HANG_GUARD):
                await pat.wait_closed()
            assert pat.close_code == 1012
            async with asyncio.timeout(HANG_GUARD):
                while True:  # recorded once the socket is closed, so that its client need not wait
                    stream = await EventStore(db).read_stream(f"room:{room}")
                    left = [e for e in stream if e.type == USER_LEFT_ROOM]
                    if left:
                        break
                    await asyncio.sleep(0.05)
            assert [(e.data["user_id"], e.data["reason"]) for e in left] == [("pat", NODE_LOST)]
            async with asyncio.timeout(HANG_GUARD):
                # Its session over, the closed connection's id is no longer kept to refuse its events.
                while node.engine.node._reaped:  # noqa: ASYNC110 (set by the server's own tasks)
                    await asyncio.sleep(0.05)
            async with asyncio.timeout(HANG_GUARD):
                while True:  # registered again, as a node that has started anew
                    async with db.connect() as conn:
                        row = (
                            await conn.execute(
                                text("SELECT stopped_at, started_at FROM nodes WHERE node_id = :n"),
                                {"n": node_id},
                            )
                        ).one()
                    if row.stopped_at is None:
                        break
                    await asyncio.sleep(0.1)
        finally:
            await db.dispose()


async def test_clients_of_three_server_processes_see_one_room_in_one_order(own_database: str) -> None:
    """Three real server processes on one database, a client on each in one room, all editing at
    once: every client sees every update, in the same order, with contiguous seqs."""
    room = f"room-{uuid.uuid4().hex[:8]}"
    settings = make_settings(own_database)
    procs = [await start_node(own_database) for _ in range(3)]
    try:
        clients = []
        for i, (_, port) in enumerate(procs):
            token = mint_token(settings, sub=f"p{i}", secret=SECRET)
            ws = await connect(f"ws://127.0.0.1:{port}/api/v1/ws?token={token}")
            clients.append(ws)
            await greet(ws)
            await send(ws, {"type": "join_room", "room_id": room})
            await until(ws, lambda m: m["type"] == "room_state")
        per_client = 15
        await asyncio.gather(
            *(
                send(ws, {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": f"C{i}-{n}", "value": n})
                for n in range(per_client)
                for i, ws in enumerate(clients)
            )
        )

        async def updates(ws: Any) -> list[tuple[int, str]]:
            seen: list[tuple[int, str]] = []
            while len(seen) < per_client * len(clients):
                message = await receive_patiently(ws)
                if message["type"] == "cell_updated":
                    seen.append((int(message["seq"]), str(message["cell_id"])))
            return seen

        async with asyncio.timeout(HANG_GUARD):
            views = await asyncio.gather(*(updates(ws) for ws in clients))
        for ws in clients:
            await ws.close()
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            await proc.wait()
    assert views[0] == views[1] == views[2]
    seqs = [seq for seq, _ in views[0]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_an_ai_request_running_on_a_killed_node_ends_in_an_error_for_its_requester(
    own_database: str,
) -> None:
    """The killed node was running the request against an AI endpoint that had not answered yet: the
    requester's connection on the survivor gets its `ai_error` instead of waiting for good."""
    room, sheet, user = (f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("room", "sheet", "amy"))

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the request, answers nothing, until the node is gone
        writer.close()

    endpoint = await asyncio.start_server(silent, "127.0.0.1", 0)
    ai = {"ai_base_url": f"http://127.0.0.1:{endpoint.sockets[0].getsockname()[1]}/v1"}
    proc, port = await start_node_process(
        own_database,
        node_heartbeat_seconds=HEARTBEAT,
        node_dead_after_seconds=DEAD_AFTER,
        **ai,
        ai_api_key="key",
        ai_model="model",
    )
    settings = make_settings(
        own_database, node_heartbeat_seconds=HEARTBEAT, node_dead_after_seconds=DEAD_AFTER
    )
    try:
        async with serve(settings) as survivor, survivor.connect(survivor.token(user)) as tab:
            await greet(tab)
            doomed = await connect(f"ws://127.0.0.1:{port}/api/v1/ws?token={survivor.token(user)}")
            await greet(doomed)
            await send(doomed, {"type": "join_room", "room_id": room})
            cell = {"type": "cell_update", "room": room, "sheet_id": sheet, "cell_id": "A1", "value": 1}
            await send(doomed, {**cell, "client_msg_id": "c1"})
            await until(doomed, lambda m: m.get("client_msg_id") == "c1")
            await send(
                doomed, {"type": "ai_request", "request_id": "r1", "query": "Analyse", "sheet_id": sheet}
            )
            await until(tab, lambda m: m.get("event_type") == "ai_start")  # its node is running it

            proc.send_signal(signal.SIGKILL)
            await proc.wait()

            async with asyncio.timeout(HANG_GUARD):
                while (message := await receive_patiently(tab)).get("event_type") != "ai_error":
                    assert message.get("event_type") != "ai_complete", message
            assert (message["request_id"], message["data"]) == ("r1", {"error": NODE_LOST_ERROR})
            await doomed.close()
    finally:
        endpoint.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_node_taken_for_dead_stops_its_ai_runs_and_ends_them(own_database: str) -> None:
    """A survivor records the end of each run of a node it took for dead: the node, when it learns
    it, must not carry its runs on, or their steps would follow that end. It records the same end
    (one the survivor's reading missed would have none)."""
    settings = make_settings(
        own_database, node_heartbeat_seconds=HEARTBEAT, node_dead_after_seconds=DEAD_AFTER
    )
    room, sheet, user = (f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("room", "sheet", "pia"))
    gated = GatedProvider()
    async with serve(settings, ai_provider=gated) as node, node.connect(node.token(user)) as pia:
        await greet(pia)
        await send(pia, {"type": "join_room", "room_id": room})
        await until(pia, lambda m: m["type"] == "room_state")
        await fill(pia, sheet, room, {"A1": 2})
        await send(pia, ai_request("t1", sheet))
        await asyncio.wait_for(gated.reached.wait(), HANG_GUARD)
        db = create_db_engine(own_database)
        try:
            async with db.begin() as conn:  # the mark a survivor's reaper leaves
                await conn.execute(
                    text("UPDATE nodes SET stopped_at = now() WHERE node_id = :n"), {"n": node.engine.node_id}
                )
            async with asyncio.timeout(HANG_GUARD):
                await pia.wait_closed()
            assert gated.cancelled and node.engine.ai.running == frozenset()
            gated.gate.set()  # a run still going would take its next steps now
            # The node records its end too, once it may write again (a Duplicate if a survivor did).
            async with asyncio.timeout(HANG_GUARD):
                while (steps := await EventStore(db).read_stream(user_stream(user)))[-1].type != AI_FAILED:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert [e.type for e in steps] == [AI_REQUEST_STARTED, AI_PROGRESSED, AI_FAILED]
            assert steps[-1].data["error"] == NODE_LOST_ERROR
        finally:
            await db.dispose()
