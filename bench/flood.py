"""A bad-frame flood: what one hostile user costs everyone else.

    python bench/flood.py [--seconds 5] [--json out.json]

One user opens 4 sockets and sends `{bad` (invalid JSON) on each as fast as the socket takes it,
reading the errors and reconnecting at once whenever the server closes a socket. Another user, in a
room of their own, writes one `cell_update` at a time (closed loop) and times each ack. Reported:
that user's ack p50/p99 before the flood and during it, the flood's frames sent and answered, and the
closes (1008) it met; for two servers in the same run, one with the default bad-frame budget (20 per
10 s per connection) and one without a budget (`BAD_FRAMES_PER_WINDOW` at a billion), which is how
the server behaved before the budget existed.

The server runs pinned to core 0 (`taskset`), the load on core 1, the database shared by both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.settings import Settings  # noqa: E402
from api.tokens import mint_token  # noqa: E402
from bench.common import free_port, fresh_database, percentile, pin_database_server  # noqa: E402
from bench.fanout import SECRET, start_server, stop_server, wait_ready  # noqa: E402

SOCKETS = 4
CONFIGS: dict[str, dict[str, str]] = {
    "with the bad-frame budget (default)": {},
    "without a budget": {"BAD_FRAMES_PER_WINDOW": str(10**9)},
}


class Flood:
    """The flooding user: `SOCKETS` connections sending garbage; counts what happens to it."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.sent = self.answered = self.closes = 0
        self.close_codes: dict[int, int] = {}
        self._stop = asyncio.Event()

    async def run(self, seconds: float) -> dict[str, Any]:
        tasks = [asyncio.create_task(self._socket()) for _ in range(SOCKETS)]
        await asyncio.sleep(seconds)
        self._stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return {
            "sockets": SOCKETS,
            "bad_frames_sent_per_s": round(self.sent / seconds),
            "errors_received_per_s": round(self.answered / seconds),
            "closes": self.closes,
            "close_codes": self.close_codes,
        }

    async def _socket(self) -> None:
        while not self._stop.is_set():
            try:
                async with connect(
                    f"{self.url}?token={self.token}", open_timeout=30, ping_interval=None, max_queue=None
                ) as ws:
                    reader = asyncio.create_task(self._read(ws))
                    try:
                        while not self._stop.is_set():
                            await ws.send("{bad")
                            self.sent += 1
                            if self.sent % 64 == 0:
                                await asyncio.sleep(0)  # let the reader count the answers
                    finally:
                        reader.cancel()
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else 1006
                self.closes += 1
                self.close_codes[code] = self.close_codes.get(code, 0) + 1
            except OSError:
                await asyncio.sleep(0.01)

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                if b'"INVALID_JSON"' in (raw if isinstance(raw, bytes) else raw.encode()):
                    self.answered += 1


async def acks_for(ws: ClientConnection, seconds: float, room: str, start: int) -> list[float]:
    """Closed loop: one `cell_update`, wait for its ack, again, for `seconds`; ack latencies in ms."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    n = start
    while time.perf_counter() < deadline:
        n += 1
        message = {"type": "cell_update", "sheet_id": "calm", "cell_id": "A1", "value": n, "room": room}
        started = time.perf_counter()
        await ws.send(orjson.dumps({**message, "client_msg_id": f"c{n}"}).decode())
        while True:
            reply = orjson.loads(await ws.recv())
            if reply["type"] in {"ack", "error"} and reply.get("client_msg_id") == f"c{n}":
                break
        if reply["type"] != "ack":
            raise RuntimeError(f"the calm user's update was refused: {reply}")
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def figures(latencies: list[float]) -> dict[str, float]:
    return {
        "acks": len(latencies),
        "ack_ms_p50": round(percentile(latencies, 50), 2),
        "ack_ms_p99": round(percentile(latencies, 99), 2),
    }


async def run(port: int, seconds: float) -> dict[str, Any]:
    settings = Settings(_env_file=None, jwt_secret_key=SECRET)  # type: ignore[call-arg]
    url = f"ws://127.0.0.1:{port}/api/v1/ws"
    calm_token = mint_token(settings, sub="calm", secret=SECRET)
    flood_token = mint_token(settings, sub="flooder", secret=SECRET)
    async with connect(f"{url}?token={calm_token}", open_timeout=30, ping_interval=None) as calm:
        await calm.recv()  # connected
        await calm.send(orjson.dumps({"type": "join_room", "room_id": "calm-room"}).decode())
        while orjson.loads(await calm.recv())["type"] != "room_state":
            pass
        await acks_for(calm, 1.0, "calm-room", 0)  # warm-up, not counted
        before = await acks_for(calm, seconds, "calm-room", 10_000)
        # The flood in a process of its own (on the load's core): in this one, its sends would
        # starve the calm user's reads and the figures would measure this client, not the server.
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--flood", url, flood_token, str(seconds + 1), stdout=PIPE
        )
        await asyncio.sleep(0.5)  # the flood is under way
        during = await acks_for(calm, seconds, "calm-room", 20_000)
        out, _ = await flooder.communicate()
    return {
        "before": figures(before),
        "during": figures(during),
        "p50_ratio_during_to_before": round(percentile(during, 50) / percentile(before, 50), 2),
        "flood": json.loads(out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--flood", nargs=3, metavar=("URL", "TOKEN", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        url, token, seconds = args.flood
        print(json.dumps(asyncio.run(Flood(url, token).run(float(seconds)))))
        return
    os.sched_setaffinity(0, {1})
    results: dict[str, Any] = {}
    for name, env in CONFIGS.items():
        database_url = fresh_database()
        pin_database_server({0, 1})
        port = free_port()
        log = Path(tempfile.gettempdir()) / "collab-bench-flood.log"
        server = start_server("collab-engine", port, database_url, log, extra_env=env)
        try:
            asyncio.run(wait_ready(port, server))
            results[name] = asyncio.run(run(port, args.seconds))
        finally:
            stop_server(server)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
