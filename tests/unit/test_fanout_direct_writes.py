"""The hub writing through a transport's `write_now`: directly when the socket can take a frame, through
the sender task when it cannot, and in publish order either way.

`Socket` behaves like uvicorn's protocol (api/ws_protocol.py): while paused, `write_now` refuses and
`send_text` waits for it to resume. Nothing here depends on wall-clock time.
"""

from __future__ import annotations

import asyncio

import pytest

from engine.fanout.hub import Hub
from engine.fanout.send_queue import Entry
from engine.protocol.close_codes import CloseCode
from tests.unit.test_fanout import running_hub, settle

ROOM = "room:r"


class Socket:
    def __init__(self) -> None:
        self.frames: list[str] = []  # what reached the wire, in order
        self.direct = 0  # frames written by write_now
        self.writes: list[tuple[str, ...]] = []  # each write_now call that wrote
        self.awaited = 0  # frames written by send_text
        self.closes: list[tuple[int, str]] = []
        self.error: Exception | None = None
        self.writable = asyncio.Event()
        self.writable.set()

    def write_now(self, frames: tuple[str, ...]) -> bool:
        if self.error is not None:
            raise self.error
        if not self.writable.is_set():
            return False
        self.frames.extend(frames)
        self.direct += len(frames)
        self.writes.append(frames)
        return True

    async def send_text(self, frame: str) -> None:
        await self.writable.wait()
        self.frames.append(frame)
        self.awaited += 1

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))

    def pause(self) -> None:
        self.writable.clear()

    def resume(self) -> None:
        self.writable.set()


async def connect(hub: Hub, connection_id: str, socket: Socket, *topics: str) -> None:
    hub.subscribe(connection_id, socket.send_text, socket.close, socket.write_now)
    for topic in topics:
        hub.join(connection_id, topic)
    await settle()


async def test_an_idle_socket_is_written_by_the_publisher_without_the_sender() -> None:
    async with running_hub() as hub:
        sockets = [Socket() for _ in range(3)]
        for number, socket in enumerate(sockets):
            await connect(hub, f"c{number}", socket, ROOM)
        for seq in range(1, 51):
            assert hub.publish(ROOM, f"m{seq}", seq=seq) == 3
            for socket in sockets:  # written before publish returned: no task ran in between
                assert socket.frames[-1] == f"m{seq}"
        for socket in sockets:
            assert (socket.direct, socket.awaited) == (50, 0)
        stats = hub.stats()
        assert stats["delivered"] == stats["written_directly"] == 150
        assert hub.subscriber("c0").last_seq == {ROOM: 50}


async def test_a_paused_socket_queues_and_keeps_publish_order_when_it_resumes() -> None:
    async with running_hub() as hub:
        socket = Socket()
        await connect(hub, "c", socket, ROOM)
        hub.publish(ROOM, "m1", seq=1)
        socket.pause()
        for seq in range(2, 6):
            hub.publish(ROOM, f"m{seq}", seq=seq)
        await settle()
        assert socket.frames == ["m1"]
        assert hub.subscriber("c").depth == 3  # m2 is in the sender, waiting for the socket
        socket.resume()  # writable again, but m3..m5 are still queued: m6 must wait behind them
        hub.publish(ROOM, "m6", seq=6)
        await settle()
        assert socket.frames == [f"m{seq}" for seq in range(1, 7)]
        assert (socket.direct, socket.awaited) == (1, 5)
        hub.publish(ROOM, "m7", seq=7)  # the queue drained: direct again
        assert socket.frames[-1] == "m7"
        assert socket.direct == 2


async def test_the_frames_of_one_event_are_offered_in_one_write() -> None:
    async with running_hub() as hub:
        socket = Socket()
        await connect(hub, "c", socket, ROOM)
        hub.publish(ROOM, ("a1", "a2"), seq=1)
        socket.pause()
        hub.publish(ROOM, ("b1", "b2"), seq=2)
        await settle()
        assert socket.writes == [("a1", "a2")]  # one call: the transport writes both or neither
        socket.resume()
        await settle()
        assert socket.frames == ["a1", "a2", "b1", "b2"]
        assert hub.stats()["delivered"] == 4


async def test_a_connection_that_only_writes_directly_never_starts_a_sender_task() -> None:
    async with running_hub() as hub:
        socket = Socket()
        await connect(hub, "c", socket, ROOM)
        subscriber = hub.subscriber("c")
        subscriber.hold(ROOM)
        subscriber.release(ROOM, 0)  # a join with nothing to replay
        hub.publish(ROOM, "m1", seq=1)
        await subscriber.flush()
        assert socket.frames == ["m1"]
        assert subscriber._sender is None  # no task: the memory an idle connection does not hold
        socket.pause()
        hub.publish(ROOM, "m2", seq=2)
        assert subscriber._sender is not None  # the first frame that has to wait starts it
        socket.resume()
        await subscriber.flush()
        assert socket.frames == ["m1", "m2"]


async def test_a_seq_written_directly_is_remembered_so_its_repeat_is_dropped() -> None:
    async with running_hub() as hub:
        socket = Socket()
        await connect(hub, "c", socket, ROOM)
        hub.publish(ROOM, "m1", seq=1)
        hub.publish(ROOM, "m2", seq=2)
        # A node that read the log twice publishes seq 2 again, and seq 1: neither reaches the wire.
        assert hub.publish(ROOM, "m2 again", seq=2) == 0
        assert hub.publish(ROOM, "m1 again", seq=1) == 0
        hub.publish(ROOM, "m3", seq=3)
        assert socket.frames == ["m1", "m2", "m3"]
        assert hub.stats()["duplicates"] == 2
        assert hub.subscriber("c").queue.depth == 0


async def test_a_held_topic_is_not_written_directly_until_its_release() -> None:
    async with running_hub() as hub:
        socket = Socket()
        await connect(hub, "c", socket, ROOM, "room:other")
        subscriber = hub.subscriber("c")
        subscriber.hold(ROOM)  # a join replaying the log: live messages wait behind the replay
        hub.publish(ROOM, "m2", seq=2)
        hub.publish("room:other", "o1", seq=1)  # another topic is not held: written at once
        assert socket.frames == ["o1"]
        subscriber.offer_durable(Entry(("m1",), ROOM, 1))  # the replayed event
        subscriber.release(ROOM, 1)
        await subscriber.flush()
        assert socket.frames == ["o1", "m1", "m2"]
        assert subscriber.last_seq == {ROOM: 2, "room:other": 1}


async def test_a_direct_write_that_fails_closes_the_connection_resumably() -> None:
    async with running_hub() as hub:
        socket = Socket()
        await connect(hub, "c", socket, ROOM)
        hub.publish(ROOM, "m1", seq=1)
        socket.error = ConnectionResetError("gone")
        hub.publish(ROOM, "m2", seq=2)
        await settle()
        assert socket.closes == [(CloseCode.INTERNAL_ERROR, '{"last_seq":{"r":1}}')]
        assert hub.stats()["sink_failures"] == 1
        assert hub.subscriber("c").closed


@pytest.mark.parametrize("queued_volatile", [0, 2])
async def test_a_socket_paused_for_good_is_closed_as_a_slow_consumer(queued_volatile: int) -> None:
    async with running_hub(max_queue=4, high_water=2) as hub:
        socket = Socket()
        await connect(hub, "c", socket, ROOM)
        socket.pause()
        hub.publish(ROOM, "d1", seq=1)
        await settle()  # d1 is in the sender, waiting for the socket
        for _ in range(queued_volatile):
            hub.publish(ROOM, "cursor", volatile=True)
        for seq in range(2, 7):
            hub.publish(ROOM, f"d{seq}", seq=seq)
        await settle()
        assert socket.frames == []
        assert [code for code, _ in socket.closes] == [CloseCode.SLOW_CONSUMER]
