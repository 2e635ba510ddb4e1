"""The fanout benchmark's lean client reads what a real WebSocket server writes: the figures of
docs/performance.md are only as right as its framing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import CloseCode

from bench import raw_client

LONG = "x" * 70_000  # past 65,535 bytes: the 8-byte length
MEDIUM = "y" * 300  # past 125 bytes: the 2-byte length


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        if message == "fragments":
            await ws.send(["one ", "two ", "three"])  # a fragmented text message
        elif message == "ping":
            await (await ws.ping(b"are you there"))  # waits for the client's pong
            await ws.send("ponged")
        elif message == "bye":
            await ws.close(CloseCode.GOING_AWAY, "bye")
        else:
            await ws.send(message)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with serve(_echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/api/v1/ws?token=t"


async def _received(url: str, sends: list[str], count: int) -> tuple[list[bytes], raw_client.RawClient]:
    got: list[bytes] = []
    enough = asyncio.Event()

    def on_text(payload: bytes, at: float) -> None:
        got.append(payload)
        if len(got) == count:
            enough.set()

    client = await raw_client.connect(url, on_text)
    for text in sends:
        await client.send(text)
    async with asyncio.timeout(10):
        await enough.wait()
    return got, client


async def test_text_frames_of_every_length_come_back_whole_and_in_order(url: str) -> None:
    sends = ["short", MEDIUM, LONG, "é ünïcode ✓"]
    got, client = await _received(url, sends, len(sends))
    assert got == [s.encode() for s in sends]
    await client.close()
    assert client.close_code == 1000


async def test_a_fragmented_message_is_one_text(url: str) -> None:
    got, client = await _received(url, ["fragments", "after"], 2)
    assert got == [b"one two three", b"after"]
    await client.close()


async def test_a_ping_is_answered(url: str) -> None:
    got, client = await _received(url, ["ping"], 1)
    assert got == [b"ponged"]
    await client.close()


async def test_the_server_closing_is_seen_with_its_code(url: str) -> None:
    client = await raw_client.connect(url, lambda payload, at: None)
    await client.send("bye")
    async with asyncio.timeout(10):
        await client.wait_closed()
    assert client.close_code == CloseCode.GOING_AWAY


async def test_a_refused_handshake_fails_the_connect() -> None:
    async def refuse(connection: ServerConnection, request: object) -> object:
        return connection.respond(403, "no\n")

    async with serve(_echo, "127.0.0.1", 0, process_request=refuse) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        with pytest.raises(raw_client.HandshakeFailed):
            await raw_client.connect(f"ws://127.0.0.1:{port}/", lambda payload, at: None)
