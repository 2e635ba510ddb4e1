"""Every inbound message type: what it accepts and, bound by bound, what it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from engine import protocol as messages
from engine.model.errors import ValidationFailed
from engine.protocol import (
    AiRequest,
    CellUpdate,
    CursorMove,
    FileUploadProgress,
    FileUploadStart,
    SubscribeNotifications,
)

MAX_SAFE = 2**53 - 1
R = "workspace_123"
VALID: dict[str, dict[str, Any]] = {
    "ping": {"type": "ping"},
    "join_room": {"type": "join_room", "room_id": R},
    "leave_room": {"type": "leave_room", "room_id": R},
    "cursor_move": {"type": "cursor_move", "room": R, "x": 150, "y": 300, "cell": "B2"},
    "cell_update": {"type": "cell_update", "sheet_id": "sheet_123", "cell_id": "A1", "value": "Hello"},
    "status_update": {"type": "status_update", "status": "busy"},
    "typing_start": {"type": "typing_start", "cell_id": "A1", "room": R},
    "typing_stop": {"type": "typing_stop", "cell_id": "A1", "room": R},
    "ai_request": {
        "type": "ai_request",
        "request_id": "req_123",
        "query": "Analyze",
        "sheet_id": "sheet_123",
    },
    "ai_cancel": {"type": "ai_cancel", "request_id": "req_123"},
    "subscribe_notifications": {"type": "subscribe_notifications"},
    "notification_read": {"type": "notification_read", "notification_id": "notif_123"},
    "file_upload_start": {
        "type": "file_upload_start",
        "file_id": "file_123",
        "filename": "data.csv",
        "file_size": 1024000,
        "mime_type": "text/csv",
    },
    "file_upload_progress": {
        "type": "file_upload_progress",
        "file_id": "file_123",
        "bytes_uploaded": 512000,
        "total_bytes": 1024000,
        "percentage": 50.0,
    },
}
# Each type's required fields besides `type`.
REQUIRED = {
    "ping": [],
    "join_room": ["room_id"],
    "leave_room": ["room_id"],
    "cursor_move": ["room", "x", "y"],
    "cell_update": ["sheet_id", "cell_id", "value"],
    "status_update": ["status"],
    "typing_start": ["cell_id", "room"],
    "typing_stop": ["cell_id", "room"],
    "ai_request": ["request_id", "query", "sheet_id"],
    "ai_cancel": ["request_id"],
    "subscribe_notifications": [],
    "notification_read": ["notification_id"],
    "file_upload_start": ["file_id", "filename", "file_size"],
    "file_upload_progress": ["file_id", "bytes_uploaded", "total_bytes", "percentage"],
}
# Every id-like field: 1-128 characters, no control characters.
ID_FIELDS = [
    ("join_room", "room_id"),
    ("leave_room", "room_id"),
    ("cursor_move", "room"),
    ("cursor_move", "cell"),
    ("cell_update", "sheet_id"),
    ("cell_update", "cell_id"),
    ("cell_update", "room"),
    ("typing_start", "cell_id"),
    ("typing_start", "room"),
    ("typing_stop", "cell_id"),
    ("typing_stop", "room"),
    ("ai_request", "request_id"),
    ("ai_request", "sheet_id"),
    ("ai_cancel", "request_id"),
    ("notification_read", "notification_id"),
]
BAD_IDS = ["", "x" * 129, 42, None, ["r"], "bad\x00id", "tab\tid", "new\nline", "del\x7f", "c1\x85"]


def parse(kind: str, **changes: Any) -> Any:
    return messages.parse({**VALID[kind], **changes})


def refused(kind: str, loc: list[Any] | None = None, **changes: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationFailed) as caught:
        parse(kind, **changes)
    details: list[dict[str, Any]] = caught.value.details.get("details", [])
    if loc is not None:
        assert [detail["loc"] for detail in details] == [loc], details
    return details


def without(kind: str, field: str) -> dict[str, Any]:
    return {key: value for key, value in VALID[kind].items() if key != field}


# Every type.


@pytest.mark.parametrize("kind", sorted(VALID))
def test_inbound_valid_example_parses_to_its_model(kind: str) -> None:
    parsed = parse(kind)
    assert parsed.type == kind
    assert parsed.client_msg_id is None


@pytest.mark.parametrize(("kind", "field"), [(k, f) for k, fields in REQUIRED.items() for f in fields])
def test_inbound_required_field_missing_is_refused_with_its_path(kind: str, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        messages.parse(without(kind, field))
    assert caught.value.details["details"] == [{"loc": [field], "msg": "Field required", "type": "missing"}]


@pytest.mark.parametrize("kind", sorted(VALID))
def test_inbound_client_msg_id_is_optional_and_bounded(kind: str) -> None:
    assert parse(kind, client_msg_id="m" * 64).client_msg_id == "m" * 64
    for bad in ["", "m" * 65, 7, "a\nb"]:
        refused(kind, ["client_msg_id"], client_msg_id=bad)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_inbound_extra_fields_are_kept(kind: str) -> None:
    assert parse(kind, socket_io_ack=3).model_extra == {"socket_io_ack": 3}


@pytest.mark.parametrize(("kind", "field"), ID_FIELDS)
def test_inbound_ids_are_short_printable_strings(kind: str, field: str) -> None:
    assert getattr(parse(kind, **{field: "é" * 128}), field) == "é" * 128
    optional = (kind, field) in {("cursor_move", "cell"), ("cell_update", "room")}
    for bad in BAD_IDS:
        if bad is None and optional:
            assert getattr(parse(kind, **{field: bad}), field) is None  # null means absent
        else:
            refused(kind, [field], **{field: bad})


# join_room


def test_inbound_join_room_since_is_a_non_negative_safe_integer() -> None:
    assert parse("join_room", since=0).since == 0
    assert parse("join_room", since=MAX_SAFE).since == MAX_SAFE
    for bad in [-1, "5", 1.0, True, MAX_SAFE + 1, 10**400]:
        refused("join_room", ["since"], since=bad)


# cursor_move


def test_inbound_cursor_move_keeps_ints_and_accepts_floats() -> None:
    parsed = parse("cursor_move", x=150, y=-30.5)
    assert isinstance(parsed, CursorMove)
    assert (parsed.x, parsed.y) == (150, -30.5)
    assert type(parsed.x) is int
    assert parse("cursor_move", x=10_000_000, y=-10_000_000).x == 10_000_000
    assert parse("cursor_move", cell=None).cell is None
    assert messages.parse(without("cursor_move", "cell")).cell is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "bad", ["150", True, None, [1], 10_000_001, -1e8, 10**400, float("nan"), float("inf")], ids=repr
)
@pytest.mark.parametrize("field", ["x", "y"])
def test_inbound_cursor_move_coordinates_are_finite_bounded_numbers(field: str, bad: object) -> None:
    refused("cursor_move", [field], **{field: bad})


# cell_update


@pytest.mark.parametrize(
    "value", ["Hello", "", "x" * 32_767, 0, -MAX_SAFE, MAX_SAFE, 3.25, True, False, None], ids=repr
)
def test_inbound_cell_update_value_is_a_bounded_scalar_kept_as_sent(value: object) -> None:
    parsed = parse("cell_update", value=value)
    assert parsed.value == value
    assert type(parsed.value) is type(value)


@pytest.mark.parametrize(
    "value", ["x" * 32_768, MAX_SAFE + 1, -MAX_SAFE - 1, float("inf"), float("nan"), {"a": 1}, [1]], ids=repr
)
def test_inbound_cell_update_value_out_of_bounds_is_refused(value: object) -> None:
    refused("cell_update", ["value"], value=value)


def test_inbound_cell_update_optional_fields() -> None:
    parsed = parse("cell_update", formula="=SUM(A1:A3)\n", version=0, room=R)
    assert isinstance(parsed, CellUpdate)
    assert (parsed.formula, parsed.version, parsed.room) == ("=SUM(A1:A3)\n", 0, R)
    bare = parse("cell_update")
    assert (bare.formula, bare.version, bare.room) == (None, None, None)
    assert parse("cell_update", formula="=" * 8192, version=MAX_SAFE).version == MAX_SAFE


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("formula", "=" * 8193),
        ("formula", 5),
        ("version", -1),
        ("version", "1642161000000"),
        ("version", 1642161000000.0),
        ("version", True),
        ("version", MAX_SAFE + 1),
    ],
    ids=repr,
)
def test_inbound_cell_update_formula_and_version_bounds(field: str, bad: object) -> None:
    refused("cell_update", [field], **{field: bad})


# status_update


@pytest.mark.parametrize("status", ["online", "away", "busy"])
def test_inbound_status_update_accepts_the_seeds_statuses(status: str) -> None:
    assert parse("status_update", status=status).status == status


@pytest.mark.parametrize("status", ["offline", "ONLINE", "", 1, None])
def test_inbound_status_update_refuses_other_statuses(status: object) -> None:
    refused("status_update", ["status"], status=status)


# ai_request / ai_cancel


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("A1:Z100", "A1:Z100"),
        ("B2", "B2"),
        ("b2:c3", "B2:C3"),
        ("$A$1:$C$3", "A1:C3"),
        ("Z100:A1", "A1:Z100"),
        ("A1:A1", "A1:A1"),
        ("XFD1048576", "XFD1048576"),
        ("AA10:AB20", "AA10:AB20"),
    ],
)
def test_inbound_ai_request_table_range_is_an_a1_range(given: str, normalised: str) -> None:
    parsed = parse("ai_request", context={"table_range": given})
    assert isinstance(parsed, AiRequest)
    assert parsed.context is not None
    assert parsed.context.table_range == normalised


@pytest.mark.parametrize(
    "bad",
    ["", "A", "A0", "A1:", ":B2", "1A", "AAAA1", "XFE1", "A1048577", "A1:B2:C3", "A1-B2", " A1", 5],
    ids=repr,
)
def test_inbound_ai_request_refuses_a_bad_table_range(bad: object) -> None:
    refused("ai_request", ["context", "table_range"], context={"table_range": bad})


def test_inbound_ai_request_context_is_optional_and_open() -> None:
    assert parse("ai_request").context is None
    assert parse("ai_request", context=None).context is None
    context = parse("ai_request", context={"selection": [1, 2]}).context
    assert context.table_range is None
    assert context.model_extra == {"selection": [1, 2]}
    refused("ai_request", ["context"], context="A1:Z100")


def test_inbound_ai_request_query_is_bounded() -> None:
    assert parse("ai_request", query="q" * 10_000).query == "q" * 10_000
    for bad in ["", "q" * 10_001, 5]:
        refused("ai_request", ["query"], query=bad)


def test_messages_a1_bounds_are_one_based_and_ordered() -> None:
    assert messages.a1_bounds("A1:Z100") == (1, 1, 26, 100)
    assert messages.a1_bounds("c3:a1") == (1, 1, 3, 3)
    assert messages.a1_bounds("AA1") == (27, 1, 27, 1)
    assert messages.a1_bounds("XFD1048576") == (16_384, 1_048_576, 16_384, 1_048_576)
    for bad in ["A0", "XFE1", "A1:B", "nope"]:
        with pytest.raises(ValueError, match="A1"):
            messages.a1_bounds(bad)


# subscribe_notifications / notification_read


def test_inbound_subscribe_notifications_filters() -> None:
    parsed = parse("subscribe_notifications", categories=["system"], priorities=[])
    assert isinstance(parsed, SubscribeNotifications)
    assert parsed.filters() == {"categories": ["system"], "modules": None, "priorities": []}
    assert parse("subscribe_notifications", modules=["m" * 64] * 32).modules == ["m" * 64] * 32


@pytest.mark.parametrize(
    ("bad", "loc"),
    [
        ("system", []),
        ([1], [0]),
        ([""], [0]),
        (["m" * 65], [0]),
        (["ok", "a\tb"], [1]),
        (["m"] * 33, []),
        ({"system": True}, []),
    ],
    ids=repr,
)
@pytest.mark.parametrize("field", ["categories", "modules", "priorities"])
def test_inbound_subscribe_notifications_refuses_bad_filters(field: str, bad: object, loc: list[Any]) -> None:
    refused("subscribe_notifications", [field, *loc], **{field: bad})


# file_upload_start / file_upload_progress


def test_inbound_file_upload_start_accepts_seed_and_browser_shapes() -> None:
    parsed = parse("file_upload_start", file_id="3f2a-9c.v1_x~", filename="résumé 2024 (1).csv", file_size=0)
    assert isinstance(parsed, FileUploadStart)
    assert (parsed.file_id, parsed.filename, parsed.file_size) == ("3f2a-9c.v1_x~", "résumé 2024 (1).csv", 0)
    assert parse("file_upload_start", mime_type="").mime_type == ""  # browsers' File.type when unknown
    assert messages.parse(without("file_upload_start", "mime_type")).mime_type == ""  # type: ignore[union-attr]
    assert (
        parse("file_upload_start", mime_type="text/csv; charset=utf-8").mime_type == "text/csv; charset=utf-8"
    )
    assert parse("file_upload_start", filename="n" * 255, file_size=MAX_SAFE).file_size == MAX_SAFE


@pytest.mark.parametrize(
    "bad",
    ["../etc", "a/b", "a\\b", ".hidden", "-rf", "a..b", "..", ".", "a b", "é", "a%2F", "", "f" * 129, 7],
    ids=repr,
)
@pytest.mark.parametrize("kind", ["file_upload_start", "file_upload_progress"])
def test_inbound_file_id_is_a_safe_storage_key(kind: str, bad: object) -> None:
    refused(kind, ["file_id"], file_id=bad)


@pytest.mark.parametrize(
    "bad", ["a/b", "..\\x", "..", ".", "x..y", "a\x00b", "a\nb", "a\x1bb", "", "n" * 256, 5], ids=repr
)
def test_inbound_filename_cannot_be_a_path(bad: object) -> None:
    refused("file_upload_start", ["filename"], filename=bad)


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("file_size", -1),
        ("file_size", 1.5),
        ("file_size", "1024"),
        ("file_size", MAX_SAFE + 1),
        ("mime_type", "csv"),
        ("mime_type", "text/"),
        ("mime_type", "text/csv\r\nX-Evil: 1"),
        ("mime_type", "t" * 256),
        ("mime_type", 5),
    ],
    ids=repr,
)
def test_inbound_file_upload_start_size_and_type_bounds(field: str, bad: object) -> None:
    refused("file_upload_start", [field], **{field: bad})


@pytest.mark.parametrize("percentage", [0, 100, 50, 50.0, 99.5])
def test_inbound_file_upload_progress_percentage_kept_as_sent(percentage: float) -> None:
    parsed = parse("file_upload_progress", percentage=percentage)
    assert isinstance(parsed, FileUploadProgress)
    assert parsed.percentage == percentage
    assert type(parsed.percentage) is type(percentage)


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("percentage", -0.1),
        ("percentage", 100.1),
        ("percentage", "50"),
        ("percentage", True),
        ("percentage", float("nan")),
        ("bytes_uploaded", -1),
        ("bytes_uploaded", 1.5),
        ("total_bytes", -1),
        ("total_bytes", MAX_SAFE + 1),
    ],
    ids=repr,
)
def test_inbound_file_upload_progress_bounds(field: str, bad: object) -> None:
    refused("file_upload_progress", [field], **{field: bad})


def test_inbound_file_upload_progress_cannot_pass_its_total() -> None:
    assert parse("file_upload_progress", bytes_uploaded=1024000).bytes_uploaded == 1024000
    (detail,) = refused("file_upload_progress", [], bytes_uploaded=1024001)
    assert detail["msg"] == "bytes_uploaded must not exceed total_bytes"


def test_inbound_cells_update_past_the_schemas_cap_is_too_many_cells_not_a_schema_error() -> None:
    cells = [{"cell_id": f"A{n}", "value": n} for n in range(1, 10_002)]
    message = {"type": "cells_update", "sheet_id": "sheet_123", "cells": cells}
    assert len(messages.parse({**message, "cells": cells[:10_000]}).cells) == 10_000
    with pytest.raises(messages.TooManyCells) as caught:
        messages.parse(message)
    assert (caught.value.count, caught.value.details) == (10_001, {"limit": 10_000})
