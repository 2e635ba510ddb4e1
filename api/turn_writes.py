"""A connection's direct writes, held until the end of the event loop's turn and written as one.

Why: the events of one committed batch are published in one turn of the loop (every appending task
resumes in it), so a member of a busy room is written several frames in that turn, plus its own
acknowledgements. Each `transport.write` on an idle socket is a `send` system call, the largest single
cost of fanout (docs/performance.md). Holding a connection's frames for the rest of the turn and
writing them as one buffer makes that one call per connection and turn, however many frames it got:
what a busy room costs then grows with its connections, less with its messages.

The frames wait at most until the loop's next turn begins. Order is kept with everything else the
protocol writes (a close frame, a pong, a frame that waited for the socket): every other write and a
close go through `HeldWrites`, which writes what it holds first.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger(__name__)

FLUSH_BYTES: Final = 65_536
"""Held bytes are written at once past this, so a burst still meets the socket's high-water mark."""


@dataclass
class SocketWrites:
    """This process's held writes since start: `frames / writes` is how many frames one system call
    carried (`/ws/stats/detailed`, and bench/fanout.py prints it)."""

    writes: int = 0
    frames: int = 0


counts = SocketWrites()


class _Turn:
    """The connections of one loop holding frames this turn; one callback writes them all."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.holding: list[HeldWrites] = []

    def add(self, writes: HeldWrites) -> None:
        if not self.holding:
            self.loop.call_soon(self.flush)
        self.holding.append(writes)

    def flush(self) -> None:
        holding, self.holding = self.holding, []
        for writes in holding:
            writes.flush()


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turn] = weakref.WeakKeyDictionary()


def _turn_of(loop: asyncio.AbstractEventLoop) -> _Turn:
    turn = _turns.get(loop)
    if turn is None:
        turn = _turns[loop] = _Turn(loop)
    return turn


class HeldWrites:
    """Stands in for a connection's transport: `hold` adds bytes for the end of the turn, and every
    other use of the transport is the transport's own, after what is held has been written."""

    __slots__ = ("_held", "_held_bytes", "_turn", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._turn = _turn_of(loop)

    def hold(self, data: bytes) -> None:
        counts.frames += 1
        if not self._held:
            self._turn.add(self)
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes > FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        self._held = []
        self._held_bytes = 0
        if self.transport.is_closing():
            return  # lost or closed under us: the connection's close handling tells the engine
        counts.writes += 1
        try:
            self.transport.write(data)
        except Exception:  # never seen from a selector or uvloop transport; fail this one connection
            log.exception("a held write failed; aborting the connection")
            self.transport.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.flush()
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def writelines(self, data: Any) -> None:
        self.flush()
        self.transport.writelines(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._held = []
        self._held_bytes = 0
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
