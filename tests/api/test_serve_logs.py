"""`collab serve` logs one JSON object per line when its standard error is not a terminal (the default,
LOG_FORMAT=auto), uvicorn's own lines included, with the request id on a request's lines and the
connection id on a socket's; and no line, in either format or under plain uvicorn, carries a token."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api.tokens import mint_token
from bench.common import free_port
from tests.api.conftest import SECRET, make_settings, start_node_process
from tests.api.test_serve_cli import ROOT


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


async def _wait_for(path: Path, text: str, within: float = 30) -> None:
    """Until the file holds `text`."""
    async with asyncio.timeout(within):
        while True:
            if text in await asyncio.to_thread(path.read_text):
                return
            await asyncio.sleep(0.05)


async def _leave_traces_of_tokens(port: int, token: str) -> None:
    """Requests that put a token where servers like to log it: the query string of a handshake that is
    accepted, of one refused for its origin, and of plain requests; a bearer header."""
    base = f"127.0.0.1:{port}"
    async with connect(f"ws://{base}/api/v1/ws?token={token}") as ws:
        await ws.recv()
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://{base}/api/v1/ws?token={token}", origin="https://elsewhere.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        await http.get(f"/api/v1/ws/health?token={token}&access_token={token}")
        await http.get("/api/v1/ws/stats", headers={"Authorization": f"Bearer {token}"})
        await http.get(f"/api/v1/no-such-route?token={token}", headers={"X-Request-ID": "last-one"})


def _assert_redacted(output: str, token: str) -> None:
    assert output.strip(), "nothing was logged"
    assert token not in output
    assert token.split(".")[2] not in output  # not even the signature alone
    assert "eyJ" not in output  # no JWT at all
    assert "token=[redacted]" in output


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_collab_serve_logs_no_token(tmp_path: Path, database_url: str, log_format: str) -> None:
    """Every line `collab serve` writes, uvicorn's handshake lines included, with the token of a
    `?token=` query string replaced by `[redacted]`."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "DATABASE_URL", "LOG_"))}
    env.update(
        DATA_DIR=str(tmp_path),
        DATABASE_URL=database_url,
        JWT_SECRET_KEY=SECRET,
        LOG_FORMAT=log_format,
        ALLOWED_ORIGINS="https://sheets.example",
    )
    log_file = tmp_path / "stderr.log"
    with log_file.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "api.cli", "serve", "--port", str(port),
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        await _wait_for(log_file, "Uvicorn running on", 60)
        token = mint_token(make_settings(database_url), sub="secret-user", secret=SECRET)
        await _leave_traces_of_tokens(port, token)
        await _wait_for(log_file, "last-one" if log_format == "json" else "[last-one]")
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.wait()
    output = log_file.read_text()
    _assert_redacted(output, token)
    assert '"WebSocket /api/v1/ws?token=[redacted]' in output.replace('\\"', '"')  # uvicorn's own line
    if log_format == "json":
        assert all(isinstance(json.loads(line), dict) for line in output.splitlines())


async def test_plain_uvicorn_logs_no_token(tmp_path: Path, database_url: str) -> None:
    """Served by `uvicorn api.app:create_app` with uvicorn's own logging (access lines on stdout), the
    app still keeps tokens out of every line."""
    log_file = tmp_path / "output.log"
    proc, port = await start_node_process(
        database_url, uvicorn_log_level="info", output=log_file, allowed_origins="https://sheets.example"
    )
    try:
        token = mint_token(make_settings(database_url), sub="secret-user", secret=SECRET)
        await _leave_traces_of_tokens(port, token)
        await _wait_for(log_file, "/api/v1/no-such-route")
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.wait()
    output = log_file.read_text()
    _assert_redacted(output, token)
    assert "GET /api/v1/ws/health?token=[redacted]&access_token=[redacted]" in output  # uvicorn.access
