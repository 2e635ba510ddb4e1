"""The fanout benchmark's baseline: a minimal FastAPI WebSocket relay, in-memory rooms, no persistence.

It speaks just enough of the protocol for bench/fanout.py's workload (`join_room`, `cell_update` ->
`cell_updated` to every member with the sender's `client_msg_id`), with no authentication, no
validation beyond JSON, and no log, so it shows what the same machine does without durability.

    uvicorn bench.baseline_relay:app --port 8100
"""

from __future__ import annotations

from collections import defaultdict

import orjson
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
rooms: defaultdict[str, set[WebSocket]] = defaultdict(set)
versions: defaultdict[tuple[str, str], int] = defaultdict(int)


@app.websocket("/api/v1/ws")
async def relay(websocket: WebSocket) -> None:
    await websocket.accept()
    joined: set[str] = set()
    try:
        while True:
            message = orjson.loads(await websocket.receive_text())
            if message.get("type") == "join_room":
                room = message["room_id"]
                rooms[room].add(websocket)
                joined.add(room)
                await websocket.send_text(orjson.dumps({"type": "room_state", "room_id": room}).decode())
            elif message.get("type") == "cell_update":
                room = message["room"]
                key = (message["sheet_id"], message["cell_id"])
                versions[key] += 1
                frame = orjson.dumps(
                    {
                        "type": "cell_updated",
                        "sheet_id": message["sheet_id"],
                        "cell_id": message["cell_id"],
                        "value": message["value"],
                        "version": versions[key],
                        "client_msg_id": message.get("client_msg_id"),
                    }
                ).decode()
                for member in list(rooms[room]):
                    try:
                        await member.send_text(frame)
                    except (WebSocketDisconnect, RuntimeError):
                        rooms[room].discard(member)
    except WebSocketDisconnect:
        pass
    finally:
        for room in joined:
            rooms[room].discard(websocket)
