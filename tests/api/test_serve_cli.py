"""`collab serve` as `make run` starts it: embedded PostgreSQL, generated secret, printed token; a real
client connects with that token; SIGTERM stops the server and the embedded PostgreSQL with it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import psutil
from websockets.asyncio.client import connect

from bench.common import free_port

ROOT = Path(__file__).resolve().parents[2]


def postgres_serving(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


async def test_collab_serve_prints_a_working_token_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "DATABASE_URL"))}
    env["DATA_DIR"] = str(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api.cli", "serve", "--port", str(port),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    output = ""
    try:
        async with asyncio.timeout(90):
            while "Uvicorn running on" not in output:
                line = await proc.stdout.readline()
                assert line, f"collab serve exited early:\n{output}"
                output += line.decode()
        match = re.search(r"ws://127\.0\.0\.1:\d+/api/v1/ws\?token=(\S+?)[\"']", output)
        assert match, output
        assert "embedded PostgreSQL" in output

        async with connect(f"ws://127.0.0.1:{port}/api/v1/ws?token={match.group(1)}") as ws:
            assert json.loads(await ws.recv())["type"] == "connected"
            await ws.send(json.dumps({"type": "join_room", "room_id": "workspace_123"}))
            state = json.loads(await ws.recv())
            assert state["type"] == "room_state" and state["total_users"] == 1
        assert postgres_serving(tmp_path / "pg"), "the embedded server should be up while serving"
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await proc.wait()
    assert proc.returncode in (0, 128 + signal.SIGTERM)
    for _ in range(100):
        if not postgres_serving(tmp_path / "pg"):
            break
        await asyncio.sleep(0.1)
    assert not postgres_serving(tmp_path / "pg"), "SIGTERM must stop the embedded PostgreSQL too"
