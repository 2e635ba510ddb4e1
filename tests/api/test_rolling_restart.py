"""A rolling restart loses nothing: one node shuts down gracefully (POST /ws/shutdown) while another
keeps serving; its clients, closed with 1012, resume on the other node with `join_room since` and
see every event exactly once, and every update they had acked is in the log exactly once."""

from __future__ import annotations

from typing import Any

import httpx

from engine.log.store import EventStore, create_db_engine
from engine.model.catalogue import CELL_UPDATED
from tests.api.conftest import fresh_database, make_settings, receive, serve
from tests.api.live_helpers import greet, send, until


async def test_clients_of_a_node_that_shuts_down_resume_on_another_without_loss(
    server_url: str, room: str
) -> None:
    sheet = f"s-{room}"
    acked: dict[str, int] = {}
    seen_by_mover: list[int] = []
    async with fresh_database(server_url) as database_url:
        settings = make_settings(
            database_url, websocket_requests_per_minute=1_000_000, websocket_requests_per_hour=1_000_000
        )
        async with serve(settings) as staying, staying.connect(staying.token("wes")) as watcher:
            await greet(watcher)
            await send(watcher, {"type": "join_room", "room_id": room})
            await until(watcher, lambda m: m["type"] == "room_state")

            async with serve(settings) as leaving:
                mover = await leaving.connect(leaving.token("mo")).__aenter__()
                await greet(mover)
                await send(mover, {"type": "join_room", "room_id": room})
                state = await until(mover, lambda m: m["type"] == "room_state")
                seen_by_mover.append(state[-1]["seq"])

                async def edit(i: int, ws: Any) -> None:
                    cmid = f"{room}-{i}"
                    await send(
                        ws,
                        {"type": "cell_update", "sheet_id": sheet, "cell_id": f"A{i}", "value": i,
                         "room": room, "client_msg_id": cmid},
                    )  # fmt: skip

                for i in range(10):
                    await edit(i, mover)
                admin = {"Authorization": f"Bearer {leaving.token('root', roles=['admin'])}"}
                # Read until the close: acks and cell_updated before it, then server_shutdown and 1012.
                shutdown_sent = False
                while True:
                    if not shutdown_sent and len(acked) >= 5:
                        async with httpx.AsyncClient(headers=admin) as http:
                            answer = await http.post(f"{leaving.http_url}/api/v1/ws/shutdown")
                        assert answer.status_code == 202
                        shutdown_sent = True
                    try:
                        message = await receive(mover)
                    except Exception:  # the close: websockets raises ConnectionClosed from recv
                        break
                    if message["type"] == "ack":
                        acked[message["client_msg_id"]] = message["seq"]
                    elif message["type"] == "cell_updated":
                        seen_by_mover.append(message["seq"])
                assert mover.close_code == 1012
                await mover.__aexit__(None, None, None)

            # Resume on the node that stays, from the last seq this client saw.
            since = max(seen_by_mover)
            async with staying.connect(staying.token("mo")) as resumed:
                await greet(resumed)
                await send(resumed, {"type": "join_room", "room_id": room, "since": since})
                replay = await until(resumed, lambda m: m["type"] == "replay_complete")
                replayed = [m["seq"] for m in replay if m["type"] == "cell_updated"]
                for i in range(10, 15):  # and keeps working there
                    await edit(i, resumed)
                for message in await until(resumed, lambda m: m.get("client_msg_id") == f"{room}-14"):
                    if message["type"] == "ack":
                        acked[message["client_msg_id"]] = message["seq"]

            watched = [
                m["seq"]
                for m in await until(watcher, lambda m: m.get("client_msg_id") == f"{room}-14")
                if m["type"] == "cell_updated"
            ]

        db = create_db_engine(database_url)
        try:
            log = [e for e in await EventStore(db).read_stream(f"room:{room}") if e.type == CELL_UPDATED]
        finally:
            await db.dispose()

    keys = [e.metadata.get("client_msg_id") for e in log]
    assert len(keys) == len(set(keys))  # nothing twice
    assert set(acked) <= set(keys)  # every acked update is in the log
    assert {acked[k] for k in acked} <= {e.stream_version for e in log}
    # The mover saw each update once across both nodes: live before the close, replayed after it.
    updates = sorted(seen_by_mover[1:] + replayed)
    assert updates == sorted(set(updates))
    assert set(updates) >= {e.stream_version for e in log if int(e.data["value"]) < 10}
    # The watcher on the staying node saw every update in order, without a gap.
    assert watched == sorted(watched) and watched == [e.stream_version for e in log]
