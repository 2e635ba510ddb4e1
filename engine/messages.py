"""The wire protocol's messages: inbound schemas, one discriminated union on `type`, and outbound shapes.

Every inbound frame goes through `decode` -> `parse` before it reaches a decision, so a malformed
message is refused with a precise code (INVALID_JSON, VALIDATION_ERROR, UNKNOWN_MESSAGE_TYPE) and
never half-applied. Inbound models allow extra fields: Socket.IO-era clients send the seed's shapes,
sometimes with more than we read, and must keep working unchanged (PROTOCOL.md).

Outbound messages are plain dicts built here, in one place, so their shapes match the seed and the
protocol's envelope additions (`room_id`, `seq`, `ts`) are applied uniformly. Times are passed in,
never read from the clock, which keeps this module pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from engine.actors import Actor
from engine.errors import InvalidJson, UnknownMessageType, ValidationFailed
from engine.projections.rooms import Member, RoomView

MAX_ROOM_ID_LENGTH: Final = 128
MAX_CLIENT_MSG_ID_LENGTH: Final = 64
# Ids echoed back on errors: longer strings are not echoed, so an error never amplifies a large input.
_MAX_ECHO_LENGTH: Final = 128
_ECHOED: Final = ("client_msg_id", "request_id")

# Control characters are refused: PostgreSQL text cannot hold NUL at all, and the others only make
# room ids that logs and URLs mangle.
RoomId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ROOM_ID_LENGTH, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class Inbound(BaseModel):
    # strict: "5" is not a seq and 5 is not a room id; a client that sends them has a bug to learn of.
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    client_msg_id: str | None = Field(default=None, min_length=1, max_length=MAX_CLIENT_MSG_ID_LENGTH)


class Ping(Inbound):
    type: Literal["ping"]


class JoinRoom(Inbound):
    type: Literal["join_room"]
    room_id: RoomId
    since: int | None = Field(default=None, ge=0)


InboundMessage = Annotated[Ping | JoinRoom, Field(discriminator="type")]
_INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)
INBOUND_TYPES: Final = frozenset({"ping", "join_room"})


def decode(raw: str | bytes) -> Any:
    """The JSON value of a frame; raises InvalidJson."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"message is not valid JSON: {exc}") from None


def correlation_ids(payload: Any) -> dict[str, str]:
    """The ids a reply to `payload` must echo (`client_msg_id`, `request_id`), whatever else is wrong
    with it, so a client can match even an error to what it sent."""
    if not isinstance(payload, Mapping):
        return {}
    return {
        key: value
        for key in _ECHOED
        if isinstance(value := payload.get(key), str) and len(value) <= _MAX_ECHO_LENGTH
    }


def parse(payload: Any) -> InboundMessage:
    """A validated inbound message; raises ValidationFailed or UnknownMessageType."""
    if not isinstance(payload, Mapping):
        raise ValidationFailed("message must be a JSON object")
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValidationFailed("message must have a string field 'type'")
    if kind not in INBOUND_TYPES:
        raise UnknownMessageType(f"unknown message type {kind[:64]!r}", supported=sorted(INBOUND_TYPES))
    try:
        return _INBOUND.validate_python(payload)
    except PydanticValidationError as exc:
        problems = [
            {"loc": list(err["loc"][1:]), "msg": err["msg"], "type": err["type"]}  # loc[0] is the tag
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise ValidationFailed(f"invalid {kind!r} message", details=problems) from None


# Outbound.


def iso(at: datetime) -> str:
    """ISO-8601 in UTC with a `Z`, as in the seed; microseconds kept so a `ts` can be queried back."""
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def connected(
    connection_id: str, actor: Actor, *, heartbeat_interval: float, heartbeat_timeout: float
) -> dict[str, Any]:
    return {
        "type": "connected",
        "connection_id": connection_id,
        "user": actor.public(),
        "heartbeat": {"interval": heartbeat_interval, "timeout": heartbeat_timeout},
    }


def pong(now: datetime, echo: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"type": "pong", "ts": iso(now), **(echo or {})}


def room_user(member: Member, room_id: str) -> dict[str, Any]:
    """The seed's `room_state.users[]` entry."""
    return {
        "user_id": member.user_id,
        "username": member.username,
        "email": member.email,
        "room": room_id,
        "status": member.status,
        "cursor": dict(member.cursor) if member.cursor is not None else None,
        "last_seen": iso(member.last_seen),
    }


def room_state(view: RoomView) -> dict[str, Any]:
    """The seed's `room_state`, plus `seq` and `ts` of the newest event it reflects."""
    return {
        "type": "room_state",
        "room_id": view.room_id,
        "users": [room_user(member, view.room_id) for member in view.members.values()],
        "active_sheets": list(view.active_sheets),
        "total_users": view.total_users,
        "seq": view.seq,
        "ts": iso(view.last_activity) if view.last_activity is not None else None,
    }


def error(
    code: str, text: str, *, now: datetime, echo: Mapping[str, str] | None = None, **details: Any
) -> dict[str, Any]:
    """`{"type":"error","error","code","timestamp"}`, echoing the inbound's ids, plus any details."""
    return {"type": "error", "error": text, "code": code, "timestamp": iso(now), **details, **(echo or {})}


__all__ = [
    "INBOUND_TYPES",
    "MAX_ROOM_ID_LENGTH",
    "Inbound",
    "InboundMessage",
    "JoinRoom",
    "Ping",
    "connected",
    "correlation_ids",
    "decode",
    "error",
    "iso",
    "parse",
    "pong",
    "room_state",
    "room_user",
]
