"""`collab serve` logs one JSON object per line when its standard error is not a terminal (the default,
LOG_FORMAT=auto), uvicorn's own lines included, with the request id on a request's lines and the
connection id on a socket's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from api.tokens import mint_token
from tests.api.conftest import SECRET, make_settings
from tests.api.test_serve_cli import ROOT, free_port


async def read_json_until(stream: asyncio.StreamReader, seen: list[dict[str, Any]], done: str) -> None:
    """Parse stderr lines (each must be a JSON object) until one's message contains `done`."""
    while True:
        raw = await stream.readline()
        assert raw, f"collab serve exited; logged so far: {seen}"
        line = json.loads(raw)  # a line that is not JSON fails the test here
        assert isinstance(line, dict)
        seen.append(line)
        if done in str(line.get("message", "")):
            return


async def test_collab_serve_logs_json_lines_with_request_and_connection_ids(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "DATABASE_URL", "LOG_"))}
    env.update(DATA_DIR=str(tmp_path), DATABASE_URL=database_url, JWT_SECRET_KEY=SECRET)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api.cli", "serve", "--port", str(port),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(60):
            await read_json_until(proc.stderr, seen, "Uvicorn running on")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                response = await http.get("/api/v1/ws/health", headers={"X-Request-ID": "serve-log-1"})
            assert response.headers["x-request-id"] == "serve-log-1"
            await read_json_until(proc.stderr, seen, "/api/v1/ws/health")

            token = mint_token(make_settings(database_url), sub="log-user", secret=SECRET)
            async with connect(f"ws://127.0.0.1:{port}/api/v1/ws?token={token}") as ws:
                connection_id = json.loads(await ws.recv())["connection_id"]
            await read_json_until(proc.stderr, seen, "connection closed")
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.wait()

    assert any(line["logger"].startswith("uvicorn") for line in seen)  # uvicorn's lines are JSON too
    (access,) = [line for line in seen if line.get("request_id") == "serve-log-1"]
    assert (access["logger"], access["status"], access["path"]) == ("api.access", 200, "/api/v1/ws/health")
    socket_lines = [line for line in seen if line.get("connection_id") == connection_id]
    assert [line["message"] for line in socket_lines] == ["connection opened", "connection closed"]
    assert socket_lines[0]["user_id"] == "log-user"
