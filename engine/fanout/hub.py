"""The hub: delivers already-committed events to the connections of this node.

    hub = Hub(max_queue=1024)
    subscriber = hub.subscribe(connection_id, websocket.send_text, websocket.close)
    hub.join(connection_id, f"user:{user_id}")          # a user's own stream reaches all their tabs
    hub.publish("room:R", frames, seq=12)                # after the commit, in seq order per room
    hub.publish("room:R", frame, volatile=True, exclude=connection_id, coalesce=user_id)  # a cursor
    await hub.unsubscribe(connection_id)                 # when the socket is gone

Topics are stream ids (`room:R`, `user:U`), so a topic's `seq` is its stream's version and a catch-up
reads the stream of the same name. The hub knows nothing of WebSockets: a connection is a `sink` that
sends one text frame and a `close(code, reason)`.

Concurrency: `publish` is synchronous. It encodes nothing per connection (the frames are shared) and
only offers an entry to each member's bounded queue (engine/fanout/subscriber.py), so it can never wait on a
socket and one slow client never delays the publisher or anyone else. Each connection's one sender
task delivers in publish order; the engine publishes each room's events in seq order, so every
connection sees each room in seq order. Everything runs on one event loop: the maps below are changed
only between awaits, so no lock is needed.

The backpressure policy and deduplication live in engine/fanout/send_queue.py (pure), the sender task and
slow-consumer closes (4008, resumable, with the last seq per room in the reason) in
engine/fanout/subscriber.py, gapless joins with `since` in engine/fanout/catch_up.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import asdict

from engine.fanout.catch_up import CatchUp, Render
from engine.fanout.send_queue import (
    MAX_CLOSE_REASON_BYTES,
    Entry,
    FanoutCounters,
    Message,
    frames_of,
    resume_reason,
)
from engine.fanout.subscriber import (
    Close,
    Sink,
    Subscriber,
    SubscriberClosed,
    WriteNow,
)

__all__ = [
    "MAX_CLOSE_REASON_BYTES",
    "CatchUp",
    "Close",
    "FanoutCounters",
    "Hub",
    "Message",
    "Render",
    "Sink",
    "Subscriber",
    "SubscriberClosed",
    "WriteNow",
    "resume_reason",
]


class Hub:
    """Topics -> connections -> bounded queues. One per node (process)."""

    def __init__(
        self, *, max_queue: int = 1024, high_water: int | None = None, close_timeout: float = 5.0
    ) -> None:
        """`max_queue`: entries a connection may have queued before a durable message closes it.
        `high_water` (default 3/4 of that): above it volatile messages are dropped, and replays and
        replies wait; the room left above it absorbs bursts of durable events."""
        high_water = max_queue * 3 // 4 if high_water is None else high_water
        if not 0 < high_water < max_queue:
            raise ValueError("need 0 < high_water < max_queue")
        self.max_queue = max_queue
        self.high_water = high_water
        self.close_timeout = close_timeout
        self.totals = FanoutCounters()
        self._subscribers: dict[str, Subscriber] = {}
        self._topics: dict[str, dict[str, Subscriber]] = {}

    def subscribe(
        self, connection_id: str, sink: Sink, close: Close, write_now: WriteNow | None = None
    ) -> Subscriber:
        """Register a connection and start its sender task (call it from the event loop). A transport
        that can write without waiting passes `write_now` too (engine/fanout/subscriber.py)."""
        if connection_id in self._subscribers:
            raise ValueError(f"{connection_id!r} is already subscribed")
        subscriber = Subscriber(
            connection_id,
            sink,
            close,
            max_queue=self.max_queue,
            high_water=self.high_water,
            close_timeout=self.close_timeout,
            totals=self.totals,
            write_now=write_now,
        )
        self._subscribers[connection_id] = subscriber
        return subscriber

    def subscriber(self, connection_id: str) -> Subscriber:
        """Raises KeyError for a connection that is not (or no longer) subscribed."""
        return self._subscribers[connection_id]

    def join(self, connection_id: str, topic: str) -> None:
        """Deliver `topic`'s messages published from now on. To join a room with its history and no
        gap, use `catch_up` instead."""
        subscriber = self._subscribers[connection_id]
        subscriber.topics.add(topic)
        self._topics.setdefault(topic, {})[connection_id] = subscriber

    def leave(self, connection_id: str, topic: str) -> None:
        """Stop delivering `topic`; what is already queued still goes out. No-op if not a member."""
        members = self._topics.get(topic)
        if members is not None and members.pop(connection_id, None) is not None and not members:
            del self._topics[topic]
        subscriber = self._subscribers.get(connection_id)
        if subscriber is not None:
            subscriber.topics.discard(topic)
            subscriber.forget(topic)

    def catch_up(self, connection_id: str, topic: str) -> CatchUp:
        """An async context manager that joins `topic` with replay from the log (catch_up.py)."""
        return CatchUp(self._subscribers[connection_id], topic, join=self.join, leave=self.leave)

    async def unsubscribe(self, connection_id: str) -> None:
        """Forget the connection and wait for its sender task to end; queued messages are discarded.

        The maps are updated before the first await, so no publish reaches it after this is called.
        """
        subscriber = self._subscribers.pop(connection_id, None)
        if subscriber is None:
            return
        for topic in subscriber.topics:
            members = self._topics.get(topic)
            if members is not None:
                members.pop(connection_id, None)
                if not members:
                    del self._topics[topic]
        await subscriber.stop()

    def publish(
        self,
        topic: str,
        message: Message,
        *,
        seq: int | None = None,
        volatile: bool = False,
        exclude: str | None = None,
        coalesce: str | None = None,
    ) -> int:
        """Offer a committed event's message to every member of `topic`; returns how many queued it.

        `seq` is the event's version in the stream named `topic`; seqs are compared per topic, so an
        event of another stream (a user's status sent to their rooms) is published with `seq=None`.
        Put every frame that stems from one event into one call (a sequence of frames): they share the
        event's `seq`, and a later message with a seq already queued is dropped as a duplicate.
        `volatile` messages may be dropped under backpressure; `coalesce` (say the user id of a
        cursor) lets a queued, unsent volatile message of the same topic and key be replaced by this
        one. `exclude` skips one connection (the sender of a cursor move).
        """
        members = self._topics.get(topic)
        if not members:
            return 0
        frames = frames_of(message)
        key = (topic, coalesce) if volatile and coalesce is not None else None
        queued = 0
        # offer() never awaits and never changes the hub's maps, so iterating them directly is safe.
        for connection_id, subscriber in members.items():
            if connection_id != exclude and subscriber.offer(Entry(frames, topic, seq, volatile, key)):
                queued += 1
        return queued

    def publish_once(
        self, topic: str, also: Iterable[str], message: Message, *, seq: int, exclude: str | None = None
    ) -> int:
        """Offer one event's message to the members of `topic` and of the topics in `also`, each
        connection once however many of them it is in (a user's status, to the user's tabs and to
        every room the user is in). Members of `topic` get it with its `seq`; the others, for whom it
        is another stream's event, without."""
        frames = frames_of(message)
        reached: set[str] = set() if exclude is None else {exclude}
        queued = 0
        for each, each_seq in ((topic, seq), *((other, None) for other in also)):
            for connection_id, subscriber in self._topics.get(each, {}).items():
                if connection_id in reached:
                    continue
                reached.add(connection_id)
                if subscriber.offer(Entry(frames, topic if each_seq is not None else None, each_seq)):
                    queued += 1
        return queued

    def members(self, topic: str) -> frozenset[str]:
        return frozenset(self._topics.get(topic, ()))

    def stats(self) -> dict[str, object]:
        """Totals since start, and queue depth per connection (for /ws/stats/detailed)."""
        depths = {cid: subscriber.depth for cid, subscriber in self._subscribers.items()}
        return {
            **asdict(self.totals),
            "subscribers": len(self._subscribers),
            "topics": len(self._topics),
            "max_queue": self.max_queue,
            "high_water": self.high_water,
            "queue_depth_max": max(depths.values(), default=0),
            "queue_depths": depths,
        }

    async def aclose(self) -> None:
        """Unsubscribe everyone (shutdown): no sender task outlives the hub."""
        await asyncio.gather(*(self.unsubscribe(cid) for cid in list(self._subscribers)))
