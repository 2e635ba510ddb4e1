"""uvicorn's sans-I/O WebSocket protocol, offering the app a write that does not wait.

ASGI's `send` is a coroutine: every delivery through it costs a task switch in the connection's
sender (engine/fanout/subscriber.py), the ASGI message and uvicorn's checks, and websockets framing the
same text again for each member of a room. Profiled under fanout, that was about a third of the
server's CPU. When a socket's buffer has room nothing needs to wait, so this protocol also puts a
synchronous `write_now(frames) -> bool` in the connection's scope, under the extension key
`WRITE_NOW`. It writes the frames at once or, when the socket is paused (its buffer over the
transport's high-water mark), closing or not open, writes nothing and returns False; the engine then
queues them for the ordinary `send`, which waits for the socket to drain.

A server's frames are unmasked, and no extension is negotiated (`ws_per_message_deflate` is off), so
a text frame is the same bytes for every receiver: it is built once per event (`text_frame`). What
`write_now` takes reaches the socket at the end of the loop's turn, with whatever else the connection
was written in that turn, in one system call (api/turn_writes.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

from api.turn_writes import HeldWrites

WRITE_NOW: Final = "collab.write_now"
"""The scope extension holding the connection's `write_now` (absent under other protocols)."""


SHARED_FRAME_CHARS: Final = 16_384
"""Longer texts are framed on each write, uncached: the cache holds few, small frames."""


def text_frame(text: str) -> bytes:
    """One unfragmented text frame as a server sends it."""
    if len(text) > SHARED_FRAME_CHARS:
        return _frame(text)
    return _shared_frame(text)


def _frame(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


# The publisher writes one event's frame to every member of its room in a row, and a str keeps its
# hash, so the repeats cost a lookup; replies to one connection pass through without evicting much.
_shared_frame = lru_cache(maxsize=32)(_frame)


_STATE_READ = ("close_sent", "disconnected", "writable", "transport", "conn")


class DirectWriteProtocol(WebSocketsSansIOProtocol):
    """Adds `write_now` to each accepted connection's scope; everything else is uvicorn's."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The app's task is created but has not run yet. Without the state `write_now` reads (another
        # uvicorn release), the app just sends the ordinary way.
        if self.response.status_code == 101 and all(hasattr(self, name) for name in _STATE_READ):
            extensions: dict[str, Any] = self.scope["extensions"]
            extensions[WRITE_NOW] = self.write_now
            self.transport = HeldWrites(self.transport, self.loop)  # type: ignore[assignment]

    def write_now(self, frames: tuple[str, ...]) -> bool:
        """Take every frame for this turn's write, or none of them (False) if the socket cannot take
        them now."""
        if (
            self.close_sent
            or self.disconnected
            or not self.writable.is_set()
            or self.transport.is_closing()
            or self.conn.state is not State.OPEN
            or self.conn.extensions
        ):
            return False
        hold = self.transport.hold  # type: ignore[attr-defined]
        for frame in frames:
            hold(text_frame(frame))
        return True
