"""One connection's side of the fanout: the asyncio shell around its send queue.

Why a queue and a task per connection (websockets' broadcast topic, centrifuge's client writer):
publishing must never await a socket. `offer` is synchronous: the policy in engine/fanout/send_queue.py
decides, and the connection's one sender task is the only code that awaits its socket. A slow client
fills only its own queue; the publisher and every other connection carry on. One FIFO drained by one
task is also what keeps a connection's messages in publish order.

The common case needs neither: the queue is empty, the sender is idle and the socket's buffer has
room. Then a `WriteNow` given by the transport writes the frames at once, from the publisher, without
waking the sender (like `websockets.broadcast`, which writes to every socket that is not paused). That
is what most deliveries cost: a task switch and the ASGI send path per delivery were about a third of
the server's CPU under fanout (docs/performance.md). Anything else, a paused socket or an entry
queued behind others, goes through the queue and the sender as before, so order is kept: a frame is
written directly only when nothing of the connection is waiting to be sent.

When a durable message does not fit, the connection is closed as a slow consumer with 4008: in
4000-4499, the range in which a client reconnects (centrifuge's convention), and the reason carries the
last seq delivered per room, from which the client resumes losslessly with `join_room since`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from engine.fanout.send_queue import (
    Entry,
    FanoutCounters,
    Hold,
    Message,
    SendQueue,
    Verdict,
    frames_of,
    resume_reason,
)
from engine.protocol.close_codes import CloseCode

log = logging.getLogger(__name__)

Sink = Callable[[str], Awaitable[None]]
"""Sends one text frame (the api passes `websocket.send_text`)."""
WriteNow = Callable[[tuple[str, ...]], bool]
"""Writes text frames to the socket without waiting, all or none: False when the socket cannot take
them now (its buffer is over its high-water mark, or it is closing). Given by a transport that can."""
Close = Callable[[int, str], Awaitable[None]]
"""Closes the connection with a code and reason (the api passes `websocket.close`)."""


_NOT_STARTED = asyncio.Event()  # a placeholder until the sender starts; never waited on


class SubscriberClosed(Exception):
    """The connection was closed or unsubscribed while a caller waited to queue for it."""


class Subscriber:
    """A connection's queue and sender. Built by `Hub.subscribe`; its topics are the hub's to change."""

    def __init__(
        self,
        connection_id: str,
        sink: Sink,
        close: Close,
        *,
        max_queue: int,
        high_water: int,
        close_timeout: float,
        totals: FanoutCounters,
        write_now: WriteNow | None = None,
    ) -> None:
        self.connection_id = connection_id
        self.close_timeout = close_timeout
        self.stats = FanoutCounters()
        self.topics: set[str] = set()
        self.last_seq: dict[str, int] = {}  # per topic: the seq of the last entry fully sent
        self.close_code: int | None = None
        self.queue = SendQueue(max_queue=max_queue, high_water=high_water, stats=self.stats, totals=totals)
        self._sink = sink
        self._write_now = write_now
        self._close = close
        self._totals = totals
        # The sender and its events start when first needed: with direct writes most connections
        # never need a task, and an asyncio.Event holds a deque of about 600 bytes.
        self._sender: asyncio.Task[None] | None = None  # started when an entry first has to wait
        self._ready = _NOT_STARTED  # set when an entry is queued: wakes the sender
        self._drained: asyncio.Event | None = None  # set when the sender takes one: wakes `wait_for_room`
        self._idle: asyncio.Event | None = None  # set while the sender has nothing left: wakes `flush`
        self._sender_idle = True  # nothing is being sent: no sender yet, or it waits for more
        self._closing = False
        self._closer: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        return self.queue.depth

    @property
    def closed(self) -> bool:
        return self._closing

    # Producing side: synchronous, except for producers that choose to wait for room.

    def offer(self, entry: Entry) -> bool:
        """Offer a published entry; True if it was queued or held for a catch-up (or written)."""
        if self._closing:
            return False
        # Most deliveries: the queue would take the entry and hand it straight back. Written without
        # passing through it; only the seq it would have recorded is kept.
        if self._sender_idle and self.queue.would_send_at_once(entry) and self._write_entry(entry):
            self.queue.note_sent(entry)
            return True
        return self._act(self.queue.offer(entry))

    def offer_durable(self, entry: Entry) -> bool:
        """Queue a durable entry past any hold (a replayed event, `replay_complete`)."""
        return not self._closing and self._act(self.queue.offer_durable(entry))

    def _act(self, verdict: Verdict) -> bool:
        if verdict is Verdict.QUEUED and self.queue.depth:  # a release of an empty hold queues nothing
            # Only entry queued and the sender waiting for one: nothing can be sent before it.
            if not (self._sender_idle and self.queue.depth == 1 and self._write_directly()):
                self._wake_sender()
        elif verdict is Verdict.OVERFLOW:
            self.fail(CloseCode.SLOW_CONSUMER)
        return verdict is Verdict.QUEUED or verdict is Verdict.HELD

    async def wait_for_room(self) -> None:
        """Wait until fewer than `high_water` entries are queued; raises SubscriberClosed.

        Pull-based producers (a replay, the session's own replies) wait here instead of overflowing:
        they go at the client's pace, and the headroom above high water stays for live traffic.
        """
        while self.queue.depth >= self.queue.high_water and not self._closing:
            if self._drained is None:
                self._drained = asyncio.Event()
            self._drained.clear()
            await self._drained.wait()
        if self._closing:
            raise SubscriberClosed(self.connection_id)

    async def send(self, message: Message) -> None:
        """Queue a message for this connection alone (a reply, `room_state`) behind what is queued."""
        await self.wait_for_room()
        self.offer_durable(Entry(frames_of(message), None, None))  # below high water: it fits

    async def flush(self) -> None:
        """Wait until everything queued has gone to the sink, or the connection is closed: for a
        caller that closes the socket itself right after its last message (a frame over the limit)."""
        while not self._closing and (self.queue.depth or not self._sender_idle):
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            self._wake_sender()  # the sender sets `_idle` again as soon as it finds nothing queued
            await self._idle.wait()

    def hold(self, topic: str) -> Hold:
        return self.queue.hold(topic)

    def release(self, topic: str, floor: int) -> None:
        if not self._closing:
            self._act(self.queue.release(topic, floor))

    def drop_hold(self, topic: str) -> None:
        self.queue.drop_hold(topic)

    def span(self, topic: str) -> tuple[int, int] | None:
        """The first and highest seq queued for `topic` (`SendQueue.span`)."""
        return self.queue.span(topic)

    def reaches(self, topic: str, seq: int) -> bool:
        return self.queue.reaches(topic, seq)

    def offer_apart(self, topic: str, seq: int, message: Message) -> bool:
        """Queue one event of `topic` published before the connection joined it (`SendQueue.offer_apart`)."""
        return not self._closing and self._act(self.queue.offer_apart(topic, seq, frames_of(message)))

    def forget(self, topic: str) -> None:
        self.queue.forget(topic)
        self.last_seq.pop(topic, None)

    def _write_directly(self) -> bool:
        """Write the one queued entry now, if the transport takes it; False leaves it queued."""
        entry = self.queue.peek()
        if entry is None or not self._write_entry(entry):
            return False
        self.queue.pop()
        return True

    def _write_entry(self, entry: Entry) -> bool:
        """Write `entry`'s frames with `write_now` and count them sent; False if the socket cannot take
        them now. A transport that fails closes the connection, and the entry counts as handled."""
        write_now = self._write_now
        if write_now is None:
            return False
        try:
            if not write_now(entry.frames):
                return False
        except Exception as exc:
            self._sink_failed(exc)
            return True
        self._sent(entry)
        written = len(entry.frames)
        self.stats.written_directly += written
        self._totals.written_directly += written
        if self._drained is not None:
            self._drained.set()
        return True

    def _sent(self, entry: Entry) -> None:
        self.stats.delivered += len(entry.frames)
        self._totals.delivered += len(entry.frames)
        if entry.seq is not None and entry.topic is not None:
            self.last_seq[entry.topic] = entry.seq

    def _sink_failed(self, exc: Exception) -> None:
        # Usually the socket is gone. Either way nothing more reaches this client, so it must not
        # stay open believing it is in sync: close it (resumable), never drop silently.
        log.info("send to %s failed (%s: %s); closing it", self.connection_id, type(exc).__name__, exc)
        self.stats.sink_failures += 1
        self._totals.sink_failures += 1
        self.fail(CloseCode.INTERNAL_ERROR)

    # Sending side: the one task that awaits the socket.

    def _wake_sender(self) -> None:
        if self._sender is None:
            self._ready = asyncio.Event()
            self._sender = asyncio.get_running_loop().create_task(
                self._run(), name=f"fanout:{self.connection_id}"
            )
        self._ready.set()

    async def _run(self) -> None:
        try:
            while True:
                entry = self.queue.pop()
                if entry is None:
                    self._ready.clear()
                    self._sender_idle = True
                    if self._idle is not None:
                        self._idle.set()
                    await self._ready.wait()
                    continue
                self._sender_idle = False
                if self._idle is not None:
                    self._idle.clear()
                if self._drained is not None:
                    self._drained.set()
                for frame in entry.frames:
                    await self._sink(frame)
                self._sent(entry)
        except Exception as exc:
            self._sink_failed(exc)

    # Ending.

    def fail(self, code: int) -> None:
        """Close the connection with `code`: discard its queue and stop its sender now (synchronous,
        for the publisher's sake), then close the socket from a task of its own."""
        if self._closing:
            return
        if code == CloseCode.SLOW_CONSUMER:
            log.warning("closing slow consumer %s (%d queued)", self.connection_id, self.queue.depth)
            self.stats.slow_consumer_closes += 1
            self._totals.slow_consumer_closes += 1
        self.close_code = code
        self._discard()
        if self._sender is not None and self._sender is not asyncio.current_task():
            self._sender.cancel()
        self._closer = asyncio.get_running_loop().create_task(
            self._close_socket(code), name=f"fanout-close:{self.connection_id}"
        )

    async def _close_socket(self, code: int) -> None:
        # The reason is taken once the sender has stopped, so it names the last frame that went out.
        if self._sender is not None:
            await asyncio.wait([self._sender])
        reason = resume_reason({t: s for t, s in self.last_seq.items() if t in self.topics})
        try:
            async with asyncio.timeout(self.close_timeout):
                await self._close(code, reason)
        except Exception as exc:  # the socket may be gone already; there is nobody left to tell
            log.debug("closing %s failed: %s: %s", self.connection_id, type(exc).__name__, exc)

    async def stop(self) -> None:
        """End the sender and any close in progress, and wait until both have ended; what is queued is
        discarded. Called once the socket is gone, so a close still in progress has nobody to tell."""
        self._discard()
        current = asyncio.current_task()
        tasks = {t for t in (self._sender, self._closer) if t is not None and t is not current}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                task.exception()  # retrieved, so asyncio never logs "exception was never retrieved"

    def _discard(self) -> None:
        self._closing = True
        self.queue.clear()
        for waiting in (self._drained, self._idle):  # waiters wake up and see the connection closed
            if waiting is not None:
                waiting.set()

    def snapshot(self) -> dict[str, object]:
        return {"depth": self.queue.depth, "topics": len(self.topics), **asdict(self.stats)}
