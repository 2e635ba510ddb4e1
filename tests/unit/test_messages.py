"""Inbound validation and outbound shapes of the wire protocol."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine import messages
from engine.errors import InvalidJson, UnknownMessageType, ValidationFailed
from engine.messages import JoinRoom, Ping
from engine.projections.rooms import Member, RoomView


def test_messages_decode_refuses_invalid_json() -> None:
    with pytest.raises(InvalidJson):
        messages.decode(b"{not json")
    assert messages.decode('{"type": "ping"}') == {"type": "ping"}


@pytest.mark.parametrize("payload", [[1, 2], "ping", 3, None, {}, {"type": 7}, {"type": ""}])
def test_messages_parse_refuses_non_objects_and_missing_type(payload: object) -> None:
    with pytest.raises(ValidationFailed):
        messages.parse(payload)


def test_messages_parse_refuses_unknown_type_with_the_supported_list() -> None:
    with pytest.raises(UnknownMessageType) as caught:
        messages.parse({"type": "teleport"})
    assert caught.value.code == "UNKNOWN_MESSAGE_TYPE"
    assert caught.value.details["supported"] == ["join_room", "ping"]


def test_messages_parse_keeps_extra_fields_of_seed_clients() -> None:
    parsed = messages.parse({"type": "join_room", "room_id": "r1", "legacy": True, "client_msg_id": "m1"})
    assert isinstance(parsed, JoinRoom)
    assert (parsed.room_id, parsed.client_msg_id, parsed.since) == ("r1", "m1", None)
    assert isinstance(messages.parse({"type": "ping"}), Ping)


@pytest.mark.parametrize("room_id", [None, "", "x" * 129, 42, "bad\x00id", "tab\tid", ["r"]], ids=repr)
def test_messages_parse_validates_room_id(room_id: object) -> None:
    payload = {"type": "join_room"} if room_id is None else {"type": "join_room", "room_id": room_id}
    with pytest.raises(ValidationFailed) as caught:
        messages.parse(payload)
    assert caught.value.details["details"][0]["loc"] == ["room_id"]


def test_messages_parse_accepts_the_longest_room_id() -> None:
    assert messages.parse({"type": "join_room", "room_id": "é" * 128}).room_id == "é" * 128  # type: ignore[union-attr]


def test_messages_correlation_ids_echo_only_short_strings() -> None:
    payload = {"client_msg_id": "m1", "request_id": 5, "other": "x"}
    assert messages.correlation_ids(payload) == {"client_msg_id": "m1"}
    assert messages.correlation_ids({"request_id": "r" * 129}) == {}
    assert messages.correlation_ids([1]) == {}


def test_messages_iso_is_utc_with_z() -> None:
    at = datetime(2024, 1, 15, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    assert messages.iso(at) == "2024-01-15T10:30:00.000000Z"


def test_messages_room_state_has_the_seed_shape_plus_seq_and_ts() -> None:
    seen = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    alice = Member("u1", "alice", "a@example.com", "online", None, seen, frozenset({"c1"}))
    view = RoomView("r1", members={"u1": alice}, seq=3, last_activity=seen, messages_sent=3)
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
                "cursor": None,
                "last_seen": "2024-01-15T10:30:00.000000Z",
            }
        ],
        "active_sheets": [],
        "total_users": 1,
        "seq": 3,
        "ts": "2024-01-15T10:30:00.000000Z",
    }


def test_messages_error_echoes_ids_and_carries_details() -> None:
    now = datetime(2024, 1, 15, tzinfo=UTC)
    assert messages.error("INVALID_JSON", "bad", now=now, echo={"client_msg_id": "m"}, retryable=True) == {
        "type": "error",
        "error": "bad",
        "code": "INVALID_JSON",
        "timestamp": "2024-01-15T00:00:00.000000Z",
        "retryable": True,
        "client_msg_id": "m",
    }
