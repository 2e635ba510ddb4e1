"""Request heads are bounded in size and in time, for plain requests and WebSocket handshakes alike:
what a client gets, read from a raw socket, from `collab serve` in a process of its own (whose memory
is measured too).

MAX_HEADER_BYTES keeps its default (16 KiB); HEADER_TIMEOUT_SECONDS is 1 here so the test is quick.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from api.settings import Settings
from api.tokens import mint_token
from bench.common import free_port
from tests.api.conftest import SECRET, make_settings

ROOT = Path(__file__).resolve().parents[2]
MAX_HEADER_BYTES = Settings.model_fields["max_header_bytes"].default
HEADER_TIMEOUT = 1.0
# After an answer the server lingers (api/http_protocol.py: LINGER_SECONDS) before it closes; a client
# that has finished writing sees the end of the stream at once.
ANSWER_WITHIN = 5.0


@dataclass(frozen=True)
class ServerProcess:
    proc: asyncio.subprocess.Process
    port: int
    token: str

    def rss(self) -> int:
        return int(psutil.Process(self.proc.pid).memory_info().rss)


@pytest.fixture(scope="module")
async def server_process(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("heads")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "DATABASE_URL", "LOG_"))}
    env.update(
        DATA_DIR=str(data_dir),
        DATABASE_URL=database_url,
        JWT_SECRET_KEY=SECRET,
        HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
    )
    with (data_dir / "stderr.log").open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "api.cli", "serve", "--port", str(port),
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        async with asyncio.timeout(60), httpx.AsyncClient() as http:
            while True:
                assert proc.returncode is None, (data_dir / "stderr.log").read_text()
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/api/v1/ws/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        token = mint_token(make_settings(database_url), sub="heads-user", secret=SECRET)
        yield ServerProcess(proc, port, token)
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.wait()


def head(path: str, *extra: str, upgrade: bool = False, end: bool = True) -> bytes:
    """A GET request head; `upgrade` makes it a WebSocket handshake; `end=False` leaves it unfinished."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    if upgrade:
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
    lines += extra
    return ("\r\n".join(lines) + "\r\n" + ("\r\n" if end else "")).encode()


async def read_to_end(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sends until it closes; fails if it has not closed within `within` s."""
    received = b""
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                received += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open over {within}s; it sent {received[:200]!r}")
    return received


async def exchange(server: ServerProcess, data: bytes, within: float = ANSWER_WITHIN) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        await writer.drain()
        return await read_to_end(reader, within)
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1])


@pytest.mark.parametrize("upgrade", [False, True], ids=["http", "websocket"])
async def test_a_head_over_the_limit_is_answered_431_and_closed(
    server_process: ServerProcess, upgrade: bool
) -> None:
    big = head(
        f"/api/v1/ws?token={server_process.token}" if upgrade else "/api/v1/ws/health",
        *[f"X-Filler-{i}: {'a' * 1000}" for i in range(MAX_HEADER_BYTES // 1000 + 1)],
        upgrade=upgrade,
    )
    assert len(big) > MAX_HEADER_BYTES
    response = await exchange(server_process, big)
    assert status_of(response) == 431
    assert b"connection: close" in response.lower()


async def test_a_websocket_header_line_over_8_kib_is_answered_431_and_closed(
    server_process: ServerProcess,
) -> None:
    """Within MAX_HEADER_BYTES, but over the WebSocket library's limit for one header line: its own
    431 must reach the client too, and the socket must close (uvicorn 0.55 flushes it)."""
    line = head(f"/api/v1/ws?token={server_process.token}", f"X-Filler: {'a' * 9000}", upgrade=True)
    assert len(line) < MAX_HEADER_BYTES
    assert status_of(await exchange(server_process, line)) == 431


async def test_unfinished_huge_heads_are_refused_without_holding_memory(
    server_process: ServerProcess,
) -> None:
    """Ten connections each send a 20 MB header that never ends: each gets 431 once it passes the
    limit, and the server does not keep what they sent."""
    chunk = b"a" * 65536
    total = 20 * 1024 * 1024
    connections = [await asyncio.open_connection("127.0.0.1", server_process.port) for _ in range(10)]
    before = server_process.rss()

    async def send_unfinished(writer: asyncio.StreamWriter) -> None:
        writer.write(head("/api/v1/ws/health", end=False) + b"X-Filler: ")
        try:
            for _ in range(total // len(chunk)):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed once the linger ended: the answer was sent before

    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(send_unfinished(writer) for _, writer in connections))
        grown = server_process.rss() - before
        assert grown < 40 * 1024 * 1024, f"the server grew by {grown / 2**20:.0f} MB"
        responses = await asyncio.gather(*(read_to_end(reader, ANSWER_WITHIN) for reader, _ in connections))
    finally:
        for _, writer in connections:
            writer.close()
    assert [status_of(response) for response in responses] == [431] * 10


async def test_unfinished_heads_are_answered_408_within_the_timeout(server_process: ServerProcess) -> None:
    """200 handshakes that stop halfway get 408 and are closed about HEADER_TIMEOUT_SECONDS after
    they began; connections that send nothing are closed without an answer."""

    async def partial(upgrade: bool) -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_process.port)
        try:
            writer.write(head(f"/api/v1/ws?token={server_process.token}", upgrade=upgrade, end=False))
            await writer.drain()
            started = time.monotonic()
            response = await read_to_end(reader, HEADER_TIMEOUT + ANSWER_WITHIN)
            return response, time.monotonic() - started
        finally:
            writer.close()

    async def silent() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_process.port)
        try:
            return await read_to_end(reader, HEADER_TIMEOUT + ANSWER_WITHIN)
        finally:
            writer.close()

    results = await asyncio.gather(*(partial(upgrade=i % 2 == 0) for i in range(200)))
    assert [status_of(response) for response, _ in results] == [408] * 200
    slowest = max(elapsed for _, elapsed in results)
    assert slowest < HEADER_TIMEOUT + 2, slowest
    assert await asyncio.gather(*(silent() for _ in range(5))) == [b""] * 5


async def test_heads_within_the_bounds_are_served(server_process: ServerProcess) -> None:
    """A head just under the limit, one sent in pieces within the timeout, and two pipelined requests
    are answered as usual; so is a WebSocket handshake."""
    filler = "X-Filler: " + "a" * (MAX_HEADER_BYTES - 200)
    close = "Connection: close"
    assert status_of(await exchange(server_process, head("/api/v1/ws/health", filler, close))) == 200

    reader, writer = await asyncio.open_connection("127.0.0.1", server_process.port)
    try:
        whole = head("/api/v1/ws/health", close)
        for piece in (whole[:10], whole[10:30], whole[30:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(HEADER_TIMEOUT / 4)
        assert status_of(await read_to_end(reader, ANSWER_WITHIN)) == 200
    finally:
        writer.close()

    pipelined = await exchange(server_process, head("/api/v1/ws/health") + head("/api/v1/ws/health", close))
    assert pipelined.count(b"HTTP/1.1 200 OK") == 2

    upgrade = head(f"/api/v1/ws?token={server_process.token}", upgrade=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", server_process.port)
    try:
        writer.write(upgrade)
        await writer.drain()
        async with asyncio.timeout(ANSWER_WITHIN):
            answer = await reader.readuntil(b"\r\n\r\n")
        assert status_of(answer) == 101
    finally:
        writer.close()
