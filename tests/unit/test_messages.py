"""The message package as a whole: decode -> parse, its error codes and details, and the seed's own
examples, in and out, verbatim."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import orjson
import pytest

from engine import protocol as messages
from engine.model.errors import InvalidJson, UnknownMessageType, ValidationFailed
from engine.projections.rooms import Member, RoomView
from engine.protocol import Envelope, JoinRoom, Ping
from tests.unit.seed_examples import SEED_BROADCAST_BODIES, SEED_INBOUND_BLOCKS, SEED_OUTBOUND_BLOCKS, objects

NOW = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
ALL_INBOUND = [
    "ai_cancel",
    "ai_request",
    "cell_update",
    "cells_update",
    "cursor_move",
    "file_upload_progress",
    "file_upload_start",
    "join_room",
    "leave_room",
    "load_sheet",
    "notification_read",
    "ping",
    "refresh_token",
    "status_update",
    "subscribe_notifications",
    "typing_start",
    "typing_stop",
]


def seed_inbound() -> list[dict[str, Any]]:
    return [payload for block in SEED_INBOUND_BLOCKS for payload in objects(block)]


def seed_outbound() -> list[dict[str, Any]]:
    return [payload for block in SEED_OUTBOUND_BLOCKS for payload in objects(block)]


# decode / parse


def test_messages_decode_refuses_invalid_json() -> None:
    with pytest.raises(InvalidJson):
        messages.decode(b"{not json")
    with pytest.raises(InvalidJson):
        messages.decode(b'"\\ud800"')  # an unpaired surrogate is not text PostgreSQL can hold
    assert messages.decode('{"type": "ping"}') == {"type": "ping"}


@pytest.mark.parametrize("payload", [[1, 2], "ping", 3, None, {}, {"type": 7}, {"type": ""}])
def test_messages_parse_refuses_non_objects_and_missing_type(payload: object) -> None:
    with pytest.raises(ValidationFailed):
        messages.parse(payload)


def test_messages_parse_refuses_unknown_type_with_the_supported_list() -> None:
    with pytest.raises(UnknownMessageType) as caught:
        messages.parse({"type": "teleport" * 100})
    assert caught.value.code == "UNKNOWN_MESSAGE_TYPE"
    assert caught.value.details["supported"] == ALL_INBOUND
    assert len(caught.value.message) < 100


def test_messages_inbound_types_are_the_union_members() -> None:
    union = get_args(get_args(messages.InboundMessage)[0])
    assert union == messages.INBOUND_MODELS
    assert sorted(messages.INBOUND_TYPES) == ALL_INBOUND


def test_messages_parse_keeps_extra_fields_of_seed_clients() -> None:
    parsed = messages.parse({"type": "join_room", "room_id": "r1", "legacy": True, "client_msg_id": "m1"})
    assert isinstance(parsed, JoinRoom)
    assert (parsed.room_id, parsed.client_msg_id, parsed.since) == ("r1", "m1", None)
    assert parsed.model_extra == {"legacy": True}
    assert isinstance(messages.parse({"type": "ping"}), Ping)


def test_messages_parse_details_name_field_paths_and_never_quote_the_input() -> None:
    huge = "x" * 50_000
    with pytest.raises(ValidationFailed) as caught:
        messages.parse({"type": "cell_update", "sheet_id": huge, "cell_id": 5, "value": huge})
    details = caught.value.details["details"]
    assert [detail["loc"] for detail in details] == [["sheet_id"], ["cell_id"], ["value"]]
    assert all(set(detail) == {"loc", "msg", "type"} for detail in details)
    assert len(orjson.dumps(caught.value.details)) < 600


def test_messages_parse_lists_at_most_ten_problems() -> None:
    payload = {"type": "subscribe_notifications", "categories": [1] * 20, "modules": [2] * 20}
    with pytest.raises(ValidationFailed) as caught:
        messages.parse(payload)
    assert len(caught.value.details["details"]) == 10


def test_messages_parse_reports_a_nested_path() -> None:
    payload = {"type": "ai_request", "request_id": "r", "query": "q", "sheet_id": "s"}
    with pytest.raises(ValidationFailed) as caught:
        messages.parse({**payload, "context": {"table_range": "A1:B"}})
    assert caught.value.details["details"][0]["loc"] == ["context", "table_range"]


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"type": "cell_update", "sheet_id": "s", "cell_id": "c", "value": "a\x00b"}, ["value"]),
        ({"type": "ping", "note": {"deep": ["ok", "nul\x00"]}}, ["note", "deep", 1]),
        ({"type": "ping", "key\x00": 1}, []),
        ({"type": "ping", "note": "\ud800"}, ["note"]),
        ({"type": "ping", "note": "é\udfff"}, ["note"]),
    ],
    ids=["declared-field", "nested-extra", "key", "lone-high-surrogate", "lone-low-surrogate"],
)
def test_messages_parse_refuses_text_postgresql_cannot_store_anywhere(
    payload: object, loc: list[Any]
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        messages.parse(payload)
    assert caught.value.details["details"][0]["loc"] == loc


def test_messages_parse_walks_deep_and_wide_payloads_without_recursion() -> None:
    deep: Any = "end\x00"
    for _ in range(5_000):
        deep = [deep]
    with pytest.raises(ValidationFailed) as caught:
        messages.parse({"type": "ping", "deep": deep})
    assert len(caught.value.details["details"][0]["loc"]) == 5_001
    wide: Any = ["x"] * 30_000
    for _ in range(500):
        wide = [wide]
    assert isinstance(messages.parse({"type": "ping", "wide": wide}), Ping)


def test_messages_correlation_ids_echo_only_short_strings() -> None:
    payload = {"client_msg_id": "m1", "request_id": 5, "other": "x"}
    assert messages.correlation_ids(payload) == {"client_msg_id": "m1"}
    assert messages.correlation_ids({"request_id": "r" * 129}) == {}
    assert messages.correlation_ids({"request_id": "req_123"}) == {"request_id": "req_123"}
    assert messages.correlation_ids([1]) == {}


def test_messages_iso_is_utc_with_z() -> None:
    at = datetime(2024, 1, 15, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    assert messages.iso(at) == "2024-01-15T10:30:00.000000Z"


# The original examples, verbatim.


def test_messages_seed_covers_every_inbound_type_but_ours() -> None:
    seed_types = {payload["type"] for payload in seed_inbound()}
    # ping is in the original test section; the others are the protocol's additions.
    ours = {"ping", "ai_cancel", "cells_update", "load_sheet", "refresh_token"}
    assert seed_types | ours == messages.INBOUND_TYPES


@pytest.mark.parametrize("payload", seed_inbound(), ids=lambda payload: payload["type"])
def test_messages_parse_accepts_every_seed_example_as_written(payload: dict[str, Any]) -> None:
    parsed = messages.parse(payload)
    assert parsed.type == payload["type"]
    # Nothing lost or coerced: ints stay ints (x: 150, not 150.0), floats stay floats (50.0).
    dumped = parsed.model_dump(exclude_unset=True)
    assert dumped == payload
    assert [type(value) for value in dumped.values()] == [type(value) for value in payload.values()]


def test_messages_parse_accepts_the_seed_test_sections_ping() -> None:
    assert isinstance(messages.parse(messages.decode(orjson.dumps({"type": "ping"}))), Ping)


def test_messages_parse_round_trips_every_seed_example_through_json() -> None:
    for payload in seed_inbound():
        assert messages.parse(messages.decode(orjson.dumps(payload))) == messages.parse(payload)


# Keys the protocol adds to the original outbound shapes, besides the envelope.
PROTOCOL_ADDS: dict[str, set[str]] = {
    "room_state": {"seq", "ts"},
    "cursor_moved": {"room"},
    "user_typing_start": {"room"},
    "file_upload_complete": {"size", "sha256"},
    "error": {"timestamp"},  # the seed's rate-limit example has none; every error of ours has one
}
# The envelope each message carries per docs/protocol.md.
ROOM_EVENT = frozenset({"room_id", "seq", "ts", "client_msg_id"})
USER_EVENT = frozenset({"seq", "ts", "client_msg_id"})
VOLATILE = frozenset({"client_msg_id"})
ENVELOPE_OF = {
    "cursor_moved": VOLATILE,
    "cell_updated": ROOM_EVENT,
    "user_status_changed": USER_EVENT,
    "user_typing_start": VOLATILE,
    "ai_event": USER_EVENT,
    "notification_event": USER_EVENT,
    "file_upload_complete": USER_EVENT,
}
ENVELOPES = {
    ROOM_EVENT: Envelope(room_id="workspace_123", seq=9, ts=NOW, client_msg_id="m-1"),
    USER_EVENT: Envelope(seq=9, ts=NOW, client_msg_id="m-1"),
    VOLATILE: Envelope(client_msg_id="m-1"),
}


def build_like(seed: dict[str, Any], envelope: Envelope | None) -> dict[str, Any]:
    """Our builder's message for the seed's example, from the seed's own values."""
    kind = seed["type"]
    if kind == "cursor_moved":
        return messages.cursor_moved(
            "workspace_123", seed["user_id"], seed["username"], **seed["cursor"], envelope=envelope
        )
    if kind == "cell_updated":
        fields = {key: value for key, value in seed.items() if key not in {"type", "sheet_id", "cell_id"}}
        return messages.cell_updated(seed["sheet_id"], seed["cell_id"], **fields, envelope=envelope)
    if kind == "user_status_changed":
        return messages.user_status_changed(seed["user_id"], seed["status"], envelope=envelope)
    if kind == "user_typing_start":
        args = (seed["user_id"], seed["username"], seed["cell_id"])
        return messages.user_typing_start("workspace_123", *args, envelope=envelope)
    if kind == "ai_event":
        args = (seed["event_type"], seed["request_id"], seed["user_id"], seed["data"])
        return messages.ai_event(*args, envelope=envelope)
    if kind == "notification_event":
        args = (seed["event_type"], seed["notification"], seed["user_id"])
        return messages.notification_event(*args, envelope=envelope)
    if kind == "file_upload_complete":
        fields = {"url": seed["url"], "user_id": seed["user_id"], "size": 1024000, "sha256": "ab" * 32}
        return messages.file_upload_complete(seed["file_id"], seed["filename"], **fields, envelope=envelope)
    if kind == "error":
        return messages.error(seed["code"], seed["error"], now=NOW)
    raise AssertionError(f"no builder for the seed's {kind!r}")


def _cases() -> list[Any]:
    return [
        pytest.param(seed, id=f"{seed['type']}-{seed.get('event_type') or seed.get('code', '')}")
        for seed in seed_outbound()
        if seed["type"] != "room_state"
    ]


@pytest.mark.parametrize("seed", _cases())
def test_messages_builders_give_the_seeds_shape_and_values(seed: dict[str, Any]) -> None:
    built = build_like(seed, None)
    assert set(built) == set(seed) | PROTOCOL_ADDS.get(seed["type"], set())
    same = {key: built[key] for key in seed if key != "timestamp"}
    assert same == {key: value for key, value in seed.items() if key != "timestamp"}


@pytest.mark.parametrize("seed", [case for case in _cases() if case.values[0]["type"] != "error"])
def test_messages_builders_add_only_the_documented_envelope(seed: dict[str, Any]) -> None:
    documented = ENVELOPE_OF[seed["type"]]
    built = build_like(seed, ENVELOPES[documented])
    assert set(built) == set(seed) | PROTOCOL_ADDS.get(seed["type"], set()) | documented
    assert built["client_msg_id"] == "m-1"


def test_messages_room_state_has_the_seeds_keys_at_every_level() -> None:
    (seed,) = [payload for payload in seed_outbound() if payload["type"] == "room_state"]
    seed_user = seed["users"][0]
    member = Member(
        seed_user["user_id"],
        seed_user["username"],
        seed_user["email"],
        seed_user["status"],
        seed_user["cursor"],
        datetime.fromisoformat(seed_user["last_seen"]),
        frozenset({"c1"}),
    )
    view = RoomView(seed["room_id"], members={member.user_id: member}, active_sheets=("sheet_1", "sheet_2"))
    built = messages.room_state(view)
    assert set(built) == set(seed) | {"seq", "ts"}
    assert set(built["users"][0]) == set(seed_user)
    assert built["users"][0]["cursor"] == seed_user["cursor"]
    assert (built["active_sheets"], built["total_users"]) == (seed["active_sheets"], seed["total_users"])
    assert datetime.fromisoformat(built["users"][0]["last_seen"]) == datetime.fromisoformat(
        seed_user["last_seen"]
    )


@pytest.mark.parametrize("body", SEED_BROADCAST_BODIES, ids=["system_announcement", "direct_message"])
def test_messages_broadcast_passes_the_seeds_bodies_through(body: str) -> None:
    payload = orjson.loads(body)
    assert messages.broadcast(payload) == payload
