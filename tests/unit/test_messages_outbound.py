"""Every outbound builder: its exact shape, and the envelope the protocol adds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine import protocol as messages
from engine.model.actors import Actor
from engine.model.errors import ValidationFailed
from engine.model.events import RecordedEvent
from engine.projections.rooms import Member, RoomView
from engine.protocol import Envelope
from tests.unit.protocol_examples import outbound

NOW = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
TS = "2024-01-15T10:30:00.000000Z"
ROOM = "workspace_123"
ROOM_ENV = Envelope(room_id=ROOM, seq=5, ts=NOW, client_msg_id="m-1")


def recorded(stream_id: str, version: int = 5, **metadata: Any) -> RecordedEvent:
    return RecordedEvent(
        position=900,
        stream_id=stream_id,
        stream_version=version,
        type="Anything",
        data={},
        metadata=metadata,
        recorded_at=NOW,
        idempotency_key="server-key",
    )


# Envelope


def test_outbound_envelope_of_a_room_event() -> None:
    envelope = Envelope.of(recorded(f"room:{ROOM}", 7, client_msg_id="m-9"))
    assert envelope == Envelope(room_id=ROOM, seq=7, ts=NOW, client_msg_id="m-9")
    assert envelope.fields() == {"room_id": ROOM, "seq": 7, "ts": TS, "client_msg_id": "m-9"}


def test_outbound_envelope_of_a_user_event_has_no_room() -> None:
    assert Envelope.of(recorded("user:u1", 3)).fields() == {"seq": 3, "ts": TS}


def test_outbound_envelope_of_a_volatile_event_has_no_seq() -> None:
    assert Envelope.of(recorded(f"volatile:room:{ROOM}", 80, client_msg_id="m-2")).fields() == {
        "client_msg_id": "m-2"
    }


def test_outbound_envelope_never_takes_the_idempotency_key_for_a_client_msg_id() -> None:
    assert Envelope.of(recorded(f"room:{ROOM}")).client_msg_id is None
    assert Envelope.of(recorded(f"room:{ROOM}", client_msg_id=5)).client_msg_id is None


def test_outbound_envelope_of_another_room_is_a_bug() -> None:
    with pytest.raises(ValueError, match="envelope of room"):
        messages.user_left("other", "u1", envelope=ROOM_ENV)


def test_outbound_empty_envelope_changes_nothing() -> None:
    assert messages.user_left(ROOM, "u1", envelope=Envelope()) == messages.user_left(ROOM, "u1")


# Connection


def test_outbound_connected() -> None:
    actor = Actor("u1", "alice", "a@example.com", roles=("viewer",))
    assert messages.connected("ws_1", actor, heartbeat_interval=25, heartbeat_timeout=60) == {
        "type": "connected",
        "connection_id": "ws_1",
        "user": {"user_id": "u1", "username": "alice", "email": "a@example.com", "roles": ["viewer"]},
        "heartbeat": {"interval": 25, "timeout": 60},
    }


def test_outbound_pong_echoes_ids() -> None:
    assert messages.pong(NOW) == {"type": "pong", "ts": TS}
    assert messages.pong(NOW, {"client_msg_id": "m"}) == {"type": "pong", "ts": TS, "client_msg_id": "m"}


def test_outbound_ack_leaves_out_what_the_event_has_not() -> None:
    assert messages.ack("m-1", room_id=ROOM, seq=5) == {
        "type": "ack",
        "client_msg_id": "m-1",
        "room_id": ROOM,
        "seq": 5,
    }
    assert messages.ack("m-1", seq=3) == {"type": "ack", "client_msg_id": "m-1", "seq": 3}
    assert messages.ack("m-1") == {"type": "ack", "client_msg_id": "m-1"}


def test_outbound_error_echoes_ids_and_carries_details() -> None:
    assert messages.error("INVALID_JSON", "bad", now=NOW, echo={"client_msg_id": "m"}, retryable=True) == {
        "type": "error",
        "error": "bad",
        "code": "INVALID_JSON",
        "timestamp": TS,
        "retryable": True,
        "client_msg_id": "m",
    }


def test_outbound_error_of_a_version_conflict_carries_the_current_cell() -> None:
    current = {"value": "x", "formula": None, "version": 4, "user_id": "u2"}
    message = messages.error(
        "VERSION_CONFLICT", "stale", now=NOW, echo={"client_msg_id": "m"}, current=current
    )
    assert message["current"] == current
    assert set(message) == {"type", "error", "code", "timestamp", "current", "client_msg_id"}


def test_outbound_server_shutdown() -> None:
    assert messages.server_shutdown(NOW, reason="restart") == {
        "type": "server_shutdown",
        "reason": "restart",
        "timestamp": TS,
    }
    assert messages.server_shutdown(NOW, reason="restart", reconnect_after=2.5)["reconnect_after"] == 2.5


# Rooms


ALICE = Member(
    "u1", "alice", "a@example.com", "online", {"x": 1, "y": 2, "cell": "A1"}, NOW, frozenset({"c1"})
)


def test_outbound_room_state_has_the_seed_shape_plus_seq_and_ts() -> None:
    view = RoomView("r1", members={"u1": ALICE}, seq=3, last_activity=NOW, messages_sent=3)
    assert messages.room_state(view) == {
        "type": "room_state",
        "room_id": "r1",
        "users": [
            {
                "user_id": "u1",
                "username": "alice",
                "email": "a@example.com",
                "room": "r1",
                "status": "online",
                "cursor": {"x": 1, "y": 2, "cell": "A1"},
                "last_seen": TS,
            }
        ],
        "active_sheets": [],
        "total_users": 1,
        "seq": 3,
        "ts": TS,
    }


def test_outbound_room_state_of_a_room_without_events() -> None:
    state = messages.room_state(RoomView("r1"))
    assert (state["users"], state["total_users"], state["seq"], state["ts"]) == ([], 0, 0, None)


def test_outbound_user_joined_carries_the_room_state_user() -> None:
    assert messages.user_joined(ROOM, ALICE, envelope=ROOM_ENV) == {
        "type": "user_joined",
        "room_id": ROOM,
        "user": messages.room_user(ALICE, ROOM),
        "seq": 5,
        "ts": TS,
        "client_msg_id": "m-1",
    }
    assert messages.user_joined(ROOM, {"user_id": "u1"})["user"] == {"user_id": "u1"}


def test_outbound_user_left_room_left_and_replay_complete() -> None:
    assert messages.user_left(ROOM, "u1") == {"type": "user_left", "room_id": ROOM, "user_id": "u1"}
    assert messages.room_left(ROOM, "revoked", envelope=ROOM_ENV) == {
        "type": "room_left",
        "room_id": ROOM,
        "reason": "revoked",
        "seq": 5,
        "ts": TS,
        "client_msg_id": "m-1",
    }
    assert messages.replay_complete(ROOM, 41) == {"type": "replay_complete", "room_id": ROOM, "seq": 41}


def test_outbound_cursor_moved() -> None:
    assert messages.cursor_moved(ROOM, "u2", "jane", x=150, y=300.5, cell=None) == {
        "type": "cursor_moved",
        "room": ROOM,
        "user_id": "u2",
        "username": "jane",
        "cursor": {"x": 150, "y": 300.5, "cell": None},
    }


@pytest.mark.parametrize("builder", [messages.user_typing_start, messages.user_typing_stop])
def test_outbound_typing(builder: Any) -> None:
    assert builder(ROOM, "u2", "jane", "A1", envelope=Envelope(client_msg_id="m")) == {
        "type": builder.__name__,
        "room": ROOM,
        "user_id": "u2",
        "username": "jane",
        "cell_id": "A1",
        "client_msg_id": "m",
    }


# Cells and presence


def test_outbound_cell_updated() -> None:
    built = messages.cell_updated(
        "s1", "A1", value=3.5, formula=None, user_id="u1", username="alice", version=2, envelope=ROOM_ENV
    )
    assert built == {
        "type": "cell_updated",
        "sheet_id": "s1",
        "cell_id": "A1",
        "value": 3.5,
        "formula": None,
        "user_id": "u1",
        "username": "alice",
        "version": 2,
        "room_id": ROOM,
        "seq": 5,
        "ts": TS,
        "client_msg_id": "m-1",
    }


def test_outbound_user_status_changed() -> None:
    envelope = Envelope(seq=4, ts=NOW)
    assert messages.user_status_changed("u1", "away", envelope=envelope) == {
        "type": "user_status_changed",
        "user_id": "u1",
        "status": "away",
        "seq": 4,
        "ts": TS,
    }


# AI


@pytest.mark.parametrize("event_type", ["ai_start", "ai_progress", "ai_complete", "ai_error"])
def test_outbound_ai_event(event_type: Any) -> None:
    data = {"progress": 60}
    built = messages.ai_event(event_type, "req_1", "u1", data)
    assert built == {
        "type": "ai_event",
        "event_type": event_type,
        "request_id": "req_1",
        "user_id": "u1",
        "data": data,
    }
    assert built["data"] is not data


def test_outbound_ai_event_refuses_an_unknown_event_type() -> None:
    with pytest.raises(ValueError, match="AI event type"):
        messages.ai_event("ai_finished", "req_1", "u1", {})  # type: ignore[arg-type]


# Notifications


def test_outbound_notifications_subscribed() -> None:
    filters = {"categories": ("system",), "modules": None, "priorities": []}
    unread = [{"id": "n1", "title": "t"}]
    assert messages.notifications_subscribed(filters, unread) == {
        "type": "notifications_subscribed",
        "filters": {"categories": ["system"], "modules": None, "priorities": []},
        "unread": [{"id": "n1", "title": "t"}],
    }
    parsed = messages.parse({"type": "subscribe_notifications", "modules": ["ai"]})
    assert isinstance(parsed, messages.SubscribeNotifications)
    built = messages.notifications_subscribed(parsed.filters(), [])
    assert built["filters"] == {"categories": None, "modules": ["ai"], "priorities": None}


def test_outbound_notification_event() -> None:
    notification = {"id": "n1"}
    assert messages.notification_event("notification_read", notification, "u1", envelope=Envelope(seq=2)) == {
        "type": "notification_event",
        "event_type": "notification_read",
        "notification": {"id": "n1"},
        "user_id": "u1",
        "seq": 2,
    }


# Uploads


def test_outbound_file_upload_messages() -> None:
    assert messages.file_upload_started("f1", "a.csv", file_size=10, mime_type="", user_id="u1") == {
        "type": "file_upload_started",
        "file_id": "f1",
        "filename": "a.csv",
        "file_size": 10,
        "mime_type": "",
        "user_id": "u1",
    }
    assert messages.file_upload_progress(
        "f1", bytes_uploaded=5, total_bytes=10, percentage=50, user_id="u1"
    ) == {
        "type": "file_upload_progress",
        "file_id": "f1",
        "bytes_uploaded": 5,
        "total_bytes": 10,
        "percentage": 50,
        "user_id": "u1",
    }
    complete = messages.file_upload_complete(
        "f1", "a.csv", url="/api/v1/files/f1", user_id="u1", size=10, sha256="00" * 32
    )
    assert complete == {
        "type": "file_upload_complete",
        "file_id": "f1",
        "filename": "a.csv",
        "url": "/api/v1/files/f1",
        "user_id": "u1",
        "size": 10,
        "sha256": "00" * 32,
    }
    failed = messages.file_upload_failed(
        "f1", "a.csv", reason="too_large", bytes_uploaded=4096, user_id="u1", envelope=Envelope(seq=3)
    )
    assert failed == {
        "type": "file_upload_failed",
        "file_id": "f1",
        "filename": "a.csv",
        "reason": "too_large",
        "bytes_uploaded": 4096,
        "user_id": "u1",
        "seq": 3,
    }


# Broadcasts


def test_outbound_broadcast_passes_through_with_a_default_type() -> None:
    body = {"title": "Maintenance", "message": "in 30 minutes"}
    assert messages.broadcast(body) == {"type": "system_announcement", **body}
    assert messages.broadcast(body, default_type="direct_message")["type"] == "direct_message"


def test_outbound_broadcast_envelope_wins_over_the_payload() -> None:
    body = {"type": "system_announcement", "room_id": "elsewhere", "seq": 99999}
    built = messages.broadcast(body, envelope=ROOM_ENV)
    assert (built["room_id"], built["seq"], built["client_msg_id"]) == (ROOM, 5, "m-1")


@pytest.mark.parametrize("kind", [*sorted(messages.RESERVED_TYPES), "", 5])
def test_outbound_broadcast_cannot_forge_a_protocol_message(kind: object) -> None:
    with pytest.raises(ValidationFailed):
        messages.broadcast({"type": kind})


def test_outbound_every_builders_type_is_reserved() -> None:
    built_types = {message["type"] for message in outbound().values()} - {"system_announcement"}
    assert built_types == messages.RESERVED_TYPES
