"""What any event log owes the engine: round trips, contiguous versions, expected versions,
idempotency, dense positions, cell versions and a sheet's room decided by its claim, file claims,
and times that never go backwards. Run against PostgreSQL and the memory store alike."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from engine.log.store import EventLog
from engine.model.catalogue import (
    ABORTED,
    FILE_UPLOAD_COMPLETED,
    FILE_UPLOAD_FAILED,
    FILE_UPLOAD_STARTED,
    TOO_LARGE,
    CellUpdated,
    CursorMoved,
    FileClaimed,
    FileUploadFailed,
    FileUploadProgressed,
    FileUploadStarted,
    SheetClaimed,
    TypingStarted,
)
from engine.model.errors import ValidationFailed, VersionConflict
from engine.model.events import Committed, Conflict, Duplicate, NewEvent, Origin, Refused


def ev(stream: str, n: int = 0, **kw: Any) -> NewEvent:
    return NewEvent(stream_id=stream, type="TestHappened", data={"n": n, "text": "é ✓"}, **kw)


def cell_update(room: str, sheet: str, version: int | None, value: object, cell: str = "A1") -> NewEvent:
    updated = CellUpdated(room, sheet, cell, value, None, "u1", "ann")
    return updated.new(Origin("n", "u1"), cells=updated.writes(version))


def sheet_claim(room: str, sheet: str) -> NewEvent:
    return SheetClaimed(sheet, room).claim(Origin("n", "u1"))


async def test_log_append_then_read_stream_round_trips(event_log: EventLog, stream: str) -> None:
    outcomes = await event_log.append([ev(stream, 1, metadata={"user": "u1"}), ev(stream, 2)])
    assert [type(o) for o in outcomes] == [Committed, Committed]
    first, second = outcomes
    assert isinstance(first, Committed) and isinstance(second, Committed)
    assert (first.stream_version, second.stream_version) == (1, 2)
    assert second.position == first.position + 1
    read = await event_log.read_stream(stream)
    assert [(e.stream_version, e.data["n"], e.type) for e in read] == [
        (1, 1, "TestHappened"),
        (2, 2, "TestHappened"),
    ]
    assert read[0].metadata == {"user": "u1"} and read[0].data["text"] == "é ✓"
    assert read[0].recorded_at.tzinfo is not None
    assert await event_log.stream_version(stream) == 2
    assert [e.stream_version for e in await event_log.read_stream(stream, after_version=1)] == [2]
    assert [e.stream_version for e in await event_log.read_stream(stream, limit=1)] == [1]


async def test_log_read_all_returns_positions_in_order_after_a_cursor(
    event_log: EventLog, stream: str
) -> None:
    before = await event_log.head()
    await event_log.append([ev(stream, i) for i in range(5)])
    assert await event_log.head() == before + 5
    read = await event_log.read_all(after=before, limit=3)
    assert [e.position for e in read] == [before + 1, before + 2, before + 3]
    rest = await event_log.read_all(after=read[-1].position)
    assert [e.position for e in rest][:2] == [before + 4, before + 5]


async def test_log_times_never_go_backwards_along_positions(event_log: EventLog, stream: str) -> None:
    before = await event_log.head()
    for n in range(3):
        await event_log.append([ev(stream, n), ev(stream + ":b", n)])
    times = [e.recorded_at for e in await event_log.read_all(after=before)]
    assert times == sorted(times)


async def test_log_expected_version_conflict_reports_actual_version(event_log: EventLog, stream: str) -> None:
    (first,) = await event_log.append([ev(stream, expected_version=0)])
    assert isinstance(first, Committed) and first.stream_version == 1
    assert await event_log.append([ev(stream, expected_version=0)]) == [
        Conflict(expected_version=0, actual_version=1)
    ]
    (ok,) = await event_log.append([ev(stream, expected_version=1)])
    assert isinstance(ok, Committed) and ok.stream_version == 2


async def test_log_idempotency_key_returns_the_original_outcome(event_log: EventLog, stream: str) -> None:
    (first,) = await event_log.append([ev(stream, 1, user_id="u1", idempotency_key=f"{stream}-k1")])
    (again,) = await event_log.append([ev(stream, 2, user_id="u1", idempotency_key=f"{stream}-k1")])
    assert isinstance(first, Committed) and isinstance(again, Duplicate)
    assert (again.position, again.stream_version) == (first.position, first.stream_version)
    # The same key from another user is a different message.
    (other,) = await event_log.append([ev(stream, 3, user_id="u2", idempotency_key=f"{stream}-k1")])
    assert isinstance(other, Committed)
    assert [e.data["n"] for e in await event_log.read_stream(stream)] == [1, 3]


async def test_log_a_key_is_unique_per_user_and_stream(event_log: EventLog, stream: str) -> None:
    key = f"{stream}-scoped"
    (here,) = await event_log.append([ev(stream, 1, user_id="u", idempotency_key=key)])
    (there,) = await event_log.append([ev(stream + ":b", 2, user_id="u", idempotency_key=key)])
    assert isinstance(here, Committed) and isinstance(there, Committed)  # another stream: applied
    (again,) = await event_log.append([ev(stream + ":b", 3, user_id="u", idempotency_key=key)])
    assert isinstance(again, Duplicate) and again.position == there.position
    found = await event_log.event_by_key("u", key, stream)
    assert found is not None and found.position == here.position
    newest = await event_log.event_by_key("u", key)  # without a stream: the newest under the key
    assert newest is not None and newest.position == there.position
    # A stream's volatile twin shares its keys: the protocol scopes an id to the room it acts in.
    (twin,) = await event_log.append([ev("volatile:" + stream, 4, user_id="u", idempotency_key=key)])
    assert isinstance(twin, Duplicate) and twin.position == here.position
    fresh = f"{stream}-volatile-first"
    (cursor,) = await event_log.append([ev("volatile:" + stream, 5, user_id="u", idempotency_key=fresh)])
    (durable,) = await event_log.append([ev(stream, 6, user_id="u", idempotency_key=fresh)])
    assert isinstance(cursor, Committed) and isinstance(durable, Duplicate)
    found_twin = await event_log.event_by_key("u", fresh, stream)
    assert found_twin is not None and found_twin.stream_id == "volatile:" + stream


async def test_log_duplicate_key_within_one_batch_is_written_once(event_log: EventLog, stream: str) -> None:
    key = f"{stream}-same"
    a, b = await event_log.append(
        [ev(stream, 1, user_id="u", idempotency_key=key), ev(stream, 2, user_id="u", idempotency_key=key)]
    )
    assert isinstance(a, Committed) and isinstance(b, Duplicate) and b.position == a.position
    assert len(await event_log.read_stream(stream)) == 1


async def test_log_mixed_batch_conflict_rejects_only_itself(event_log: EventLog, stream: str) -> None:
    other = stream + ":other"
    await event_log.append([ev(stream)])
    before = await event_log.head()
    outcomes = await event_log.append(
        [
            ev(other, 1),
            ev(stream, 2, expected_version=0),  # stale: the stream is at 1
            ev(stream, 3, expected_version=1),
            ev(other, 4, user_id="u", idempotency_key=f"{stream}-k"),
        ]
    )
    assert [type(o).__name__ for o in outcomes] == ["Committed", "Conflict", "Committed", "Committed"]
    # Positions stay dense: the conflict took none.
    assert [o.position for o in outcomes if isinstance(o, Committed)] == [before + 1, before + 2, before + 3]
    assert [e.data["n"] for e in await event_log.read_stream(stream)] == [0, 3]


async def test_log_batch_where_nothing_commits_leaves_the_log_unchanged(
    event_log: EventLog, stream: str
) -> None:
    await event_log.append([ev(stream)])
    before = await event_log.head()
    outcomes = await event_log.append([ev(stream, expected_version=5), ev(stream, expected_version=0)])
    assert all(isinstance(o, Conflict) for o in outcomes)
    assert await event_log.head() == before


async def test_log_cell_versions_are_decided_in_the_append(event_log: EventLog, stream: str) -> None:
    room, sheet = f"{stream}-room", f"{stream}-sheet"
    await event_log.append([sheet_claim(room, sheet)])
    (seed,) = await event_log.append([cell_update(room, sheet, 1642161000000, "Hello")])
    assert isinstance(seed, Committed) and seed.data is not None and seed.data["version"] == 1642161000001
    same_batch = await event_log.append(
        [cell_update(room, sheet, None, "b"), cell_update(room, sheet, 1, "stale")]
    )
    assert isinstance(same_batch[0], Committed) and same_batch[0].data is not None
    assert same_batch[0].data["version"] == 1642161000002
    assert isinstance(same_batch[1], Refused) and isinstance(same_batch[1].error, VersionConflict)
    assert same_batch[1].error.details["current"] == {
        "value": "b",
        "formula": None,
        "version": 1642161000002,
        "user_id": "u1",
    }
    stored = [e.data["version"] for e in await event_log.read_stream(f"room:{room}")]
    assert stored == [1642161000001, 1642161000002]


async def test_log_a_sheet_stays_in_the_room_of_its_claim(event_log: EventLog, stream: str) -> None:
    sheet, r1, r2 = f"{stream}-sheet", f"{stream}-r1", f"{stream}-r2"
    (unclaimed,) = await event_log.append([cell_update(r1, sheet, None, "a")])
    assert isinstance(unclaimed, Refused) and isinstance(unclaimed.error, ValidationFailed)
    assert await event_log.sheet_room(sheet) is None
    claimed, lost, edited = await event_log.append(
        [sheet_claim(r1, sheet), sheet_claim(r2, sheet), cell_update(r1, sheet, None, "a")]
    )
    assert isinstance(claimed, Committed) and isinstance(lost, Conflict) and isinstance(edited, Committed)
    assert await event_log.sheet_room(sheet) == r1
    (late,) = await event_log.append([sheet_claim(r2, sheet)])
    assert isinstance(late, Conflict)
    (other,) = await event_log.append([cell_update(r2, sheet, None, "b")])
    assert isinstance(other, Refused) and isinstance(other.error, ValidationFailed)
    assert await event_log.read_stream(f"room:{r2}") == []
    assert [e.data for e in await event_log.read_stream(f"sheet:{sheet}")] == [
        {"sheet_id": sheet, "room_id": r1}
    ]
    assert await event_log.sheet_room(f"{stream}-never") is None


async def test_log_file_claims_are_the_owners_and_only_the_first_claim_commits(event_log: EventLog) -> None:
    file_id = f"f-{uuid.uuid4().hex[:12]}"
    started = FileUploadStarted("alice", file_id, "a.csv", 3, "text/csv").new(Origin("n", "alice"))
    other = FileUploadStarted("bob", file_id, "b.csv", 3, "text/csv").new(Origin("n", "bob"))
    unrelated = FileUploadStarted("alice", file_id + "x", "c.csv", 3, "text/csv").new(Origin("n", "alice"))
    await event_log.append([started, other, unrelated])
    assert await event_log.file_claims(file_id) == []  # starts without a claim own nothing

    alice_claims = FileClaimed(file_id, "alice").claim(Origin("n", "alice"))
    bob_claims = FileClaimed(file_id, "bob").claim(Origin("n", "bob"))
    won, lost = await event_log.append([alice_claims, bob_claims])
    assert isinstance(won, Committed) and won.stream_version == 1
    assert isinstance(lost, Conflict)
    (again,) = await event_log.append([bob_claims])  # in a later batch too
    assert isinstance(again, Conflict)
    claims = await event_log.file_claims(file_id)
    assert [(e.type, e.data["user_id"]) for e in claims] == [(FILE_UPLOAD_STARTED, "alice")]

    progressed = FileUploadProgressed("alice", file_id, 1, 3, 33.3).new(Origin("n", "alice"))
    failed = FileUploadFailed("alice", file_id, TOO_LARGE, "a.csv", 4).new(Origin("n", "alice"))
    await event_log.append([progressed, failed])
    # A failure ends the owner's attempt; progress claims nothing.
    claims = await event_log.file_claims(file_id)
    assert [e.type for e in claims] == [FILE_UPLOAD_STARTED, FILE_UPLOAD_FAILED]
    assert FILE_UPLOAD_COMPLETED not in {e.type for e in claims}


async def test_log_upload_events_are_one_users_upload_with_its_progress(event_log: EventLog) -> None:
    file_id = f"f-{uuid.uuid4().hex[:12]}"
    origin = Origin("n", "alice")
    await event_log.append(
        [
            FileUploadStarted("alice", file_id, "a.csv", 3, "text/csv").new(origin),
            FileUploadStarted("bob", file_id, "b.csv", 3, "text/csv").new(Origin("n", "bob")),
            FileUploadProgressed("alice", file_id, 2, 3, 66.7).new(origin),
            FileUploadStarted("alice", file_id + "x", "c.csv", 3, "text/csv").new(origin),
            FileUploadFailed("alice", file_id, ABORTED, "a.csv", 2).new(origin),
        ]
    )
    found = await event_log.upload_events("alice", file_id)
    assert [(e.type, e.stream_id) for e in found] == [
        (FILE_UPLOAD_STARTED, "user:alice"),
        ("FileUploadProgressed", "volatile:user:alice"),
        (FILE_UPLOAD_FAILED, "user:alice"),
    ]
    assert [e.position for e in found] == sorted(e.position for e in found)
    assert await event_log.upload_events("carol", file_id) == []


async def test_log_data_json_cannot_hold_is_refused_and_changes_nothing(
    event_log: EventLog, stream: str
) -> None:
    before = await event_log.head()
    with pytest.raises(TypeError):
        await event_log.append([NewEvent(stream, "TestHappened", {"n": {1, 2}})])
    assert await event_log.head() == before


async def test_log_latest_cursors_are_each_users_newest_move_in_the_room_s_recent_events(
    event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = f"r-{uuid.uuid4().hex[:8]}"

    def move(user: str, x: int) -> NewEvent:
        return CursorMoved(room, user, user.title(), x, x).new(Origin("n", user))

    await event_log.append([move("ann", 1), move("bob", 2), move("ann", 3), move("cy", 4)])
    await event_log.append([TypingStarted(room, "bob", "Bob", "A1", "c1").new(Origin("n", "bob"))])
    newest = await event_log.latest_cursors(room, ["ann", "bob", "dee"])
    assert [(e.data["user_id"], e.data["x"]) for e in newest] == [("bob", 2), ("ann", 3)]
    assert await event_log.latest_cursors(room, []) == []
    assert await event_log.latest_cursors(f"{room}-other", ["ann"]) == []
    for module in ("engine.log.store", "engine.log.memory"):
        monkeypatch.setattr(f"{module}.CURSOR_WINDOW", 3)  # the move, cy's and the typing
    assert [e.data["x"] for e in await event_log.latest_cursors(room, ["ann", "bob"])] == [3]
