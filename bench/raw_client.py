"""A lean WebSocket client for the load generator: frames read where the bytes arrive, no task per frame.

Why: bench/fanout.py's one process on one core reads every delivery of a run (40,000 frames a second
at 2,000 msgs/s). Through the `websockets` asyncio client each frame was parsed by its protocol, queued,
and handed to the connection's reader task in a later turn of the loop, so a delivery was timed when
that task got to it: behind every frame read before it, and behind the generator's own stalls, for
every server alike. Here a connection is an `asyncio.Protocol`: `data_received` splits the bytes into
frames and hands each text frame to a callback with the time its bytes were read, in the same call.

What it speaks is what the benchmark needs and no more: the opening handshake (checked), unfragmented
and fragmented text frames, pings answered with pongs, and the closing handshake. Client frames are
masked, as RFC 6455 requires, by `websockets`' own framing. Reading is by hand on purpose: the same
client around the library's sans-I/O `ClientProtocol` was tried (docs/performance.md, "The load
generator's client"), and its parsing per frame made the generator the limit of the relay again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from websockets.frames import Frame, Opcode

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _CONTINUATION, _CLOSE, _PING = 0x1, 0x0, 0x8, 0x9
OPEN_TIMEOUT: Final = 30.0  # seconds for the connection and its opening handshake
CLOSE_TIMEOUT: Final = 5.0  # seconds the closing handshake may take before the socket is dropped

OnText = Callable[[bytes, float], None]
"""Called with a text frame's payload (UTF-8) and the `time.perf_counter()` its last bytes were read."""


class HandshakeFailed(Exception):
    pass


class RawClient(asyncio.Protocol):
    """One connection. `close_code` is set once the server closed it (or the connection was lost)."""

    def __init__(self, on_text: OnText, request: bytes, key: bytes) -> None:
        self.on_text = on_text
        self.close_code: int | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._request = request
        self._accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragmented_text = False  # the message whose continuations are arriving is a text
        self._close_sent = False
        self._closed = asyncio.get_running_loop().create_future()
        self._writable = asyncio.Event()
        self._writable.set()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self._buffer
        buffer += data
        if not self.opened.done() and not self._handshake():
            return
        while True:
            if len(buffer) < 2:
                return
            first, length = buffer[0], buffer[1] & 0x7F
            if buffer[1] & 0x80:
                raise HandshakeFailed("a masked frame from the server (RFC 6455 5.1 forbids it)")
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            end = start + length
            if len(buffer) < end:
                return
            payload = bytes(buffer[start:end])
            del buffer[:end]
            self._frame(first & 0x80, first & 0x0F, payload, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = 1006
        if not self.opened.done():
            self.opened.set_exception(exc or HandshakeFailed("closed during the handshake"))
        if not self._closed.done():
            self._closed.set_result(None)
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # The connection's own use

    async def send(self, text: str) -> None:
        """Write one text frame; waits while the socket's buffer is over its high-water mark, and
        otherwise hands the loop back once, so an unpaced sender cannot starve the readers."""
        assert self._transport is not None
        if self._transport.is_closing():
            return
        self._transport.write(Frame(Opcode.TEXT, text.encode()).serialize(mask=True))
        if self._writable.is_set():
            await asyncio.sleep(0)
        else:
            await self._writable.wait()

    async def close(self) -> None:
        """The closing handshake: our close frame, then wait for the server's (or give up)."""
        if self._transport is None or self._transport.is_closing():
            return
        self._close_sent = True
        self._transport.write(Frame(Opcode.CLOSE, (1000).to_bytes(2, "big")).serialize(mask=True))
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(self._closed)
        except TimeoutError:
            self._transport.abort()

    async def wait_closed(self) -> None:
        """Until the connection is gone, whoever closed it."""
        await asyncio.shield(self._closed)

    # Inside

    def _handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        fields = (line.partition(":") for line in head[1:])
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        if head[0].split(" ")[1:2] != ["101"] or headers.get("sec-websocket-accept") != self._accept.decode():
            self.opened.set_exception(HandshakeFailed(head[0]))
            assert self._transport is not None
            self._transport.close()
            return False
        self.opened.set_result(None)
        return True

    def _frame(self, fin: int, opcode: int, payload: bytes, now: float) -> None:
        if opcode == _TEXT and fin:
            self.on_text(payload, now)
        elif opcode == _TEXT or (opcode == _CONTINUATION and self._fragmented_text):
            self._fragmented_text = not fin
            self._fragments.append(payload)
            if fin:
                whole, self._fragments = b"".join(self._fragments), []
                self.on_text(whole, now)
        elif opcode == _PING:
            assert self._transport is not None
            self._transport.write(Frame(Opcode.PONG, payload).serialize(mask=True))
        elif opcode == _CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            assert self._transport is not None
            if not self._close_sent and not self._transport.is_closing():
                self._close_sent = True  # our reply to the server's close
                self._transport.write(Frame(Opcode.CLOSE, payload[:2]).serialize(mask=True))
            self._transport.close()


async def connect(url: str, on_text: OnText) -> RawClient:
    """Open `url` (ws://host:port/path?query) and finish the opening handshake."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None or parts.port is None:
        raise ValueError(f"expected ws://host:port/..., got {url!r}")
    key = base64.b64encode(os.urandom(16))
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(OPEN_TIMEOUT):
        transport, client = await loop.create_connection(
            lambda: RawClient(on_text, request, key), parts.hostname, parts.port
        )
        try:
            await asyncio.shield(client.opened)
        except BaseException:
            transport.abort()  # a timeout or a refusal: nothing is left open behind the caller
            raise
    return client
