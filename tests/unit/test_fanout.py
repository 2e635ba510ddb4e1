"""The hub on a real event loop, with sinks that are real coroutines whose speed the test controls.

Nothing here asserts on wall-clock time: "slow" is a sink blocked on a gate or yielding many times per
frame, and progress is compared by counting what each sink received at one point in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from engine.fanout.hub import Hub, SubscriberClosed
from engine.protocol.close_codes import CloseCode

ROOM = "room:r"


class Client:
    """A sink plus close, like a WebSocket. `allow` frames pass, then each send waits for `gate`;
    `steps` makes every send yield that many times to the loop (slow but moving)."""

    def __init__(self, *, allow: int | None = None, steps: int = 0) -> None:
        self.frames: list[str] = []
        self.closes: list[tuple[int, str]] = []
        self.error: Exception | None = None  # raised by the next send, like a socket that went away
        self.allow = allow
        self.steps = steps
        self.gate = asyncio.Event()
        self.closed = asyncio.Event()
        self._received = asyncio.Event()

    async def send_text(self, frame: str) -> None:
        if self.error is not None:
            raise self.error
        if self.allow is not None and len(self.frames) >= self.allow:
            await self.gate.wait()
        for _ in range(self.steps):
            await asyncio.sleep(0)
        self.frames.append(frame)
        self._received.set()

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        self.closed.set()

    def open(self) -> None:
        self.allow = None
        self.gate.set()

    def block(self) -> None:
        """Let no further frame through until `open`."""
        self.allow = len(self.frames)
        self.gate.clear()

    async def received(self, count: int) -> list[str]:
        """Wait until `count` frames arrived (the timeout only guards against a hang)."""
        async with asyncio.timeout(5):
            while len(self.frames) < count:
                self._received.clear()
                await self._received.wait()
        return self.frames


async def settle(rounds: int = 20) -> None:
    """Let every ready task run a few steps (deterministic: no clock involved)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


@asynccontextmanager
async def running_hub(**options: Any) -> AsyncIterator[Hub]:
    hub = Hub(**options)
    try:
        yield hub
    finally:
        await hub.aclose()


def connect(hub: Hub, connection_id: str, client: Client, *topics: str) -> None:
    hub.subscribe(connection_id, client.send_text, client.close)
    for topic in topics:
        hub.join(connection_id, topic)


async def test_fanout_delivers_in_publish_order_per_connection() -> None:
    async with running_hub() as hub:
        both, only_a = Client(steps=1), Client()
        connect(hub, "c1", both, "room:a", "room:b")
        connect(hub, "c2", only_a, "room:a")
        published: list[str] = []
        for i in range(1, 101):
            topic = "room:a" if i % 3 else "room:b"
            hub.publish(topic, f"{topic}#{i}", seq=i)
            published.append(f"{topic}#{i}")
        assert await both.received(100) == published
        assert await only_a.received(len([p for p in published if p.startswith("room:a")])) == [
            p for p in published if p.startswith("room:a")
        ]


async def test_fanout_publish_never_waits_for_a_blocked_sink() -> None:
    async with running_hub() as hub:
        blocked, fast = Client(allow=0), Client()
        connect(hub, "slow", blocked, ROOM)
        connect(hub, "fast", fast, ROOM)
        # publish is synchronous: it returned for all 50 before any sink ran.
        assert [hub.publish(ROOM, f"m{i}", seq=i) for i in range(1, 51)] == [2] * 50
        await fast.received(50)
        assert blocked.frames == []
        assert hub.subscriber("slow").depth == 49  # the first one is in its sink, waiting
        blocked.open()
        assert await blocked.received(50) == fast.frames


async def test_fanout_slow_sink_does_not_delay_a_fast_one() -> None:
    async with running_hub() as hub:
        slow, fast = Client(steps=50), Client()
        connect(hub, "slow", slow, ROOM)
        connect(hub, "fast", fast, ROOM)
        for i in range(1, 201):
            hub.publish(ROOM, f"m{i}", seq=i)
        await fast.received(200)
        assert len(slow.frames) < 10  # counted at the moment the fast one had everything
        assert await slow.received(200) == fast.frames


async def test_fanout_drops_volatile_before_durable_and_keeps_every_durable() -> None:
    async with running_hub(max_queue=8, high_water=4) as hub:
        client = Client(allow=0)
        connect(hub, "c", client, ROOM)
        hub.publish(ROOM, "d1", seq=1)
        await settle()  # the sender took d1 and waits in the sink
        hub.publish(ROOM, "v1", volatile=True)
        hub.publish(ROOM, "v2", volatile=True)
        hub.publish(ROOM, "d2", seq=2)
        hub.publish(ROOM, "d3", seq=3)
        assert hub.publish(ROOM, "v3", volatile=True) == 0  # over high water: dropped
        for seq in range(4, 9):
            assert hub.publish(ROOM, f"d{seq}", seq=seq) == 1  # d8 evicts v1 and v2 to fit
        assert hub.stats()["dropped_volatile"] == 3
        client.open()
        assert await client.received(8) == [f"d{s}" for s in range(1, 9)]
        assert client.closes == []


async def test_fanout_closes_a_slow_consumer_with_4008_and_its_last_seq() -> None:
    async with running_hub(max_queue=4, high_water=2) as hub:
        stuck, other = Client(allow=2), Client()
        connect(hub, "stuck", stuck, ROOM, "room:quiet", "user:u")
        connect(hub, "other", other, ROOM)
        hub.publish("user:u", "status", seq=7)
        for seq in range(1, 9):
            hub.publish(ROOM, f"d{seq}", seq=seq)
            await asyncio.sleep(0)
        async with asyncio.timeout(5):
            await stuck.closed.wait()
        assert stuck.closes == [(CloseCode.SLOW_CONSUMER, '{"last_seq":{"r":1}}')]
        assert stuck.frames == ["status", "d1"]
        assert hub.subscriber("stuck").close_code == CloseCode.SLOW_CONSUMER
        assert hub.publish(ROOM, "d9", seq=9) == 1  # a closed subscriber takes nothing more
        assert await other.received(9) == [f"d{s}" for s in range(1, 10)]  # the others never noticed
        stats = hub.stats()
        assert stats["slow_consumer_closes"] == 1
        assert stats["queue_depths"] == {"stuck": 0, "other": 0}


async def test_fanout_coalesces_queued_cursors_of_the_same_user() -> None:
    async with running_hub() as hub:
        client = Client(allow=0)
        connect(hub, "c", client, ROOM)
        hub.publish(ROOM, "d1", seq=1)
        await settle()
        hub.publish(ROOM, "a@1", volatile=True, coalesce="a")
        hub.publish(ROOM, "b@1", volatile=True, coalesce="b")
        hub.publish(ROOM, "d2", seq=2)
        hub.publish(ROOM, "a@2", volatile=True, coalesce="a")
        hub.publish(ROOM, "a@3", volatile=True, coalesce="a")
        assert hub.subscriber("c").depth == 3
        client.open()
        assert await client.received(4) == ["d1", "b@1", "d2", "a@3"]
        assert hub.stats()["coalesced"] == 2


async def test_fanout_exclude_skips_the_sender() -> None:
    async with running_hub() as hub:
        mover, watcher = Client(), Client()
        connect(hub, "mover", mover, ROOM)
        connect(hub, "watcher", watcher, ROOM)
        assert hub.publish(ROOM, "cursor", volatile=True, exclude="mover") == 1
        hub.publish(ROOM, "d1", seq=1)
        assert await watcher.received(2) == ["cursor", "d1"]
        assert await mover.received(1) == ["d1"]


async def test_fanout_frames_of_one_event_share_its_seq() -> None:
    async with running_hub() as hub:
        client = Client()
        connect(hub, "c", client, ROOM)
        hub.publish(ROOM, [b'{"type":"room_state"}', '{"type":"user_joined"}'], seq=1)
        assert hub.publish(ROOM, "late copy", seq=1) == 0
        hub.publish(ROOM, "d2", seq=2)
        assert await client.received(3) == ['{"type":"room_state"}', '{"type":"user_joined"}', "d2"]
        assert hub.stats()["delivered"] == 3
        assert hub.stats()["duplicates"] == 1


async def test_fanout_user_stream_reaches_every_connection_of_the_user() -> None:
    async with running_hub() as hub:
        tab1, tab2, stranger = Client(), Client(), Client()
        connect(hub, "t1", tab1, "user:u")
        connect(hub, "t2", tab2, "user:u")
        connect(hub, "s", stranger, "user:v")
        assert hub.publish("user:u", "status online", seq=1) == 2
        assert await tab1.received(1) == await tab2.received(1) == ["status online"]
        assert hub.members("user:u") == {"t1", "t2"}
        assert stranger.frames == []


async def test_fanout_leave_stops_delivery_of_that_topic() -> None:
    async with running_hub() as hub:
        client = Client()
        connect(hub, "c", client, "room:a", "room:b")
        hub.leave("c", "room:a")
        hub.leave("c", "room:a")  # leaving twice is harmless
        assert hub.publish("room:a", "a1", seq=1) == 0
        hub.publish("room:b", "b1", seq=1)
        assert await client.received(1) == ["b1"]
        assert hub.members("room:a") == frozenset()


async def test_fanout_send_waits_for_room_and_fails_once_closed() -> None:
    async with running_hub(max_queue=4, high_water=2) as hub:
        client = Client(allow=0)
        connect(hub, "c", client, ROOM)
        subscriber = hub.subscriber("c")
        for seq in range(1, 4):
            hub.publish(ROOM, f"d{seq}", seq=seq)
        await settle()
        reply = asyncio.create_task(subscriber.send('{"type":"pong"}'))
        await settle()
        assert not reply.done()  # two queued behind the one in flight: at high water, it waits
        client.open()
        await reply
        assert await client.received(4) == ["d1", "d2", "d3", '{"type":"pong"}']

        client.block()
        for seq in range(4, 7):
            hub.publish(ROOM, f"d{seq}", seq=seq)
        await settle()
        waiting = asyncio.create_task(subscriber.send("never"))
        await settle()
        await hub.unsubscribe("c")
        with pytest.raises(SubscriberClosed):
            await waiting


async def test_fanout_sink_failure_closes_with_1011_not_silently() -> None:
    async with running_hub() as hub:
        client = Client()
        connect(hub, "c", client, ROOM)
        hub.publish(ROOM, "d1", seq=1)
        await client.received(1)
        client.error = ConnectionResetError("peer gone")
        hub.publish(ROOM, "d2", seq=2)
        async with asyncio.timeout(5):
            await client.closed.wait()
        code, reason = client.closes[0]
        assert code == CloseCode.INTERNAL_ERROR
        assert orjson.loads(reason) == {"last_seq": {"r": 1}}
        assert hub.stats()["sink_failures"] == 1


async def test_fanout_unsubscribe_stops_the_sender_without_leaking_tasks() -> None:
    before = asyncio.all_tasks()
    hub = Hub(max_queue=2, high_water=1)
    idle, in_sink = Client(), Client(allow=0)

    async def never_closes(code: int, reason: str) -> None:
        await asyncio.Event().wait()

    connect(hub, "idle", idle, ROOM)
    connect(hub, "in_sink", in_sink, ROOM)
    hub.subscribe("closing", Client(allow=0).send_text, never_closes)
    hub.join("closing", ROOM)
    hub.join("closing", "room:busy")
    for seq in range(1, 4):
        hub.publish(ROOM, f"d{seq}", seq=seq)
        await settle()
    for seq in range(1, 4):
        hub.publish("room:busy", f"b{seq}", seq=seq)  # overflows "closing" only
    await settle()
    assert await idle.received(3) == ["d1", "d2", "d3"]
    assert hub.subscriber("in_sink").depth == 2  # one waiting in its sink, two queued
    assert hub.subscriber("closing").closed
    # idle's and in_sink's senders, and closing's close, which never returns
    assert len(asyncio.all_tasks() - before) == 3
    for connection_id in ("idle", "in_sink", "closing"):
        await hub.unsubscribe(connection_id)
    assert asyncio.all_tasks() - before == set()
    assert hub.publish(ROOM, "after", seq=6) == 0
    assert hub.stats()["subscribers"] == 0
    with pytest.raises(KeyError):
        hub.subscriber("idle")


async def test_fanout_refuses_a_second_subscribe_and_bad_marks() -> None:
    async with running_hub() as hub:
        connect(hub, "c", Client())
        with pytest.raises(ValueError):
            connect(hub, "c", Client())
    with pytest.raises(ValueError):
        Hub(max_queue=4, high_water=4)
