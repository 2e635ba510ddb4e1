"""`write_now` of api/ws_protocol.py on a real uvicorn server and a real client: frames of every length
class arrive intact, in order with `send`; a socket whose client stops reading pauses it (False) until
the client drains it; a closed socket refuses; frames taken just before a `send` or a close, in the
same turn of the loop, still arrive before them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from api.ws_protocol import WRITE_NOW, DirectWriteProtocol
from bench.common import free_port

HANG_GUARD = 30.0  # bounds a wait that would otherwise hang; not a speed check
TEXTS = ["", "a" * 125, "b" * 126, "c" * 65_535, "d" * 65_536, "é€😀" * 7_000, "e" * 20_000]

Handler = Callable[[WebSocket, Callable[[tuple[str, ...]], bool]], Awaitable[None]]


@asynccontextmanager
async def socket_server(handler: Handler) -> AsyncIterator[str]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            websocket = WebSocket(scope, receive, send)
            await websocket.accept()
            await handler(websocket, scope["extensions"][WRITE_NOW])

    port = free_port()
    config = uvicorn.Config(
        app, port=port, ws=DirectWriteProtocol, ws_per_message_deflate=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(HANG_GUARD):
            while True:
                if server.started:
                    break
                await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        await task


async def test_frames_of_every_length_arrive_intact_and_in_order_with_send() -> None:
    async def handler(websocket: WebSocket, write_now: Callable[[tuple[str, ...]], bool]) -> None:
        for number, text in enumerate(TEXTS):
            if number % 2:
                await websocket.send_text(text)
            else:
                assert write_now((text,))
        assert write_now(("first", "second"))
        await websocket.receive_text()  # the client's goodbye

    async with socket_server(handler) as url, connect(url, max_size=None) as client:
        received = [await client.recv() for _ in range(len(TEXTS) + 2)]
        await client.send("bye")
    assert received == [*TEXTS, "first", "second"]


async def test_a_client_that_stops_reading_pauses_it_until_drained_and_a_closed_socket_refuses() -> None:
    outcomes: list[str] = []
    paused = asyncio.Event()
    drained = asyncio.Event()

    async def handler(websocket: WebSocket, write_now: Callable[[tuple[str, ...]], bool]) -> None:
        chunk = "x" * 65_536
        written = 0
        while write_now((f"{written:08d}{chunk}",)):  # the client reads nothing yet
            written += 1
            assert written < 10_000, "the socket never paused"
        outcomes.append(f"paused after {written}")
        paused.set()
        await websocket.send_text("last")  # waits until the client has drained the socket
        await drained.wait()
        assert write_now(("again",))
        await websocket.close()
        outcomes.append(f"after close: {write_now(('late',))}")

    async with socket_server(handler) as url, connect(url, max_size=None, max_queue=1) as client:
        async with asyncio.timeout(HANG_GUARD):
            await paused.wait()
        count = int(outcomes[0].removeprefix("paused after "))
        assert count >= 1
        frames = [await client.recv() for _ in range(count + 1)]
        assert [frame[:8] for frame in frames[:-1]] == [f"{n:08d}" for n in range(count)]
        assert frames[-1] == "last"
        drained.set()
        assert await client.recv() == "again"
        async with asyncio.timeout(HANG_GUARD):
            await client.wait_closed()
    assert outcomes[1] == "after close: False"


async def test_frames_taken_in_the_turn_of_a_send_or_a_close_arrive_before_it() -> None:
    async def handler(websocket: WebSocket, write_now: Callable[[tuple[str, ...]], bool]) -> None:
        assert write_now(("one", "two"))
        await websocket.send_text("three")  # the same turn: nothing has reached the socket yet
        assert write_now(("four",))
        await websocket.close(code=4001, reason="done")

    async with socket_server(handler) as url, connect(url) as client:
        received = [await client.recv() for _ in range(4)]
        async with asyncio.timeout(HANG_GUARD):
            await client.wait_closed()
        assert received == ["one", "two", "three", "four"]
        assert client.close_code == 4001
        assert client.close_reason == "done"
