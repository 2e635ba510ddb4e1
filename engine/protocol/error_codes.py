"""The one table from an error code to what each transport says: the HTTP status of a REST answer
and, for the few errors that end a connection, the WebSocket close code.

The engine raises errors that carry a stable `code` (engine/model/errors.py); the api translates them
here and nowhere else, so a code means the same on every route and every socket. `INTERNAL_ERROR` is
503 because the engine raises it for a store that is unreachable (retryable); a bug is a plain 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from engine.protocol.close_codes import CloseCode

AUTHENTICATION_FAILED: Final = "AUTHENTICATION_FAILED"
PERMISSION_DENIED: Final = "PERMISSION_DENIED"
RATE_LIMIT_EXCEEDED: Final = "RATE_LIMIT_EXCEEDED"
INVALID_JSON: Final = "INVALID_JSON"
UNKNOWN_MESSAGE_TYPE: Final = "UNKNOWN_MESSAGE_TYPE"
ROOM_NOT_FOUND: Final = "ROOM_NOT_FOUND"
INTERNAL_ERROR: Final = "INTERNAL_ERROR"
VALIDATION_ERROR: Final = "VALIDATION_ERROR"
VERSION_CONFLICT: Final = "VERSION_CONFLICT"
NOT_FOUND: Final = "NOT_FOUND"
MESSAGE_TOO_LARGE: Final = "MESSAGE_TOO_LARGE"
PAYLOAD_TOO_LARGE: Final = "PAYLOAD_TOO_LARGE"
FILE_ID_TAKEN: Final = "FILE_ID_TAKEN"
UPLOAD_TIMEOUT: Final = "UPLOAD_TIMEOUT"
CONNECTION_REMOVED: Final = "CONNECTION_REMOVED"
TOO_MANY_CONNECTIONS: Final = "TOO_MANY_CONNECTIONS"
NODE_FULL: Final = "NODE_FULL"
METHOD_NOT_ALLOWED: Final = "METHOD_NOT_ALLOWED"
UNSUPPORTED_MEDIA_TYPE: Final = "UNSUPPORTED_MEDIA_TYPE"


@dataclass(frozen=True, slots=True)
class ErrorCode:
    http_status: int
    close_code: CloseCode | None = None  # None: the connection stays open


ERROR_CODES: Final[Mapping[str, ErrorCode]] = {
    VALIDATION_ERROR: ErrorCode(422),
    INVALID_JSON: ErrorCode(400),
    UNKNOWN_MESSAGE_TYPE: ErrorCode(400),
    AUTHENTICATION_FAILED: ErrorCode(401, CloseCode.AUTHENTICATION_FAILED),
    PERMISSION_DENIED: ErrorCode(403),
    ROOM_NOT_FOUND: ErrorCode(404),
    NOT_FOUND: ErrorCode(404),
    METHOD_NOT_ALLOWED: ErrorCode(405),
    VERSION_CONFLICT: ErrorCode(409),
    FILE_ID_TAKEN: ErrorCode(409),  # a file id another user owns, or one already complete
    UPLOAD_TIMEOUT: ErrorCode(408),  # a file body with no byte for UPLOAD_IDLE_TIMEOUT_SECONDS
    MESSAGE_TOO_LARGE: ErrorCode(413, CloseCode.MESSAGE_TOO_BIG),
    PAYLOAD_TOO_LARGE: ErrorCode(413),  # a file body over MAX_UPLOAD_BYTES
    UNSUPPORTED_MEDIA_TYPE: ErrorCode(415),
    RATE_LIMIT_EXCEEDED: ErrorCode(429),
    CONNECTION_REMOVED: ErrorCode(410, CloseCode.REMOVED),
    TOO_MANY_CONNECTIONS: ErrorCode(429, CloseCode.TOO_MANY_CONNECTIONS),
    NODE_FULL: ErrorCode(503, CloseCode.NODE_FULL),
    INTERNAL_ERROR: ErrorCode(503),
}

# The reverse, for HTTP errors raised with a bare status (FastAPI's own: an unknown route, a body
# that is not JSON): the code a client would expect for that status.
CODE_FOR_STATUS: Final[Mapping[int, str]] = {
    400: VALIDATION_ERROR,
    401: AUTHENTICATION_FAILED,
    403: PERMISSION_DENIED,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    409: VERSION_CONFLICT,
    413: PAYLOAD_TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE,
    422: VALIDATION_ERROR,
    429: RATE_LIMIT_EXCEEDED,
    503: INTERNAL_ERROR,
}


def http_status(code: str) -> int:
    """The status of a REST answer carrying `code` (400 for a code outside the table)."""
    found = ERROR_CODES.get(code)
    return found.http_status if found is not None else 400


__all__ = [
    "AUTHENTICATION_FAILED",
    "CODE_FOR_STATUS",
    "CONNECTION_REMOVED",
    "ERROR_CODES",
    "FILE_ID_TAKEN",
    "INTERNAL_ERROR",
    "INVALID_JSON",
    "MESSAGE_TOO_LARGE",
    "METHOD_NOT_ALLOWED",
    "NODE_FULL",
    "NOT_FOUND",
    "PAYLOAD_TOO_LARGE",
    "PERMISSION_DENIED",
    "RATE_LIMIT_EXCEEDED",
    "ROOM_NOT_FOUND",
    "TOO_MANY_CONNECTIONS",
    "UNKNOWN_MESSAGE_TYPE",
    "UNSUPPORTED_MEDIA_TYPE",
    "UPLOAD_TIMEOUT",
    "VALIDATION_ERROR",
    "VERSION_CONFLICT",
    "ErrorCode",
    "http_status",
]
