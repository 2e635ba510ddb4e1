"""Sheets: a 1,000-cell range update, and opening a 10,000-cell sheet with `load_sheet` against a
`join_room since=0` replay of the same room, in one run.

    python bench/sheets.py [--updates 20] [--opens 5] [--json out.json]

The server runs pinned to core 0 (`taskset`), this client on core 1. Reported:
- `cells_update` of 1,000 cells: ack latency p50/p99 over `--updates` updates (each a new version of
  the same 1,000 cells), the size of the `cells_updated` frame, and the events each update became.
- opening a 10,000-cell sheet written as people type (one `cell_update` per cell), plus the range
  updates: time from sending `load_sheet` to `sheet_state`, and from sending `join_room since=0` to
  `replay_complete` (every event of the room), each `--opens` times, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.settings import Settings  # noqa: E402
from api.tokens import mint_token  # noqa: E402
from bench.common import free_port, fresh_database, percentile, pin_database_server  # noqa: E402
from bench.fanout import SECRET, start_server, stop_server, wait_ready  # noqa: E402
from engine.log.store import EventStore, create_db_engine  # noqa: E402
from engine.model.streams import room_stream  # noqa: E402

ROOM, SHEET = "bench-sheet-room", "bench-sheet"
RANGE = 1000


def cells(first_row: int, version: int | None) -> list[dict[str, Any]]:
    """1,000 cells: columns A-J of 100 rows from `first_row`."""
    return [
        {"cell_id": f"{column}{row}", "value": f"v{row}{column}", **({"version": version} if version else {})}
        for row in range(first_row, first_row + RANGE // 10)
        for column in "ABCDEFGHIJ"
    ]


async def receive_until(ws: ClientConnection, kind: str) -> tuple[dict[str, Any], int]:
    """The first message of `kind`, and the size in bytes of that frame."""
    while True:
        raw = await ws.recv()
        message = orjson.loads(raw)
        if message["type"] == kind:
            return message, len(raw if isinstance(raw, bytes) else raw.encode())
        if message["type"] == "error":
            raise RuntimeError(f"the server refused: {message}")


async def run(port: int, database_url: str, updates: int, opens: int) -> dict[str, Any]:
    settings = Settings(_env_file=None, jwt_secret_key=SECRET)  # type: ignore[call-arg]
    url = f"ws://127.0.0.1:{port}/api/v1/ws"

    def token(user: str) -> str:
        return mint_token(settings, sub=user, secret=SECRET)

    async with connect(
        f"{url}?token={token('writer')}", max_size=None, open_timeout=30, ping_interval=None
    ) as writer:
        await receive_until(writer, "connected")
        await writer.send(orjson.dumps({"type": "join_room", "room_id": ROOM}).decode())
        await receive_until(writer, "room_state")
        # The 10,000-cell sheet, written as people type: one cell_update per cell, pipelined.
        for row in range(1, 10 * RANGE // 10 + 1):
            for column in "ABCDEFGHIJ":
                edit = {"type": "cell_update", "sheet_id": SHEET, "room": ROOM, "cell_id": f"{column}{row}"}
                await writer.send(orjson.dumps({**edit, "value": row}).decode())
        await writer.send(orjson.dumps({"type": "ping", "client_msg_id": "built"}).decode())
        await receive_until(writer, "pong")
        acks: list[float] = []
        frame_bytes = 0
        for n in range(updates):  # each a new version of rows 1-100
            message = {
                "type": "cells_update",
                "sheet_id": SHEET,
                "cells": cells(1, n + 1),
                "client_msg_id": f"u-{n}",
            }
            started = time.perf_counter()
            await writer.send(orjson.dumps(message).decode())
            _, frame_bytes = await receive_until(writer, "cells_updated")
            await receive_until(writer, "ack")
            acks.append((time.perf_counter() - started) * 1000)

        loads: list[float] = []
        replays: list[float] = []
        replayed_events = 0
        for n in range(opens):
            async with connect(
                f"{url}?token={token(f'reader-{n}')}", max_size=None, open_timeout=30
            ) as reader:
                await receive_until(reader, "connected")
                await reader.send(orjson.dumps({"type": "join_room", "room_id": ROOM}).decode())
                await receive_until(reader, "room_state")
                started = time.perf_counter()
                await reader.send(orjson.dumps({"type": "load_sheet", "sheet_id": SHEET}).decode())
                state, state_bytes = await receive_until(reader, "sheet_state")
                loads.append((time.perf_counter() - started) * 1000)
                assert len(state["cells"]) == 10 * RANGE
            async with connect(
                f"{url}?token={token(f'replayer-{n}')}", max_size=None, open_timeout=30
            ) as replayer:
                await receive_until(replayer, "connected")
                started = time.perf_counter()
                await replayer.send(orjson.dumps({"type": "join_room", "room_id": ROOM, "since": 0}).decode())
                done, _ = await receive_until(replayer, "replay_complete")
                replays.append((time.perf_counter() - started) * 1000)
                replayed_events = int(done["seq"])

    db_engine = create_db_engine(database_url)
    try:
        room_events = await EventStore(db_engine).read_stream(room_stream(ROOM), limit=100_000)
    finally:
        await db_engine.dispose()
    ranges = [e for e in room_events if e.type == "CellsUpdated"]
    return {
        "cells_update": {
            "cells": RANGE,
            "updates": updates,
            "ack_ms_p50": round(percentile(acks, 50), 2),
            "ack_ms_p99": round(percentile(acks, 99), 2),
            "cells_updated_frame_bytes": frame_bytes,
            "events_per_update": len(ranges) / updates,
        },
        "open_10000_cells": {
            "opens": opens,
            "load_sheet_ms_p50": round(percentile(loads, 50), 1),
            "sheet_state_frame_bytes": state_bytes,
            "join_since_0_ms_p50": round(percentile(replays, 50), 1),
            "events_replayed": replayed_events,
            "ratio": round(percentile(replays, 50) / percentile(loads, 50), 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--opens", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    database_url = fresh_database()
    pin_database_server({0, 1})
    port = free_port()
    log = Path(tempfile.gettempdir()) / "collab-bench-sheets.log"
    server = start_server("collab-engine", port, database_url, log)
    try:
        asyncio.run(wait_ready(port, server))
        result = asyncio.run(run(port, database_url, args.updates, args.opens))
    finally:
        stop_server(server)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
