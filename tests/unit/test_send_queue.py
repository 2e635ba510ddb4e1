"""The send queue's backpressure policy, as a pure object: offers in, verdicts and pops out."""

from __future__ import annotations

import orjson
import pytest

from engine.fanout import send_queue
from engine.fanout.send_queue import (
    MAX_CLOSE_REASON_BYTES,
    Entry,
    FanoutCounters,
    SendQueue,
    Verdict,
    resume_reason,
)

ROOM = "room:r"


def queue(max_queue: int = 8, high_water: int = 4) -> SendQueue:
    return SendQueue(
        max_queue=max_queue, high_water=high_water, stats=FanoutCounters(), totals=FanoutCounters()
    )


def durable(seq: int | None, topic: str = ROOM) -> Entry:
    return Entry((f"d{seq}",), topic, seq)


def volatile(name: str, key: str | None = None, topic: str = ROOM) -> Entry:
    return Entry((name,), topic, None, True, (topic, key) if key is not None else None)


def drain(q: SendQueue) -> list[str]:
    frames: list[str] = []
    while (entry := q.pop()) is not None:
        frames.extend(entry.frames)
    return frames


def test_send_queue_drops_volatile_at_high_water_and_keeps_durable() -> None:
    q = queue()
    assert [q.offer(durable(s)) for s in (1, 2, 3, 4)] == [Verdict.QUEUED] * 4
    assert q.offer(volatile("cursor")) is Verdict.DROPPED
    assert q.offer(durable(5)) is Verdict.QUEUED
    assert q.stats.dropped_volatile == q.totals.dropped_volatile == 1
    assert drain(q) == ["d1", "d2", "d3", "d4", "d5"]


def test_send_queue_durable_evicts_queued_volatile_before_overflowing() -> None:
    q = queue()
    q.offer(volatile("v1"))
    q.offer(volatile("v2"))
    for seq in range(1, 7):
        assert q.offer(durable(seq)) is Verdict.QUEUED
    assert q.depth == 8
    assert q.offer(durable(7)) is Verdict.QUEUED  # made room by evicting v1 and v2
    assert q.stats.dropped_volatile == 2
    assert q.offer(durable(8)) is Verdict.QUEUED
    assert q.offer(durable(9)) is Verdict.OVERFLOW  # nothing volatile left to give up
    assert drain(q) == [f"d{s}" for s in range(1, 9)]


def test_send_queue_coalesces_a_cursor_to_the_tail_keeping_publish_order() -> None:
    q = queue()
    q.offer(volatile("a1", key="a"))
    q.offer(volatile("b1", key="b"))
    q.offer(durable(1))
    q.offer(volatile("a2", key="a"))
    q.offer(volatile("a3", key="a"))
    q.offer(volatile("a1", key="a", topic="room:other"))  # another topic: its own key
    assert q.stats.coalesced == 2
    assert q.depth == 4
    assert drain(q) == ["b1", "d1", "a3", "a1"]


def test_send_queue_replaces_a_cursor_even_at_high_water() -> None:
    q = queue(max_queue=4, high_water=2)
    q.offer(volatile("a1", key="a"))
    q.offer(durable(1))
    assert q.offer(volatile("a2", key="a")) is Verdict.QUEUED  # a replacement adds nothing
    assert q.offer(volatile("b1", key="b")) is Verdict.DROPPED
    assert drain(q) == ["d1", "a2"]


def test_send_queue_tombstones_stay_bounded_under_a_cursor_flood() -> None:
    q = queue(max_queue=8)
    for i in range(1000):
        q.offer(volatile(f"a{i}", key="a"))
        assert len(q._queue) <= 2 * q.max_queue + 1  # the internal deque, tombstones included
    assert drain(q) == ["a999"]


def test_send_queue_drops_seq_at_or_below_what_is_queued_for_the_topic() -> None:
    q = queue()
    for seq in (1, 2, 2, 1, 3):
        q.offer(durable(seq))
    q.offer(durable(1, topic="room:other"))  # floors are per topic
    q.offer(durable(None))  # a durable message without seq is never a duplicate
    assert q.stats.duplicates == 2
    assert drain(q) == ["d1", "d2", "d3", "d1", "dNone"]


def test_send_queue_span_tells_what_was_published_to_the_connection_and_what_before_it() -> None:
    q = queue()
    user = "user:u"
    assert q.span(user) is None and not q.reaches(user, 3)
    for seq in (5, 6):
        q.offer(durable(seq, topic=user))
    q.note_sent(durable(8, topic=user))  # written without being queued: counted all the same
    assert q.span(user) == (5, 8)
    assert q.reaches(user, 5) and q.reaches(user, 9)  # published to it, or to come
    assert not q.reaches(user, 4)  # published before it joined
    # One event from before it joined, sent apart: the span and floor stay, and it is remembered.
    assert q.offer_apart(user, 4, ("apart4",)) is Verdict.QUEUED
    assert q.span(user) == (5, 8) and q.reaches(user, 4) and not q.reaches(user, 3)
    assert q.offer(durable(7, topic=user)) is Verdict.DROPPED  # the floor is still 8
    q.forget(user)
    assert q.span(user) is None and not q.reaches(user, 4)
    assert drain(q) == ["d5", "d6", "apart4"]


def test_send_queue_remembers_the_latest_events_sent_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(send_queue, "MAX_APART", 2)
    q = queue()
    user = "user:u"
    for seq in (1, 2, 3):
        q.offer_apart(user, seq, (f"apart{seq}",))
    assert [q.reaches(user, seq) for seq in (1, 2, 3)] == [False, True, True]
    q.offer_apart(user, 2, ("apart2",))  # sent again: now the latest
    q.offer_apart(user, 4, ("apart4",))
    assert [q.reaches(user, seq) for seq in (2, 3, 4)] == [True, False, True]


def test_send_queue_hold_keeps_live_back_and_release_drops_what_was_replayed() -> None:
    q = queue(max_queue=16, high_water=8)
    q.offer(durable(1))
    hold = q.hold(ROOM)
    assert q.offer(durable(3)) is Verdict.HELD
    assert q.offer(durable(4)) is Verdict.HELD
    assert q.offer(volatile("cursor")) is Verdict.HELD  # reaches the joiner after its room_state
    assert q.offer(durable(9, topic="room:other")) is Verdict.QUEUED  # other topics flow meanwhile
    assert [e.seq for e in hold.entries] == [3, 4, None]
    q.offer_durable(durable(2))  # the replay, past the hold
    q.offer_durable(durable(3))
    assert q.release(ROOM, floor=3) is Verdict.QUEUED
    assert q.offer(durable(4)) is Verdict.DROPPED  # a late live copy of what is queued
    assert q.offer(durable(5)) is Verdict.QUEUED
    assert drain(q) == ["d1", "d9", "d2", "d3", "d4", "cursor", "d5"]


def test_send_queue_hold_is_bounded_by_the_room_above_high_water() -> None:
    q = queue(max_queue=4, high_water=2)
    hold = q.hold(ROOM)
    for seq in range(1, 6):
        q.offer(durable(seq))
    assert hold.overflows == 2  # discarded at 3 and at 5: the catch-up reads those from the log
    assert [e.seq for e in hold.entries] == [5]


def test_send_queue_release_overflow_is_reported() -> None:
    q = queue(max_queue=2, high_water=1)
    q.hold(ROOM)
    q.offer(durable(1))
    q.offer(durable(2))
    q.offer(durable(3, topic="room:other"))
    q.offer(durable(4, topic="room:other"))
    assert q.release(ROOM, floor=0) is Verdict.OVERFLOW


def test_resume_reason_names_the_last_seq_per_room_only() -> None:
    reason = resume_reason({"room:a": 3, "user:u": 9, "room:b": 12})
    assert orjson.loads(reason) == {"last_seq": {"a": 3, "b": 12}}


def test_resume_reason_fits_the_close_frame_and_says_when_partial() -> None:
    rooms = {f"room:workspace_{i:04d}_é": 100_000 + i for i in range(20)}
    reason = resume_reason(rooms)
    assert len(reason.encode()) <= MAX_CLOSE_REASON_BYTES
    decoded = orjson.loads(reason)
    assert decoded["partial"] is True
    assert 0 < len(decoded["last_seq"]) < 20
    assert all(rooms[f"room:{room}"] == seq for room, seq in decoded["last_seq"].items())
    assert orjson.loads(resume_reason({"room:" + "x" * 128: 1})) == {"last_seq": {}, "partial": True}
