"""The one table from error codes to what the transport says: HTTP status, WebSocket error message,
WebSocket close code.

The engine raises errors that carry a stable `code` (engine/model/errors.py); the api translates them here
and nowhere else, so a code means the same on every route and every socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from engine import protocol as messages
from engine.model.errors import EngineError, StoreUnavailable

AUTHENTICATION_FAILED: Final = "AUTHENTICATION_FAILED"
PERMISSION_DENIED: Final = "PERMISSION_DENIED"
MESSAGE_TOO_LARGE: Final = "MESSAGE_TOO_LARGE"
INTERNAL_ERROR: Final = "INTERNAL_ERROR"

HTTP_STATUS: Final[Mapping[str, int]] = {
    "VALIDATION_ERROR": 422,
    "INVALID_JSON": 400,
    "UNKNOWN_MESSAGE_TYPE": 400,
    AUTHENTICATION_FAILED: 401,
    PERMISSION_DENIED: 403,
    "ROOM_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "VERSION_CONFLICT": 409,
    MESSAGE_TOO_LARGE: 413,
    "PAYLOAD_TOO_LARGE": 413,  # a file body over MAX_UPLOAD_BYTES (engine/storage)
    "FILE_ID_TAKEN": 409,  # engine/files_service.py
    "RATE_LIMIT_EXCEEDED": 429,
    INTERNAL_ERROR: 503,
}

# Close codes. 4xxx mirror the HTTP status so a client can tell "fix your token" (4401: do not
# reconnect with the same one) from transient closes (1011/1012: reconnect with backoff).
CLOSE_NORMAL: Final = 1000
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_AUTHENTICATION_FAILED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403


def ws_error(
    code: str, text: str, *, echo: Mapping[str, str] | None = None, **details: Any
) -> dict[str, Any]:
    """An error message for a socket, stamped now."""
    return messages.error(code, text, now=datetime.now(UTC), echo=echo, **details)


def ws_error_from(exc: EngineError, *, echo: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The socket's error message for an engine error. `retryable` tells the client the same message
    may succeed later (the store was unavailable); without it, retrying cannot help."""
    extra: dict[str, Any] = dict(exc.details)
    if isinstance(exc, StoreUnavailable):
        extra["retryable"] = True
    return ws_error(exc.code, exc.message, echo=echo, **extra)
