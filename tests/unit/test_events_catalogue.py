"""The event catalogue and the stream naming rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.model import catalogue as cat
from engine.model import streams
from engine.model.events import Origin, RecordedEvent


def test_events_families_partition_the_catalogue() -> None:
    families = [
        cat.MEMBERSHIP_EVENTS,
        cat.CELL_EVENTS,
        cat.BROADCAST_EVENTS,
        cat.CURSOR_EVENTS,
        cat.TYPING_EVENTS,
        cat.STATUS_EVENTS,
        cat.NOTIFICATION_EVENTS,
        cat.UPLOAD_EVENTS,
        cat.AI_EVENTS,
        cat.CLAIM_EVENTS,
    ]
    assert sum(len(family) for family in families) == len(cat.CATALOGUE)
    assert set().union(*families) == cat.CATALOGUE
    assert not cat.ROOM_EVENTS & cat.USER_EVENTS


def test_events_type_names_are_past_tense_camel_case() -> None:
    for name in cat.CATALOGUE:
        assert name[0].isupper() and name.isalnum(), name
    assert cat.USER_JOINED_ROOM == "UserJoinedRoom" and cat.USER_LEFT_ROOM == "UserLeftRoom"


def test_events_is_volatile_names_cursor_typing_and_upload_progress() -> None:
    assert {t for t in cat.CATALOGUE if cat.is_volatile(t)} == {
        "CursorMoved",
        "TypingStarted",
        "TypingStopped",
        "FileUploadProgressed",
    }
    assert not cat.is_volatile(cat.CELL_UPDATED)
    assert not cat.is_volatile(cat.AI_PROGRESSED)  # few per request, and replayed to show how it went


def test_events_room_and_user_streams_round_trip() -> None:
    assert streams.room_stream("workspace_123") == "room:workspace_123"
    assert streams.room_id_of("room:workspace_123") == "workspace_123"
    assert streams.user_stream("user_1") == "user:user_1"
    assert streams.user_id_of("user:user_1") == "user_1"
    assert streams.room_id_of(streams.room_stream("a:b/c")) == "a:b/c"
    with pytest.raises(ValueError, match="not a room stream"):
        streams.room_id_of("user:u1")
    with pytest.raises(ValueError, match="not a user stream"):
        streams.user_id_of("room:r1")


def test_events_volatile_stream_is_a_prefixed_twin() -> None:
    twin = streams.volatile_stream("room:r1")
    assert twin == "volatile:room:r1"
    assert streams.is_volatile_stream(twin) and not streams.is_volatile_stream("room:r1")
    assert streams.durable_stream(twin) == "room:r1" == streams.durable_stream("room:r1")
    # A room named like the prefix still parses back.
    assert streams.durable_stream(streams.volatile_stream("room:volatile:x")) == "room:volatile:x"
    with pytest.raises(ValueError, match="already"):
        streams.volatile_stream(twin)


@pytest.mark.parametrize(
    ("event_type", "owner", "stream"),
    [
        (cat.CELL_UPDATED, "room:r1", "room:r1"),
        (cat.CURSOR_MOVED, "room:r1", "volatile:room:r1"),
        (cat.TYPING_STOPPED, "room:r1", "volatile:room:r1"),
        (cat.NOTIFICATION_CREATED, "user:u1", "user:u1"),
        (cat.FILE_UPLOAD_PROGRESSED, "user:u1", "volatile:user:u1"),
        (cat.AI_PROGRESSED, "user:u1", "user:u1"),
    ],
)
def test_events_stream_for_routes_volatile_types_to_the_twin(
    event_type: str, owner: str, stream: str
) -> None:
    assert cat.stream_for(event_type, owner) == stream


@pytest.mark.parametrize(
    ("event_type", "owner"),
    [
        (cat.CELL_UPDATED, "user:u1"),
        (cat.USER_STATUS_CHANGED, "room:r1"),
        ("Renamed", "room:r1"),
        (cat.CELL_UPDATED, "x"),
    ],
)
def test_events_stream_for_refuses_a_misrouted_type(event_type: str, owner: str) -> None:
    with pytest.raises(ValueError, match="do not belong"):
        cat.stream_for(event_type, owner)


def test_events_leave_reasons_name_the_client_leave_and_server_recorded_ones() -> None:
    # The words stored in the log: renaming one would make old events unreadable.
    words = {"left", "disconnected", "timed_out", "removed", "node_lost", "revoked", "slow_consumer"}
    assert words == cat.LEAVE_REASONS
    assert cat.LEFT == "left" and cat.SLOW_CONSUMER == "slow_consumer"


# Typed events: one class per type, the data column written and read back by the class.

SAMPLES: list[cat.Event] = [
    cat.UserJoinedRoom("r1", "u1", "ann", "ann@example.com", "c1"),
    cat.UserLeftRoom("r1", "u1", "c1", cat.DISCONNECTED),
    cat.CellUpdated("r1", "s1", "A1", 3.5, "=1+2.5", "u1", "ann", version=7),
    cat.CellsUpdated(
        "r1", "s1", "u1", "ann", ({"cell_id": "A1", "value": 1, "formula": None, "version": 2},)
    ),
    cat.RoomMessageBroadcast("r1", "admin", {"type": "system_announcement", "title": "t"}),
    cat.CursorMoved("r1", "u1", "ann", 10, 20.5, "B2"),
    cat.TypingStarted("r1", "u1", "ann", "A1", "c1"),
    cat.TypingStopped("r1", "u1", "ann", "A1", "c1", cat.EXPIRED),
    cat.UserStatusChanged("u1", "busy"),
    cat.NotificationCreated("u1", {"id": "n1", "title": "hi"}),
    cat.NotificationRead("u1", "n1"),
    cat.NotificationsSubscribed("u1", "c1", {"categories": ["a"], "modules": None, "priorities": None}),
    cat.FileUploadStarted("u1", "f1", "a.csv", 10, "text/csv", "r1"),
    cat.FileUploadProgressed("u1", "f1", 5, 10, 50.0),
    cat.FileUploadCompleted("u1", "f1", "a.csv", "/api/v1/files/f1", 10, "ab" * 32, "text/csv", None),
    cat.FileUploadFailed("u1", "f1", cat.TOO_LARGE, "a.csv", 4096),
    cat.AiRequestStarted("u1", "q1", "sum", "s1", {"table_range": "A1:B2"}, "r1"),
    cat.AiProgressed("u1", "q1", 50, "reading"),
    cat.AiCompleted("u1", "q1", "done", 1.5, {"columns": 2}),
    cat.AiFailed("u1", "q1", "boom"),
    cat.AiCancelled("u1", "q1", "cancelled"),
    cat.UserMessageSent("u1", "admin", {"type": "direct_message"}),
    cat.FileClaimed("f1", "u1"),
    cat.SheetClaimed("s1", "r1"),
]


def test_events_every_type_of_the_catalogue_has_one_class() -> None:
    assert set(cat.EVENT_CLASSES) == cat.CATALOGUE
    assert {type(sample).TYPE for sample in SAMPLES} == cat.CATALOGUE
    rooms = {t for t, cls in cat.EVENT_CLASSES.items() if issubclass(cls, cat.RoomEvent)}
    assert rooms == cat.ROOM_EVENTS


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).TYPE)
def test_events_typed_event_round_trips_through_its_data(event: cat.Event) -> None:
    new = event.new(Origin("node-1", "u1", "c1", "m-1"))
    assert new.type == type(event).TYPE
    assert new.stream_id == cat.stream_for(new.type, event.owner_stream())
    assert new.idempotency_key == "m-1" and new.user_id == "u1"
    assert new.metadata == {"user_id": "u1", "connection_id": "c1", "node": "node-1", "client_msg_id": "m-1"}
    recorded = RecordedEvent(1, new.stream_id, 1, new.type, new.data, new.metadata, datetime.now(UTC))
    assert cat.decode(recorded) == event


def test_events_old_rows_without_later_fields_still_load() -> None:
    """The log is never migrated: rows written before a field existed read with its default."""
    started = cat.FileUploadStarted.from_data(
        {"user_id": "u1", "file_id": "f1", "filename": "a.csv", "file_size": 3, "mime_type": "text/csv"}
    )
    assert started.room_id is None
    stopped = cat.TypingStopped.from_data(
        {"room_id": "r", "user_id": "u", "username": "u", "cell_id": "A1", "unknown": 1}
    )
    assert stopped.reason == cat.STOPPED and stopped.connection_id is None


def test_events_data_missing_a_required_field_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks cell_id"):
        cat.CellUpdated.from_data({"room_id": "r", "sheet_id": "s", "value": 1, "formula": None})


def test_events_decode_refuses_a_type_outside_the_catalogue() -> None:
    with pytest.raises(ValueError, match="not an event type"):
        cat.decode(RecordedEvent(1, "room:r", 1, "Renamed", {}, {}, datetime.now(UTC)))


def test_events_volatile_types_are_built_into_the_volatile_twin() -> None:
    moved = cat.CursorMoved("r1", "u1", "ann", 1, 2).new(Origin("n"))
    assert moved.stream_id == "volatile:room:r1"
    progressed = cat.FileUploadProgressed("u1", "f1", 1, 2, 50.0).new(Origin("n"))
    assert progressed.stream_id == "volatile:user:u1"


def test_events_a_file_claim_is_the_first_event_of_the_file_ids_own_stream() -> None:
    claim = cat.FileClaimed("report-1.csv", "alice").claim(Origin("node-1", "alice", client_msg_id="m-1"))
    assert claim.stream_id == streams.file_stream("report-1.csv") == "file:report-1.csv"
    assert claim.expected_version == 0  # only the first claim of an id commits
    assert claim.idempotency_key is None  # a retry reads the stream instead
    assert claim.data == {"file_id": "report-1.csv", "user_id": "alice"}
    assert claim.user_id == "alice"
    assert not streams.is_engine_stream(claim.stream_id)  # nothing is fanned out or folded from it
    with pytest.raises(ValueError, match="do not belong"):
        cat.stream_for(cat.FILE_UPLOAD_STARTED, claim.stream_id)
    with pytest.raises(ValueError, match="do not belong"):
        cat.stream_for(cat.FILE_CLAIMED, streams.user_stream("alice"))


def test_events_a_sheet_claim_is_the_first_event_of_the_sheets_own_stream() -> None:
    claim = cat.SheetClaimed("budget", "room-1").claim(Origin("node-1", "alice"))
    assert claim.stream_id == streams.sheet_stream("budget") == "sheet:budget"
    assert (claim.expected_version, claim.idempotency_key, claim.user_id) == (0, None, "alice")
    assert claim.data == {"sheet_id": "budget", "room_id": "room-1"}
    assert not streams.is_engine_stream(claim.stream_id)
    with pytest.raises(ValueError, match="do not belong"):
        cat.stream_for(cat.SHEET_CLAIMED, streams.file_stream("budget"))
