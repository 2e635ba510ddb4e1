"""The event catalogue and the stream naming rules."""

from __future__ import annotations

import pytest

from engine.model import events as ev


def test_events_families_partition_the_catalogue() -> None:
    families = [
        ev.MEMBERSHIP_EVENTS,
        ev.CELL_EVENTS,
        ev.BROADCAST_EVENTS,
        ev.CURSOR_EVENTS,
        ev.TYPING_EVENTS,
        ev.STATUS_EVENTS,
        ev.NOTIFICATION_EVENTS,
        ev.UPLOAD_EVENTS,
        ev.AI_EVENTS,
    ]
    assert sum(len(family) for family in families) == len(ev.CATALOGUE)
    assert set().union(*families) == ev.CATALOGUE
    assert not ev.ROOM_EVENTS & ev.USER_EVENTS


def test_events_type_names_are_past_tense_camel_case() -> None:
    for name in ev.CATALOGUE:
        assert name[0].isupper() and name.isalnum(), name
    assert ev.USER_JOINED_ROOM == "UserJoinedRoom" and ev.USER_LEFT_ROOM == "UserLeftRoom"


def test_events_is_volatile_names_cursor_typing_and_upload_progress() -> None:
    assert {t for t in ev.CATALOGUE if ev.is_volatile(t)} == {
        "CursorMoved",
        "TypingStarted",
        "TypingStopped",
        "FileUploadProgressed",
    }
    assert not ev.is_volatile(ev.CELL_UPDATED)
    assert not ev.is_volatile(ev.AI_PROGRESSED)  # few per request, and replayed to show how it went


def test_events_room_and_user_streams_round_trip() -> None:
    assert ev.room_stream("workspace_123") == "room:workspace_123"
    assert ev.room_id_of("room:workspace_123") == "workspace_123"
    assert ev.user_stream("user_1") == "user:user_1"
    assert ev.user_id_of("user:user_1") == "user_1"
    assert ev.room_id_of(ev.room_stream("a:b/c")) == "a:b/c"
    with pytest.raises(ValueError, match="not a room stream"):
        ev.room_id_of("user:u1")
    with pytest.raises(ValueError, match="not a user stream"):
        ev.user_id_of("room:r1")


def test_events_volatile_stream_is_a_prefixed_twin() -> None:
    twin = ev.volatile_stream("room:r1")
    assert twin == "volatile:room:r1"
    assert ev.is_volatile_stream(twin) and not ev.is_volatile_stream("room:r1")
    assert ev.durable_stream(twin) == "room:r1" == ev.durable_stream("room:r1")
    # A room named like the prefix still parses back.
    assert ev.durable_stream(ev.volatile_stream("room:volatile:x")) == "room:volatile:x"
    with pytest.raises(ValueError, match="already"):
        ev.volatile_stream(twin)


@pytest.mark.parametrize(
    ("event_type", "owner", "stream"),
    [
        (ev.CELL_UPDATED, "room:r1", "room:r1"),
        (ev.CURSOR_MOVED, "room:r1", "volatile:room:r1"),
        (ev.TYPING_STOPPED, "room:r1", "volatile:room:r1"),
        (ev.NOTIFICATION_CREATED, "user:u1", "user:u1"),
        (ev.FILE_UPLOAD_PROGRESSED, "user:u1", "volatile:user:u1"),
        (ev.AI_PROGRESSED, "user:u1", "user:u1"),
    ],
)
def test_events_stream_for_routes_volatile_types_to_the_twin(
    event_type: str, owner: str, stream: str
) -> None:
    assert ev.stream_for(event_type, owner) == stream


@pytest.mark.parametrize(
    ("event_type", "owner"),
    [
        (ev.CELL_UPDATED, "user:u1"),
        (ev.USER_STATUS_CHANGED, "room:r1"),
        ("Renamed", "room:r1"),
        (ev.CELL_UPDATED, "x"),
    ],
)
def test_events_stream_for_refuses_a_misrouted_type(event_type: str, owner: str) -> None:
    with pytest.raises(ValueError, match="do not belong"):
        ev.stream_for(event_type, owner)


def test_events_leave_reasons_name_the_client_leave_and_server_recorded_ones() -> None:
    assert ev.LEFT in ev.LEAVE_REASONS and ev.DISCONNECTED in ev.LEAVE_REASONS
    assert len(ev.LEAVE_REASONS) == 5
