"""`Live.route_user_events`: a user-stream event type with a routed publisher is handed to it, with
its sender, instead of being published as a room event."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.fanout.hub import Hub
from engine.fanout.live import Live
from engine.model.catalogue import NOTIFICATION_CREATED
from engine.model.events import RecordedEvent


def test_a_registered_user_publisher_gets_the_event_and_its_sender() -> None:
    live = Live(Hub())
    calls: list[tuple[RecordedEvent, str | None]] = []
    live.route_user_events({NOTIFICATION_CREATED: lambda event, sender: calls.append((event, sender))})
    event = RecordedEvent(
        position=1,
        stream_id="user:u1",
        stream_version=1,
        type=NOTIFICATION_CREATED,
        data={"user_id": "u1", "notification": {"id": "n1"}},
        metadata={"connection_id": "ws_1"},
        recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    live.publish(event)
    assert calls == [(event, "ws_1")]
