"""The one rule every identifier obeys, wherever it arrives: a WebSocket message, a REST path or
query, or a token's claims.

An id is 1 to 128 characters with no control characters (C0, DEL, C1). Control characters make ids
that logs, URLs and terminals mangle, and PostgreSQL cannot store NUL at all: an id that breaks the
rule is refused where it enters, never discovered by the database halfway through a write.
"""

from __future__ import annotations

import re
from typing import Final

MAX_ID_LENGTH: Final = 128

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def identifier_problem(value: str) -> str | None:
    """What makes `value` no identifier, in words for an error message; None when it is one."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters"
    if _CONTROL.search(value):
        return "must not contain control characters"
    return None


def has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None


__all__ = ["MAX_ID_LENGTH", "has_control_characters", "identifier_problem"]
