"""What travels on the bus: an event comes back equal to what was sent, one message never exceeds the
bus's limit, and a malformed message is refused rather than half-read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.cluster.bus import decode_events, encode_event, messages, subject_for
from engine.model.events import RecordedEvent


def event(position: int, text: str = "x") -> RecordedEvent:
    return RecordedEvent(
        position=position,
        stream_id="room:r1",
        stream_version=position,
        type="CellUpdated",
        data={"value": text, "n": 1.5, "nested": {"list": [1, None, "a\nb"]}},
        metadata={"user_id": "u1", "client_msg_id": "m-1"},
        recorded_at=datetime(2026, 12, 2, 16, 0, 0, 123456, tzinfo=UTC),
        user_id="u1",
        idempotency_key="m-1",
    )


def test_an_event_round_trips_exactly_even_with_newlines_in_its_data() -> None:
    events = [event(1), event(2, "line\nbreak")]
    payload = b"\n".join(encode_event(e) for e in events)
    assert decode_events(payload) == events


def test_messages_keep_order_and_stay_under_the_limit() -> None:
    lines = [encode_event(event(p)) for p in range(10, 61)]  # two digits: lines of one length
    limit = 3 * len(lines[0]) + 2
    sent = list(messages(lines, limit))
    assert all(len(m) <= limit for m in sent)
    assert len(sent) == 17  # three to a message
    assert [e.position for m in sent for e in decode_events(m)] == list(range(10, 61))


def test_an_event_over_the_limit_is_left_for_the_log() -> None:
    small, big = encode_event(event(1)), encode_event(event(2, "y" * 5000))
    sent = list(messages([small, big, small], 1000))
    assert [e.position for m in sent for e in decode_events(m)] == [1, 1]


@pytest.mark.parametrize("payload", [b"not json", b'{"p": 1}', b"[1, 2]"])
def test_a_malformed_message_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_events(payload)


def test_each_log_has_its_own_subject() -> None:
    assert subject_for("a1") == "collab.a1.log.0" != subject_for("b2")
