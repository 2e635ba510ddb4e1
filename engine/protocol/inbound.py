"""What clients send: one pydantic model per message type, a discriminated union on `type`, and the
`decode` -> `parse` path every frame takes before it reaches a decision.

Old clients send the original shapes verbatim (docs/protocol.md), so models allow extra fields and keep
`int` where a client sent an int. Bounds are tight on purpose: everything here may end up in the log,
in a projection table, in a URL or in a storage path, and a bound refused at the door is one no later
layer has to think about.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator
from pydantic import ValidationError as PydanticValidationError

from engine.model.errors import InvalidJson, UnknownMessageType, ValidationFailed
from engine.model.numbers import MAX_SAFE_INTEGER
from engine.protocol.fields import (
    MAX_CELLS_IN_SCHEMA,
    MAX_FORMULA_LENGTH,
    MAX_QUERY_LENGTH,
    MAX_TOKEN_LENGTH,
    A1Range,
    ByteCount,
    CellValue,
    ClientMsgId,
    Coordinate,
    FileId,
    FileName,
    Filters,
    Id,
    MimeType,
    Percentage,
    RoomId,
    Status,
    Version,
    custom_error,
)

# Ids echoed back on errors: longer strings are not echoed, so an error never amplifies a large input.
_MAX_ECHO_LENGTH: Final = 128
_ECHOED: Final = ("client_msg_id", "request_id")
# A schema error lists at most this many problems, each message cut to this length.
_MAX_DETAILS: Final = 10
_MAX_DETAIL_TEXT: Final = 200


class Inbound(BaseModel):
    # strict: "5" is not a seq and 5 is not a room id; a client that sends them has a bug to learn of.
    # Extra fields are kept (old clients send more than we read) but must never be persisted as
    # they come: decide from the declared fields only.
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    client_msg_id: ClientMsgId | None = None


class Ping(Inbound):
    type: Literal["ping"]


class JoinRoom(Inbound):
    type: Literal["join_room"]
    room_id: RoomId
    since: Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER)] | None = None


class LeaveRoom(Inbound):
    type: Literal["leave_room"]
    room_id: RoomId


class CursorMove(Inbound):
    type: Literal["cursor_move"]
    room: RoomId
    x: Coordinate
    y: Coordinate
    cell: Id | None = None


class CellUpdate(Inbound):
    type: Literal["cell_update"]
    sheet_id: Id
    cell_id: Id
    value: CellValue
    formula: Annotated[str, StringConstraints(max_length=MAX_FORMULA_LENGTH)] | None = None
    # The client's base version; the server assigns the new one (docs/protocol.md, `cell_update`).
    version: Version | None = None
    room: RoomId | None = None


class CellChange(BaseModel):
    """One cell of a `cells_update`: the fields of a `cell_update` that name and change the cell."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    cell_id: Id
    value: CellValue
    formula: Annotated[str, StringConstraints(max_length=MAX_FORMULA_LENGTH)] | None = None
    version: Version | None = None


class CellsUpdate(Inbound):
    """A range written at once (a paste, a fill, a sort): one event, all or nothing. The schema bounds
    the list at `MAX_CELLS_IN_SCHEMA`; the server's `MAX_CELLS_PER_UPDATE` (at most that) is checked by
    the engine."""

    type: Literal["cells_update"]
    sheet_id: Id
    room: RoomId | None = None
    cells: Annotated[list[CellChange], Field(min_length=1, max_length=MAX_CELLS_IN_SCHEMA)]

    @model_validator(mode="after")
    def _distinct_cells(self) -> CellsUpdate:
        if len({change.cell_id for change in self.cells}) != len(self.cells):
            raise custom_error("distinct_cells", "each cell_id may appear once")
        return self


class LoadSheet(Inbound):
    """A read: the sheet's cells as of its room's seq (`sheet_state`). Not persisted."""

    type: Literal["load_sheet"]
    sheet_id: Id


class RefreshToken(Inbound):
    """Swap the connection's token in place, before it expires (`token_expiring`)."""

    type: Literal["refresh_token"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_LENGTH)]


class StatusUpdate(Inbound):
    type: Literal["status_update"]
    status: Status


class TypingStart(Inbound):
    type: Literal["typing_start"]
    cell_id: Id
    room: RoomId


class TypingStop(Inbound):
    type: Literal["typing_stop"]
    cell_id: Id
    room: RoomId


class AiContext(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    table_range: A1Range | None = None


class AiRequest(Inbound):
    type: Literal["ai_request"]
    request_id: Id
    query: Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY_LENGTH)]
    sheet_id: Id
    context: AiContext | None = None


class AiCancel(Inbound):
    type: Literal["ai_cancel"]
    request_id: Id


class SubscribeNotifications(Inbound):
    """Absent, null or empty: no filter on that dimension. A non-empty list must contain the
    notification's category / module / priority for it to be delivered (all given filters must match;
    engine/projections/notifications.py `matches`)."""

    type: Literal["subscribe_notifications"]
    categories: Filters | None = None
    modules: Filters | None = None
    priorities: Filters | None = None

    def filters(self) -> dict[str, list[str] | None]:
        """The filters as `notifications_subscribed` reports them back."""
        return {"categories": self.categories, "modules": self.modules, "priorities": self.priorities}


class NotificationRead(Inbound):
    type: Literal["notification_read"]
    notification_id: Id


class FileUploadStart(Inbound):
    type: Literal["file_upload_start"]
    file_id: FileId
    filename: FileName
    file_size: ByteCount
    mime_type: MimeType = ""


class FileUploadProgress(Inbound):
    type: Literal["file_upload_progress"]
    file_id: FileId
    bytes_uploaded: ByteCount
    total_bytes: ByteCount
    percentage: Percentage

    @model_validator(mode="after")
    def _uploaded_within_total(self) -> FileUploadProgress:
        if self.bytes_uploaded > self.total_bytes:
            raise custom_error("upload_progress", "bytes_uploaded must not exceed total_bytes")
        return self


class TooManyCells(ValidationFailed):
    """A `cells_update` of more cells than the schema takes (`MAX_CELLS_IN_SCHEMA`; only a raised
    MAX_MESSAGE_BYTES lets one through), refused before its cells are validated one by one. It is
    over a limit, not malformed: the session answers it as the handler answers a range over
    MAX_CELLS_PER_UPDATE (never above this cap), with `limit`, and not as a bad frame."""

    def __init__(self, count: int) -> None:
        super().__init__(
            f"a cells_update carries at most {MAX_CELLS_IN_SCHEMA} cells, this one {count}",
            limit=MAX_CELLS_IN_SCHEMA,
        )
        self.count = count


InboundMessage = Annotated[
    Ping
    | JoinRoom
    | LeaveRoom
    | CursorMove
    | CellUpdate
    | CellsUpdate
    | LoadSheet
    | RefreshToken
    | StatusUpdate
    | TypingStart
    | TypingStop
    | AiRequest
    | AiCancel
    | SubscribeNotifications
    | NotificationRead
    | FileUploadStart
    | FileUploadProgress,
    Field(discriminator="type"),
]
INBOUND_MODELS: Final[tuple[type[Inbound], ...]] = get_args(get_args(InboundMessage)[0])
INBOUND_TYPES: Final = frozenset(
    get_args(model.model_fields["type"].annotation)[0] for model in INBOUND_MODELS
)
_INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)


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
    """A validated inbound message; raises ValidationFailed (TooManyCells among them) or
    UnknownMessageType."""
    if not isinstance(payload, Mapping):
        raise ValidationFailed("message must be a JSON object")
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValidationFailed("message must have a string field 'type'")
    if kind not in INBOUND_TYPES:
        raise UnknownMessageType(f"unknown message type {kind[:64]!r}", supported=sorted(INBOUND_TYPES))
    if kind == "cells_update":
        cells = payload.get("cells")
        if isinstance(cells, list) and len(cells) > MAX_CELLS_IN_SCHEMA:
            raise TooManyCells(len(cells))
    unstorable = None if _storable(payload) else _unstorable_text(payload)
    if unstorable is not None:
        problem = {
            "loc": unstorable,
            "msg": "text must not contain NUL or unpaired surrogates",
            "type": "text",
        }
        raise ValidationFailed(f"invalid {kind!r} message", details=[problem])
    try:
        return _INBOUND.validate_python(payload)
    except PydanticValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        problems = [
            # loc[0] is the union's tag; messages are ours or pydantic's, neither quotes the input.
            {"loc": list(err["loc"][1:]), "msg": err["msg"][:_MAX_DETAIL_TEXT], "type": err["type"]}
            for err in errors[:_MAX_DETAILS]
        ]
        raise ValidationFailed(f"invalid {kind!r} message", details=problems) from None


def _storable(payload: Mapping[str, Any]) -> bool:
    """The fast check, for the usual frame: orjson refuses unpaired surrogates (and anything that is
    not JSON), and writes NUL as the escape `\\u0000`. False only means "look closer"."""
    try:
        return b"\\u0000" not in orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return False


# A path as a chain of (parent, key) nodes; see _unstorable_text.
_PathNode = tuple[Any, str | int] | None


def _unstorable_text(payload: Mapping[str, Any]) -> list[str | int] | None:
    """The path of the first string (key or value, declared field or extra) that PostgreSQL cannot
    store: jsonb refuses NUL, and an unpaired surrogate is not UTF-8. Refused here, whole, so such an
    event never reaches the appender's batch.

    Iterative, not recursive: orjson accepts nesting deeper than Python's recursion limit. Only
    containers are pushed, each holding its parent's path node rather than a copy of the path, so a
    wide array deep in a frame costs no more than its own size.
    """
    stack: list[tuple[_PathNode, Any]] = [(None, payload)]
    while stack:
        node, container = stack.pop()
        items = container.items() if isinstance(container, Mapping) else enumerate(container)
        for key, item in items:
            if isinstance(key, str) and _bad_text(key):
                return _path(node)
            kind = type(item)
            if kind in _SCALARS:
                continue
            if isinstance(item, str):
                if _bad_text(item):
                    return _path((node, key))
            elif kind is dict or kind is list or isinstance(item, Mapping | list | tuple):
                stack.append(((node, key), item))
    return None


_SCALARS: Final = frozenset({int, float, bool, type(None)})


def _path(node: _PathNode) -> list[str | int]:
    path: list[str | int] = []
    while node is not None:
        node, key = node
        path.append(key)
    return path[::-1]


def _bad_text(text: str) -> bool:
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False
