"""Joining with replay: no gap and no duplicate between the log and live, however they interleave.

The log is a plain in-memory list of events; the engine is modelled the way it works: an event is
published only after it is committed, by one publisher per room in commit order, after a delay. How
many times each party yields to the loop is drawn by hypothesis, so the interleavings vary while each
example stays deterministic (asyncio runs ready tasks in FIFO order; no clock is involved).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.fanout.hub import Hub, SubscriberClosed
from engine.model.events import RecordedEvent
from engine.protocol.close_codes import CloseCode

ROOM = "room:r"
AT = datetime(2026, 1, 1, tzinfo=UTC)


def render(event: RecordedEvent) -> list[str]:
    """Every third event becomes two frames, like a join's `room_state` + `user_joined`."""
    seq = event.stream_version
    return [f"e{seq}", f"e{seq}+"] if seq % 3 == 0 else [f"e{seq}"]


def complete(seq: int) -> str:
    return f"complete@{seq}"


async def yields(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


@dataclass
class FakeLog:
    """The room's stream as a list; reads take their snapshot between two runs of yields."""

    read_yields: Iterator[tuple[int, int]] = field(default_factory=lambda: itertools.repeat((0, 0)))
    events: list[RecordedEvent] = field(default_factory=list)
    reads: int = 0

    def commit(self) -> RecordedEvent:
        seq = len(self.events) + 1
        event = RecordedEvent(seq, ROOM, seq, "Happened", {}, {}, AT)
        self.events.append(event)
        return event

    async def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        before, after = next(self.read_yields)
        self.reads += 1
        await yields(before)
        page = [e for e in self.events if e.stream_id == stream_id and e.stream_version > after_version]
        await yields(after)
        return page[:limit]


class Engine:
    """Commits to the fake log, then publishes in commit order from one task, after `delays` yields."""

    def __init__(self, hub: Hub, log: FakeLog, delays: Iterator[int]) -> None:
        self.hub, self.log, self.delays = hub, log, delays
        self.committed: asyncio.Queue[RecordedEvent | None] = asyncio.Queue()
        self.publisher = asyncio.create_task(self._publish())

    def commit(self) -> RecordedEvent:
        event = self.log.commit()
        self.committed.put_nowait(event)
        return event

    async def _publish(self) -> None:
        while (event := await self.committed.get()) is not None:
            await yields(next(self.delays))
            self.hub.publish(ROOM, render(event), seq=event.stream_version)

    async def drain(self) -> None:
        self.committed.put_nowait(None)
        await self.publisher


class Client:
    def __init__(self, steps: int = 0) -> None:
        self.frames: list[str] = []
        self.closes: list[tuple[int, str]] = []
        self.steps = steps

    async def send_text(self, frame: str) -> None:
        await yields(self.steps)
        self.frames.append(frame)

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))


async def join(
    hub: Hub, engine: Engine, since: int | None, *, page_size: int, view_yields: int = 0
) -> tuple[int, int]:
    """What the engine's join_room does; returns (the view's seq, the seq replayed to)."""
    async with hub.catch_up("joiner", ROOM) as catch_up:
        engine.commit()  # UserJoinedRoom, published live like any other event
        await yields(view_yields)  # projecting the room takes a while; writes go on
        view_seq = len(engine.log.events)
        await catch_up.send(f"state@{view_seq}")
        last = await catch_up.replay(
            engine.log.read_stream,
            render,
            since=view_seq if since is None else since,
            complete=None if since is None else complete,
            page_size=page_size,
        )
    return view_seq, last


def expected_events(first: int, last: int) -> list[str]:
    return [
        frame
        for seq in range(first, last + 1)
        for frame in render(RecordedEvent(seq, ROOM, seq, "", {}, {}, AT))
    ]


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """A private loop per example, so no example can leave a task behind for the next one."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.integers(0, 12),
    since_choice=st.one_of(st.none(), st.integers(0, 12)),
    writes=st.integers(0, 30),
    page_size=st.integers(1, 6),
    max_queue=st.sampled_from([4, 64]),
    client_steps=st.integers(0, 3),
    read_yields=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=6),
    write_yields=st.lists(st.integers(0, 4), min_size=1, max_size=6),
    publish_delays=st.lists(st.integers(0, 5), min_size=1, max_size=6),
    start_yields=st.integers(0, 10),
    view_yields=st.integers(0, 8),
)
def test_catch_up_yields_every_event_once_in_order_under_concurrent_writes(
    before: int,
    since_choice: int | None,
    writes: int,
    page_size: int,
    max_queue: int,
    client_steps: int,
    read_yields: list[tuple[int, int]],
    write_yields: list[int],
    publish_delays: list[int],
    start_yields: int,
    view_yields: int,
) -> None:
    since = None if since_choice is None else min(since_choice, before)

    async def scenario() -> None:
        hub = Hub(max_queue=max_queue, high_water=max_queue // 2)
        log = FakeLog(itertools.cycle(read_yields))
        engine = Engine(hub, log, itertools.cycle(publish_delays))
        for _ in range(before):
            engine.commit()
        client = Client(client_steps)
        subscriber = hub.subscribe("joiner", client.send_text, client.close)
        gaps = itertools.cycle(write_yields)

        async def writer() -> None:
            for _ in range(writes):
                engine.commit()
                await yields(next(gaps))

        writing = asyncio.create_task(writer())
        await yields(start_yields)
        try:
            view_seq, last = await join(hub, engine, since, page_size=page_size, view_yields=view_yields)
        except SubscriberClosed:
            view_seq = last = -1
        await writing
        await engine.drain()
        head = len(log.events)
        for _ in range(100_000):  # the sender drains at the client's pace
            if not subscriber.depth or subscriber.closed:
                break
            await asyncio.sleep(0)
        await yields(50)  # the last entry in the sink: at most two frames of `client_steps` yields
        frames = client.frames
        closed = subscriber.closed
        await hub.aclose()

        if closed and not frames:
            return  # closed before anything went out: the client simply joins again
        assert frames[0].startswith("state@")
        first = (int(frames[0][6:]) if since is None else since) + 1
        events = [f for f in frames[1:] if not f.startswith("complete@")]
        if not closed:
            assert events == expected_events(first, head)  # everything, once, in order
            if since is not None:
                assert frames.index(complete(last)) == 1 + len(expected_events(first, last))
        else:
            # Closed as a slow consumer: what it got is still an exact prefix, and the reason names
            # where it stopped, so a resume from there loses nothing.
            assert client.closes and client.closes[0][0] == CloseCode.SLOW_CONSUMER
            assert events == expected_events(first, head)[: len(events)]
            delivered = [int(f[1:]) for f in events if not f.endswith("+")]
            reason = orjson.loads(client.closes[0][1])["last_seq"]
            if delivered and events[-1] == expected_events(delivered[-1], delivered[-1])[-1]:
                assert reason == {"r": delivered[-1]}
        assert view_seq == -1 or view_seq >= before + 1

    run(scenario)


async def test_catch_up_without_since_sends_state_then_only_newer_events() -> None:
    hub = Hub()
    log = FakeLog()
    engine = Engine(hub, log, itertools.repeat(0))
    for _ in range(5):
        engine.commit()
    client = Client()
    hub.subscribe("joiner", client.send_text, client.close)
    view_seq, last = await join(hub, engine, None, page_size=10)
    engine.commit()
    await engine.drain()
    await yields(20)
    assert (view_seq, last) == (6, 6)
    assert client.frames == ["state@6", "e7"]
    await hub.aclose()


async def test_catch_up_with_since_replays_then_completes_then_goes_live() -> None:
    hub = Hub()
    log = FakeLog()
    engine = Engine(hub, log, itertools.repeat(3))
    for _ in range(4):
        engine.commit()
    client = Client()
    hub.subscribe("joiner", client.send_text, client.close)
    _, last = await join(hub, engine, 2, page_size=2)
    engine.commit()
    await engine.drain()
    await yields(20)
    assert last == 5
    assert client.frames == ["state@5", "e3", "e3+", "e4", "e5", "complete@5", "e6", "e6+"]
    await hub.aclose()


async def test_catch_up_rereads_the_log_when_a_busy_room_overflows_the_hold() -> None:
    hub = Hub(max_queue=4, high_water=2)
    # The first read takes its snapshot at once and then yields long enough for ten more events to be
    # committed and published: its page is short but stale, and the hold overflowed meanwhile.
    log = FakeLog(itertools.chain([(0, 200)], itertools.repeat((0, 0))))
    engine = Engine(hub, log, itertools.repeat(0))
    client = Client()
    hub.subscribe("joiner", client.send_text, client.close)

    async def busy() -> None:
        for _ in range(10):
            engine.commit()
            await yields(5)

    async with hub.catch_up("joiner", ROOM) as catch_up:
        writing = asyncio.create_task(busy())
        await catch_up.send("state@0")
        last = await catch_up.replay(log.read_stream, render, since=0, complete=complete, page_size=50)
    await writing
    await engine.drain()
    await yields(50)
    assert last == 10 and log.reads >= 2
    assert client.frames == ["state@0", *expected_events(1, 10), "complete@10"]
    assert client.closes == []
    await hub.aclose()


async def test_catch_up_that_fails_leaves_the_topic_and_delivers_nothing_held() -> None:
    hub = Hub()
    engine = Engine(hub, FakeLog(), itertools.repeat(0))
    client = Client()
    hub.subscribe("joiner", client.send_text, client.close)
    with pytest.raises(PermissionError):
        async with hub.catch_up("joiner", ROOM):
            engine.commit()
            await yields(5)  # published and held
            raise PermissionError("not allowed")
    assert hub.members(ROOM) == frozenset()
    with pytest.raises(RuntimeError, match="replay"):
        async with hub.catch_up("joiner", ROOM):
            pass
    assert hub.members(ROOM) == frozenset()
    await engine.drain()
    await yields(10)
    assert client.frames == []
    await hub.aclose()


async def test_catch_up_ends_when_the_connection_goes_away_mid_replay() -> None:
    hub = Hub(max_queue=4, high_water=2)
    log = FakeLog()
    engine = Engine(hub, log, itertools.repeat(0))
    for _ in range(20):
        engine.commit()
    gate = asyncio.Event()

    async def stuck(frame: str) -> None:
        await gate.wait()

    async def close(code: int, reason: str) -> None:
        pass

    hub.subscribe("joiner", stuck, close)

    async def joining() -> None:
        async with hub.catch_up("joiner", ROOM) as catch_up:
            await catch_up.replay(log.read_stream, render, since=0, page_size=5)

    task = asyncio.create_task(joining())
    await yields(20)
    assert not task.done()  # waiting for the client to make room, not overflowing its queue
    await hub.unsubscribe("joiner")
    with pytest.raises(SubscriberClosed):
        await task
    await engine.drain()
    await hub.aclose()


async def test_catch_up_goes_live_only_below_high_water_so_a_client_keeping_up_stays() -> None:
    hub = Hub(max_queue=8, high_water=4)
    log = FakeLog()
    engine = Engine(hub, log, itertools.repeat(0))
    gate = asyncio.Event()
    frames: list[str] = []
    closes: list[int] = []

    async def paused(frame: str) -> None:  # a client that is busy for a moment, not a slow one
        await gate.wait()
        frames.append(frame)

    async def close(code: int, reason: str) -> None:
        closes.append(code)

    hub.subscribe("joiner", paused, close)
    hub.join("joiner", "room:other")
    for seq in range(1, 7):
        hub.publish("room:other", f"o{seq}", seq=seq)  # one in the sink, five queued: over high water

    async def read(stream_id: str, after_version: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        for _ in range(3):
            engine.commit()  # committed after this read's snapshot: they arrive live, and are held
        return []

    async def joining() -> int:
        async with hub.catch_up("joiner", ROOM) as catch_up:
            return await catch_up.replay(read, render, since=0, complete=complete)

    task = asyncio.create_task(joining())
    await yields(30)
    assert not task.done()  # going live now would need 5 + 1 + 3 places in a queue of 8
    gate.set()
    assert await task == 0
    await engine.drain()
    await yields(30)
    assert closes == []
    assert frames == [*(f"o{s}" for s in range(1, 7)), "complete@0", *expected_events(1, 3)]
    await hub.aclose()
