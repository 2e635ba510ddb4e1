"""The engine's error tree. Each class carries a stable `code`; the api maps codes to HTTP statuses,
WebSocket error messages and close codes in one table.

    EngineError
    ├── StoreUnavailable      PostgreSQL could not be reached or did not answer in time (retryable)
    ├── SchemaMismatch        the database schema is newer than this code knows
    ├── UnknownEvent          a projection met an event type it does not know (a bug, never input)
    ├── MoveRefused           a log move's source or target is unfit; nothing written (cluster/repartition.py)
    ├── TargetFailed          a log move's target database failed midway; the source is unchanged (same)
    └── Rejected              a message was refused; nothing was persisted
        ├── InvalidJson
        ├── ValidationFailed
        ├── UnknownMessageType
        ├── AuthenticationFailed
        ├── PermissionDenied
        ├── RoomNotFound
        ├── NotFound          (a notification, upload or AI request the user does not have)
        ├── VersionConflict   (details["current"]: the cell as it is now)
        └── ConnectionRefused a new connection over a limit; the socket closes after the error
            ├── TooManyConnections  (MAX_CONNECTIONS_PER_USER)
            └── NodeFull            (MAX_CONNECTIONS)
"""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    code = "INTERNAL_ERROR"
    retryable = False  # the same request may succeed later: clients are told so

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class StoreUnavailable(EngineError):
    """Retry later: the outcome of the append is unknown only if the connection dropped during COMMIT,
    which is why callers should send an idempotency key (`client_msg_id`)."""

    code = "INTERNAL_ERROR"
    retryable = True


class SchemaMismatch(EngineError):
    code = "INTERNAL_ERROR"


class UnknownEvent(EngineError):
    """Projections refuse events they do not know rather than skip them: a skipped event would make
    the view silently wrong. Deploy the code that knows the event before anything appends it."""

    code = "INTERNAL_ERROR"


class Rejected(EngineError):
    code = "VALIDATION_ERROR"


class InvalidJson(Rejected):
    code = "INVALID_JSON"


class ValidationFailed(Rejected):
    code = "VALIDATION_ERROR"


class UnknownMessageType(Rejected):
    code = "UNKNOWN_MESSAGE_TYPE"


class AuthenticationFailed(Rejected):
    """No usable token: missing, malformed, expired, badly signed, or another user's. The message is
    safe to show the client."""

    code = "AUTHENTICATION_FAILED"


class PermissionDenied(Rejected):
    code = "PERMISSION_DENIED"


class RoomNotFound(Rejected):
    code = "ROOM_NOT_FOUND"


class NotFound(Rejected):
    code = "NOT_FOUND"


class VersionConflict(Rejected):
    code = "VERSION_CONFLICT"


class ConnectionRefused(Rejected):
    """A connection the node will not serve: the error is sent, then the socket closes with the
    close code the error-code table gives its `code` (engine/protocol/error_codes.py)."""


class TooManyConnections(ConnectionRefused):
    code = "TOO_MANY_CONNECTIONS"


class NodeFull(ConnectionRefused):
    code = "NODE_FULL"
