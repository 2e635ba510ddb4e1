"""A connection's bounded send queue and its backpressure policy: pure, no I/O, no asyncio.

Like websockets' protocol core, this decides and the asyncio shell (engine/fanout/subscriber.py) acts: an
`OVERFLOW` verdict here becomes a slow-consumer close there. Keeping the policy free of tasks and
awaits makes every decision synchronous, so a publisher can never be made to wait on a socket.

The policy, in the order the protocol asks for (docs/protocol.md, close 4008):
1. While `high_water` or more entries are queued, new volatile messages (cursor, typing, upload
   progress) are dropped and counted: they are superseded within milliseconds and `room_state` carries
   the latest cursors.
2. A durable message that finds `max_queue` entries queued first evicts every queued volatile one.
3. If it still does not fit, the verdict is OVERFLOW: the shell closes the connection as a slow
   consumer. A durable message is never dropped silently: it is queued, or its connection is closed.
Messages at or below the seq already queued for a topic are duplicates (a replay delivered them, or a
node read the log twice) and are dropped and counted; that is what keeps a resumed join exact.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import orjson

from engine.model.streams import ROOM_STREAM_PREFIX

Message = str | bytes | Sequence[str | bytes]
"""One frame, or all the frames that stem from one event (they share its seq)."""

MAX_CLOSE_REASON_BYTES: Final = 123  # RFC 6455: a close frame's payload is at most 125 bytes
MAX_APART: Final = 256  # the latest events of a topic sent apart (`offer_apart`) remembered; older forgotten


class Verdict(enum.Enum):
    QUEUED = "queued"
    HELD = "held"  # kept back for a catch-up (engine/fanout/catch_up.py)
    DROPPED = "dropped"  # volatile over high water, or a duplicate
    OVERFLOW = "overflow"  # a durable message does not fit: close the connection


@dataclass
class FanoutCounters:
    delivered: int = 0  # frames handed to sinks
    written_directly: int = 0  # of those, frames written by the publisher itself (sender task idle)
    dropped_volatile: int = 0  # volatile messages not delivered because a queue was over high water
    coalesced: int = 0  # queued cursor messages replaced by a newer one of the same (topic, user)
    duplicates: int = 0  # durable messages at or below the seq already queued for their topic
    slow_consumer_closes: int = 0
    sink_failures: int = 0


class Entry:
    """One queued publish for one connection. `dropped` marks an entry coalesced or evicted in place,
    which is O(1); the sender skips it, and `_compact` bounds how many such tombstones linger."""

    __slots__ = ("dropped", "frames", "key", "seq", "topic", "volatile")

    def __init__(
        self,
        frames: tuple[str, ...],
        topic: str | None,
        seq: int | None,
        volatile: bool = False,
        key: tuple[str, str] | None = None,
    ) -> None:
        self.frames = frames
        self.topic = topic
        self.seq = seq
        self.volatile = volatile
        self.key = key
        self.dropped = False


@dataclass
class Hold:
    """Live messages of a topic kept back while a catch-up replays the log."""

    entries: list[Entry] = field(default_factory=list)
    overflows: int = 0  # how often the buffer was discarded because it was full


def frames_of(message: Message) -> tuple[str, ...]:
    if isinstance(message, str):
        return (message,)
    if isinstance(message, bytes):
        return (message.decode(),)
    return tuple(m if isinstance(m, str) else m.decode() for m in message)


def resume_reason(last_seq: Mapping[str, int]) -> str:
    """The close reason: `{"last_seq":{room_id:seq}}`, the last seq delivered per room topic.

    It must fit 123 bytes of UTF-8. When it does not, it keeps the rooms that fit and adds
    `"partial":true`; for the other rooms the client resumes from the last `seq` it saw itself (every
    durable message carries `room_id` and `seq`). It is a lower bound anyway: a frame cut off by the
    close may have arrived without being confirmed here, and the client drops seqs it already has.
    """
    rooms = {
        topic[len(ROOM_STREAM_PREFIX) :]: seq
        for topic, seq in sorted(last_seq.items())
        if topic.startswith(ROOM_STREAM_PREFIX)
    }
    reason = orjson.dumps({"last_seq": rooms})
    if len(reason) <= MAX_CLOSE_REASON_BYTES:
        return reason.decode()
    kept: dict[str, int] = {}
    for room, seq in rooms.items():
        kept[room] = seq
        if len(orjson.dumps({"last_seq": kept, "partial": True})) > MAX_CLOSE_REASON_BYTES:
            del kept[room]
    return orjson.dumps({"last_seq": kept, "partial": True}).decode()


class SendQueue:
    def __init__(
        self, *, max_queue: int, high_water: int, stats: FanoutCounters, totals: FanoutCounters
    ) -> None:
        self.max_queue = max_queue
        self.high_water = high_water
        self.stats = stats  # this connection's counters
        self.totals = totals  # the hub's, shared by all connections
        self.depth = 0  # live entries queued (tombstones excluded)
        self._queue: deque[Entry] = deque()
        self._volatile_queued = 0  # live volatile entries: lets a durable message skip a useless scan
        self._latest: dict[tuple[str, str], Entry] = {}  # the queued coalescible entry per key
        self._floor: dict[str, int] = {}  # per topic: the highest seq queued
        self._first: dict[str, int] = {}  # per topic: the first seq queued (see `span`)
        # Per topic: seqs queued below the span (`offer_apart`), oldest first (a dict keeps the order).
        self._apart: dict[str, dict[int, None]] = {}
        self._held: dict[str, Hold] = {}

    def offer(self, entry: Entry) -> Verdict:
        """Queue a published entry, hold it for a catch-up, or drop it by the policy above."""
        hold = self._held.get(entry.topic) if entry.topic is not None else None
        if hold is not None:
            return self._hold(hold, entry)
        floor = self._floor.get(entry.topic, -1) if entry.topic is not None else -1
        if entry.seq is not None and entry.seq <= floor:
            self._count_duplicate()
            return Verdict.DROPPED
        if entry.volatile:
            return self._offer_volatile(entry)
        return self.offer_durable(entry)

    def would_send_at_once(self, entry: Entry) -> bool:
        """Whether `offer` would queue `entry` as the only entry: nothing queued, its topic not held,
        not a duplicate. Then the shell may write it at once instead (`note_sent` after)."""
        if self.depth:
            return False
        topic = entry.topic
        if topic is None:
            return True
        if topic in self._held:
            return False
        return entry.seq is None or entry.seq > self._floor.get(topic, -1)

    def note_sent(self, entry: Entry) -> None:
        """`entry` went out without being queued: what its queueing would have left behind."""
        if entry.seq is not None and entry.topic is not None:
            self._floor[entry.topic] = entry.seq
            self._first.setdefault(entry.topic, entry.seq)

    def reaches(self, topic: str, seq: int) -> bool:
        """Whether the event `seq` of `topic`, published on this node, was queued for the connection
        (or, above the span, will be): live from the first seq queued on, or sent apart."""
        span = self.span(topic)
        return (span is not None and span[0] <= seq) or seq in self._apart.get(topic, ())

    def offer_apart(self, topic: str, seq: int, frames: tuple[str, ...]) -> Verdict:
        """Queue, behind what is queued, one event of `topic` published before the connection joined
        it (below its span), without moving its floor or span; `reaches` remembers it (the latest
        `MAX_APART` of them: an older one may be sent again)."""
        apart = self._apart.setdefault(topic, {})
        apart.pop(seq, None)
        apart[seq] = None
        if len(apart) > MAX_APART:
            del apart[next(iter(apart))]
        return self.offer_durable(Entry(frames, None, None))

    def span(self, topic: str) -> tuple[int, int] | None:
        """(first, highest) seq queued for `topic` since the connection joined it (or since its
        catch-up began); None before any. A topic is published in seq order, so every event of it
        published from the first on was offered to this connection (but one published excluding it,
        a sender's own status): one below `first` was published before it joined, one above `highest`
        not yet."""
        floor = self._floor.get(topic)
        return None if floor is None else (self._first.get(topic, floor), floor)

    def offer_durable(self, entry: Entry) -> Verdict:
        if self.depth >= self.max_queue and self._volatile_queued:
            self._evict_volatile()
        if self.depth >= self.max_queue:
            return Verdict.OVERFLOW
        self._push(entry)
        return Verdict.QUEUED

    def peek(self) -> Entry | None:
        """The entry `pop` would return next, left queued (tombstones ahead of it are discarded)."""
        while self._queue:
            entry = self._queue[0]
            if not entry.dropped:
                return entry
            self._queue.popleft()
        return None

    def pop(self) -> Entry | None:
        """The next entry to send, or None when nothing is queued."""
        while self._queue:
            entry = self._queue.popleft()
            if entry.dropped:
                continue
            self.depth -= 1
            if entry.volatile:
                self._volatile_queued -= 1
                if entry.key is not None and self._latest.get(entry.key) is entry:
                    del self._latest[entry.key]
            return entry
        return None

    def _offer_volatile(self, entry: Entry) -> Verdict:
        old = self._latest.get(entry.key) if entry.key is not None else None
        if old is not None and not old.dropped:
            # Only the newest cursor matters. The newcomer goes to the tail rather than into the old
            # one's place, so a cursor never overtakes a durable message published before it.
            old.dropped = True
            self.depth -= 1
            self._volatile_queued -= 1
            self.stats.coalesced += 1
            self.totals.coalesced += 1
        elif self.depth >= self.high_water:
            self._count_dropped_volatile(1)
            return Verdict.DROPPED
        self._push(entry)
        return Verdict.QUEUED

    def _hold(self, hold: Hold, entry: Entry) -> Verdict:
        # Volatile messages are held too: a cursor moved while the joiner catches up reaches it after
        # the `room_state` that lists its sender, not never. A full hold drops them with the rest.
        if len(hold.entries) >= self.max_queue - self.high_water:
            # Bounded without closing anyone: every held message was committed before it was
            # published, so the catch-up, which reads the log again after an overflow, finds it there.
            # The bound is the room above high water, so that releasing the hold onto a queue below
            # high water always fits (engine/fanout/catch_up.py).
            hold.entries.clear()
            hold.overflows += 1
        hold.entries.append(entry)
        return Verdict.HELD

    def _push(self, entry: Entry) -> None:
        self._queue.append(entry)
        self.depth += 1
        if entry.volatile:
            self._volatile_queued += 1
            if entry.key is not None:
                self._latest[entry.key] = entry
        if entry.seq is not None and entry.topic is not None:
            self._floor[entry.topic] = entry.seq
            self._first.setdefault(entry.topic, entry.seq)
        if len(self._queue) > self.depth + self.max_queue:  # amortised: at most 2x max_queue entries
            self._compact()

    def _evict_volatile(self) -> None:
        evicted = 0
        for entry in self._queue:
            if entry.volatile and not entry.dropped:
                entry.dropped = True
                evicted += 1
        self.depth -= evicted
        self._volatile_queued = 0
        self._latest.clear()
        self._count_dropped_volatile(evicted)
        self._compact()

    def _compact(self) -> None:
        self._queue = deque(entry for entry in self._queue if not entry.dropped)

    def _count_dropped_volatile(self, count: int) -> None:
        self.stats.dropped_volatile += count
        self.totals.dropped_volatile += count

    def _count_duplicate(self) -> None:
        self.stats.duplicates += 1
        self.totals.duplicates += 1

    # Catch-up: hold a topic's live messages, then release them above the replayed seq.

    def hold(self, topic: str) -> Hold:
        if topic in self._held:
            raise RuntimeError(f"{topic!r} is already being caught up")
        # The catch-up decides what the client has; an older floor must not hide replayed events.
        self._floor.pop(topic, None)
        self._first.pop(topic, None)
        hold = self._held[topic] = Hold()
        return hold

    def release(self, topic: str, floor: int) -> Verdict:
        """Go live on `topic`: queue its held messages above `floor`, in publish order. Synchronous, so
        no publish can slip in between the last replayed event and the held ones."""
        hold = self._held.pop(topic, None)
        self._floor[topic] = max(floor, self._floor.get(topic, floor))
        for entry in hold.entries if hold is not None else ():
            if entry.volatile:
                self._offer_volatile(entry)
            elif entry.seq is not None and entry.seq <= self._floor[topic]:
                self._count_duplicate()
            elif self.offer_durable(entry) is Verdict.OVERFLOW:
                return Verdict.OVERFLOW
        return Verdict.QUEUED

    def drop_hold(self, topic: str) -> None:
        self._held.pop(topic, None)

    def forget(self, topic: str) -> None:
        """The connection left `topic`: nothing of it is held or deduplicated any more."""
        self._held.pop(topic, None)
        self._floor.pop(topic, None)
        self._first.pop(topic, None)
        self._apart.pop(topic, None)

    def clear(self) -> None:
        self._queue.clear()
        self._held.clear()
        self._latest.clear()
        self.depth = self._volatile_queued = 0
