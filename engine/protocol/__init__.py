"""The wire protocol's messages: inbound schemas (one discriminated union on `type`) and outbound shapes.

Every inbound frame goes through `decode` -> `parse` before it reaches a decision, so a malformed
message is refused with a precise code (INVALID_JSON, VALIDATION_ERROR, UNKNOWN_MESSAGE_TYPE) and
never half-applied. Outbound messages are plain dicts built in one place, so their shapes match the
seed and the protocol's envelope additions are applied uniformly. Nothing here does I/O or reads the
clock.

    fields     constrained field types and their bounds (ids, file names, A1 ranges, numbers)
    inbound    the client's messages: models, `InboundMessage`, `decode`, `parse`, `correlation_ids`
    outbound   the server's messages: one builder per type, `Envelope`, `iso`
    rendering  what a committed event becomes on the wire, live and in replay alike

`docs/protocol.md` shows every message with an example.
"""

from __future__ import annotations

from engine.protocol.fields import (
    MAX_CLIENT_MSG_ID_LENGTH,
    MAX_ID_LENGTH,
    MAX_ROOM_ID_LENGTH,
    MAX_SAFE_INTEGER,
    a1_bounds,
)
from engine.protocol.inbound import (
    INBOUND_MODELS,
    INBOUND_TYPES,
    AiCancel,
    AiContext,
    AiRequest,
    CellUpdate,
    CursorMove,
    FileUploadProgress,
    FileUploadStart,
    Inbound,
    InboundMessage,
    JoinRoom,
    LeaveRoom,
    NotificationRead,
    Ping,
    StatusUpdate,
    SubscribeNotifications,
    TypingStart,
    TypingStop,
    correlation_ids,
    decode,
    parse,
)
from engine.protocol.outbound import (
    AI_EVENT_TYPES,
    RESERVED_TYPES,
    AiEventType,
    Envelope,
    ack,
    ai_event,
    broadcast,
    cell_updated,
    connected,
    cursor_moved,
    error,
    file_upload_complete,
    file_upload_progress,
    file_upload_started,
    iso,
    notification_event,
    notifications_subscribed,
    pong,
    replay_complete,
    room_left,
    room_state,
    room_user,
    server_shutdown,
    user_joined,
    user_left,
    user_status_changed,
    user_typing_start,
    user_typing_stop,
)

__all__ = [
    "AI_EVENT_TYPES",
    "INBOUND_MODELS",
    "INBOUND_TYPES",
    "MAX_CLIENT_MSG_ID_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_ROOM_ID_LENGTH",
    "MAX_SAFE_INTEGER",
    "RESERVED_TYPES",
    "AiCancel",
    "AiContext",
    "AiEventType",
    "AiRequest",
    "CellUpdate",
    "CursorMove",
    "Envelope",
    "FileUploadProgress",
    "FileUploadStart",
    "Inbound",
    "InboundMessage",
    "JoinRoom",
    "LeaveRoom",
    "NotificationRead",
    "Ping",
    "StatusUpdate",
    "SubscribeNotifications",
    "TypingStart",
    "TypingStop",
    "a1_bounds",
    "ack",
    "ai_event",
    "broadcast",
    "cell_updated",
    "connected",
    "correlation_ids",
    "cursor_moved",
    "decode",
    "error",
    "file_upload_complete",
    "file_upload_progress",
    "file_upload_started",
    "iso",
    "notification_event",
    "notifications_subscribed",
    "parse",
    "pong",
    "replay_complete",
    "room_left",
    "room_state",
    "room_user",
    "server_shutdown",
    "user_joined",
    "user_left",
    "user_status_changed",
    "user_typing_start",
    "user_typing_stop",
]
