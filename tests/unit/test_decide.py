"""Decisions: roles, membership, a cell update's room and version, and the user's own things."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.decisions import access, own_stream
from engine.decisions import cells as cell_rules
from engine.model.actors import Actor, Role
from engine.model.catalogue import (
    FILE_UPLOAD_FAILED,
    FILE_UPLOAD_STARTED,
    NOTIFICATION_CREATED,
)
from engine.model.errors import NotFound, PermissionDenied, RoomNotFound, ValidationFailed, VersionConflict
from engine.model.numbers import MAX_SAFE_INTEGER
from engine.projections import cells, notifications, uploads
from tests.unit.event_log import Log, at

ROOM = "workspace_123"
MESSAGES = [
    "ping",
    "join_room",
    "leave_room",
    "cursor_move",
    "cell_update",
    "status_update",
    "typing_start",
    "typing_stop",
    "ai_request",
    "ai_cancel",
    "subscribe_notifications",
    "notification_read",
    "file_upload_start",
    "file_upload_progress",
]


def actor(*roles: Role, rooms: tuple[str, ...] | None = None) -> Actor:
    return Actor("user_2", "jane_doe", "jane@example.com", roles=roles, rooms=rooms)


def cell(version: int, value: object = "old", user: str = "user_1") -> cells.Cell:
    return cells.Cell("A1", value, None, version, user, at(0), seq=1)


# Roles.


@pytest.mark.parametrize("message_type", MESSAGES)
@pytest.mark.parametrize("role", ["admin", "editor"])
def test_decide_authorize_lets_admins_and_editors_send_everything(role: Role, message_type: str) -> None:
    access.authorize(actor(role), message_type)


@pytest.mark.parametrize("message_type", MESSAGES)
def test_decide_authorize_viewer_may_not_edit_cells_use_ai_or_upload(message_type: str) -> None:
    if message_type in {
        "cell_update",
        "ai_request",
        "ai_cancel",
        "file_upload_start",
        "file_upload_progress",
    }:
        with pytest.raises(PermissionDenied) as caught:
            access.authorize(actor("viewer"), message_type)
        assert caught.value.code == "PERMISSION_DENIED"
    else:
        access.authorize(actor("viewer"), message_type)


@pytest.mark.parametrize("message_type", MESSAGES)
def test_decide_authorize_auditor_sends_nothing_but_ping(message_type: str) -> None:
    if message_type == "ping":
        access.authorize(actor("auditor"), message_type)
    else:
        with pytest.raises(PermissionDenied):
            access.authorize(actor("auditor"), message_type)


@pytest.mark.parametrize(
    ("roles", "may"),
    [
        (("admin",), True),
        (("editor",), True),
        (("viewer", "editor"), True),
        (("viewer",), False),
        (("auditor",), False),
    ],
)
def test_decide_uploads_over_rest_and_socket_follow_one_rule(roles: tuple[Role, ...], may: bool) -> None:
    uploader = actor(*roles)
    assert uploader.may_upload() is may
    for message_type in ("file_upload_start", "file_upload_progress"):
        assert uploader.may_send(message_type) is may


def test_decide_authorize_takes_the_most_permissive_of_several_roles() -> None:
    access.authorize(actor("auditor", "editor"), "cell_update")
    access.authorize(actor("auditor", "viewer"), "cursor_move")
    access.authorize(actor(), "ping")
    with pytest.raises(PermissionDenied):
        access.authorize(actor(), "cursor_move")


# Rooms.


def test_decide_check_join_applies_roles_patterns_and_room_existence() -> None:
    access.check_join(actor("viewer"), ROOM, room_exists=False)
    access.check_join(actor("editor"), ROOM, room_exists=True, auto_create=False)
    with pytest.raises(PermissionDenied):
        access.check_join(actor("auditor"), ROOM, room_exists=True)
    with pytest.raises(PermissionDenied):
        access.check_join(actor("editor", rooms=("team-*",)), ROOM, room_exists=True)
    with pytest.raises(RoomNotFound) as caught:
        access.check_join(actor("editor"), ROOM, room_exists=False, auto_create=False)
    assert caught.value.code == "ROOM_NOT_FOUND"


def test_decide_acting_in_a_room_not_joined_is_denied() -> None:
    access.require_member(ROOM, {ROOM})
    with pytest.raises(PermissionDenied, match="join room"):
        access.require_member(ROOM, {"other"})


def test_decide_leaving_a_room_not_in_is_room_not_found() -> None:
    access.require_in_room(ROOM, [ROOM])
    with pytest.raises(RoomNotFound):
        access.require_in_room(ROOM, [])


# Which room a cell update goes to.


def test_decide_cell_update_room_is_its_room_field_for_a_new_sheet() -> None:
    assert (
        cell_rules.room_for_cell_update("s1", room="r2", sheet_room=None, joined_rooms={"r1", "r2"}) == "r2"
    )


def test_decide_cell_update_room_is_the_sheets_room() -> None:
    assert (
        cell_rules.room_for_cell_update("s1", room=None, sheet_room="r1", joined_rooms={"r1", "r2"}) == "r1"
    )
    assert cell_rules.room_for_cell_update("s1", room="r1", sheet_room="r1", joined_rooms={"r1"}) == "r1"


def test_decide_cell_update_room_is_the_senders_only_room() -> None:
    assert cell_rules.room_for_cell_update("s1", room=None, sheet_room=None, joined_rooms=["r1"]) == "r1"


@pytest.mark.parametrize("joined", [set(), {"r1", "r2"}])
def test_decide_cell_update_room_asks_for_room_when_it_cannot_tell(joined: set[str]) -> None:
    with pytest.raises(ValidationFailed, match=r"^cell_update of new sheet 's1' needs 'room'") as caught:
        cell_rules.room_for_cell_update("s1", room=None, sheet_room=None, joined_rooms=joined)
    assert caught.value.details["details"][0]["loc"] == ["room"]
    with pytest.raises(ValidationFailed, match=r"^cells_update of new sheet 's1' needs 'room'"):
        cell_rules.room_for_cell_update(
            "s1", room=None, sheet_room=None, joined_rooms=joined, message_type="cells_update"
        )


def test_decide_cell_update_room_refuses_to_move_a_sheet() -> None:
    with pytest.raises(ValidationFailed, match="belongs to room 'r1'") as caught:
        cell_rules.room_for_cell_update("s1", room="r2", sheet_room="r1", joined_rooms={"r1", "r2"})
    assert caught.value.details == {"sheet_id": "s1", "room": "r1"}


# Cell versions.


def test_decide_cell_version_seed_example() -> None:
    assert cell_rules.next_cell_version(None, 1642161000000) == 1642161000001


def test_decide_cell_version_without_version_is_current_plus_one() -> None:
    assert cell_rules.next_cell_version(None, None) == 1
    assert cell_rules.next_cell_version(cell(7), None) == 8


def test_decide_cell_version_is_above_the_current_and_the_clients() -> None:
    assert cell_rules.next_cell_version(cell(7), 7) == 8
    assert cell_rules.next_cell_version(cell(7), 100) == 101


def test_decide_cell_version_stale_base_is_a_conflict_with_the_current_cell() -> None:
    with pytest.raises(VersionConflict) as caught:
        cell_rules.next_cell_version(cell(1642161000001, "Hello World", "user_1"), 1642161000000)
    assert caught.value.code == "VERSION_CONFLICT"
    assert caught.value.details == {
        "current": {"value": "Hello World", "formula": None, "version": 1642161000001, "user_id": "user_1"}
    }


def test_decide_cell_version_stays_javascript_safe() -> None:
    assert cell_rules.next_cell_version(None, MAX_SAFE_INTEGER - 1) == MAX_SAFE_INTEGER
    with pytest.raises(ValidationFailed, match="2\\*\\*53"):
        cell_rules.next_cell_version(None, MAX_SAFE_INTEGER)
    with pytest.raises(ValidationFailed):
        cell_rules.next_cell_version(cell(MAX_SAFE_INTEGER), None)


def test_decide_two_updates_on_the_same_base_never_both_win() -> None:
    first = cell_rules.next_cell_version(cell(3), 3)
    with pytest.raises(VersionConflict):
        cell_rules.next_cell_version(cell(first), 3)


@settings(max_examples=300)
@given(st.lists(st.none() | st.integers(0, 2**53 - 2), max_size=30))
def test_decide_cell_versions_strictly_increase_along_accepted_updates(requested: list[int | None]) -> None:
    log = Log()
    sheet = cells.Sheet("s1")
    for n, version in enumerate(requested):
        current = sheet.cells.get("A1")
        try:
            new = cell_rules.next_cell_version(current, version)
        except VersionConflict:
            assert current is not None and version is not None and version < current.version
            continue
        except ValidationFailed:  # the next version would not be JavaScript-safe
            assert max(current.version if current else 0, version or 0) == MAX_SAFE_INTEGER
            continue
        assert new <= MAX_SAFE_INTEGER
        assert new > (current.version if current else 0)
        assert version is None or new > version
        sheet = cells.apply(sheet, log.cell(ROOM, "user_1", "s1", "A1", n, new, n))
    versions = [e.data["version"] for e in log.events]
    assert versions == sorted(set(versions))


# The user's own things.


def test_decide_notification_read_of_an_unknown_id_is_not_found() -> None:
    log = Log()
    notification = {
        "id": "n1",
        "title": "t",
        "message": "m",
        "category": "c",
        "priority": "p",
        "module_name": "x",
    }
    log.user("user_2", NOTIFICATION_CREATED, 1, notification=notification)
    inbox = notifications.project(log.events, "user_2")
    assert own_stream.require_notification(inbox, "n1").id == "n1"
    with pytest.raises(NotFound) as caught:
        own_stream.require_notification(inbox, "n2")
    assert caught.value.code == "NOT_FOUND"


def test_decide_uploads_need_a_fresh_id_and_their_owner() -> None:
    log = Log()
    log.user(
        "user_2", FILE_UPLOAD_STARTED, 1, file_id="f1", filename="a.csv", file_size=3, mime_type="text/csv"
    )
    upload = uploads.project(log.events, "f1")
    own_stream.check_upload_start(None, actor("editor"), "f1")
    with pytest.raises(ValidationFailed, match="in use"):
        own_stream.check_upload_start(upload, actor("editor"), "f1")
    assert own_stream.require_own_upload(upload, actor("editor"), "f1") is upload
    with pytest.raises(NotFound):
        own_stream.require_own_upload(upload, Actor("someone", "else"), "f1")
    with pytest.raises(NotFound):
        own_stream.require_own_upload(None, actor("editor"), "f1")
    log.user("user_2", "FileUploadCompleted", 2, file_id="f1", url="/f1", size=3, sha256="00")
    with pytest.raises(ValidationFailed, match="complete"):
        own_stream.require_own_upload(uploads.project(log.events, "f1"), actor("editor"), "f1")


def test_decide_a_failed_upload_is_released_to_its_owner_only() -> None:
    log = Log()
    log.user("user_2", FILE_UPLOAD_STARTED, 1, file_id="f1", filename="a.csv", file_size=3, mime_type="")
    log.user("user_2", FILE_UPLOAD_FAILED, 2, file_id="f1", reason="idle_timeout")
    failed = uploads.project(log.events, "f1")
    own_stream.check_upload_start(failed, actor("editor"), "f1")  # the owner starts it again
    with pytest.raises(ValidationFailed, match="in use"):
        own_stream.check_upload_start(failed, Actor("someone", "else"), "f1")
    with pytest.raises(ValidationFailed, match="start it again"):
        own_stream.require_own_upload(failed, actor("editor"), "f1")
