"""`HeldWrites` (api/turn_writes.py): a turn's frames leave in one write at the end of the turn, after
nothing and before anything else the connection writes; a closed connection's are dropped.

`Wire` records what an asyncio transport would have been asked to write; the loop is a real one.
"""

from __future__ import annotations

import asyncio

from api.turn_writes import FLUSH_BYTES, HeldWrites


class Wire:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.writes.append(bytes(data))

    def writelines(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def held(wire: Wire) -> HeldWrites:
    return HeldWrites(wire, asyncio.get_running_loop())  # type: ignore[arg-type]


async def next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_the_frames_of_one_turn_leave_as_one_write_when_the_turn_ends() -> None:
    first, second = Wire(), Wire()
    a, b = held(first), held(second)
    a.hold(b"1")
    b.hold(b"x")
    a.hold(b"2")
    a.hold(b"3")
    assert first.writes == [] and second.writes == []
    await next_turn()
    assert first.writes == [b"123"]
    assert second.writes == [b"x"]
    a.hold(b"4")
    await next_turn()
    assert first.writes == [b"123", b"4"]


async def test_anything_else_written_or_a_close_goes_after_what_is_held() -> None:
    wire = Wire()
    writes = held(wire)
    writes.hold(b"frame")
    writes.write(b"pong")
    writes.hold(b"later")
    writes.writelines([b"clo", b"se"])
    writes.hold(b"last")
    writes.close()
    await next_turn()
    assert wire.writes == [b"frame", b"pong", b"later", b"close", b"last"]
    assert wire.closing


async def test_a_burst_over_the_limit_is_written_at_once() -> None:
    wire = Wire()
    writes = held(wire)
    chunk = b"c" * (FLUSH_BYTES // 2)
    writes.hold(chunk)
    writes.hold(chunk)
    assert wire.writes == []
    writes.hold(b"!")
    assert wire.writes == [chunk + chunk + b"!"]
    await next_turn()
    assert len(wire.writes) == 1


async def test_a_connection_closed_or_aborted_meanwhile_gets_nothing_more() -> None:
    closed, aborted = Wire(), Wire()
    a, b = held(closed), held(aborted)
    a.hold(b"late")
    closed.closing = True  # the peer went away during the turn
    b.hold(b"dropped")
    b.abort()
    await next_turn()
    assert closed.writes == [] and aborted.writes == []
    assert aborted.aborted


async def test_every_other_use_is_the_transports_own() -> None:
    wire = Wire()
    writes = held(wire)
    assert writes.get_extra_info("peername") == "info:peername"
    assert not writes.is_closing()
    wire.closing = True
    assert writes.is_closing()
