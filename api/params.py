"""The parameter types REST paths and queries share, so every route bounds them alike.

Ids follow the one identifier rule (engine/model/identifiers.py), the same as in WebSocket messages
and token claims; integers stop at PostgreSQL's bigint, so an out-of-range cursor or offset is a 422
that names it, never a database error.

An id may contain `/` (`team/q3`), so an id in a path is written as one percent-encoded segment
(`team%2Fq3`, as `encodeURIComponent` writes it). The server decodes the whole path before routing,
which would make that two segments: `SegmentedPaths` routes on the path as sent instead, keeping an
encoded `/` (and an encoded `%`) escaped, and the `id` convertor of a route's `{name:id}` decodes them.

Percent-escapes that do not decode to UTF-8 (`%FF`) are decoded by the server and by Starlette's query
parsing as U+FFFD, which would read `/rooms/a%FF/events` as the room `a\ufffd`, another id that may
exist. `SegmentedPaths` refuses such a path or query string with 422 before any route runs.
"""

from __future__ import annotations

import re
from typing import Annotated, Final
from urllib.parse import unquote, unquote_to_bytes

from fastapi import Path, Query
from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

from api.http_errors import error_response
from engine.model.numbers import MAX_INT64
from engine.protocol.error_codes import VALIDATION_ERROR
from engine.protocol.fields import Identifier

ID_RULE = "1 to 128 characters, no control characters"

IdPath = Annotated[Identifier, Path(description=ID_RULE)]
RoomIdQuery = Annotated[Identifier | None, Query(description=f"share with this room's readers ({ID_RULE})")]

# The escapes a segment keeps in the routed path: only these two, and always upper case.
_KEPT = re.compile(r"%(25|2F)")
# A path sent with either needs routing on its segments; any other path decodes to the same thing.
_NEEDS_SEGMENTS: Final = re.compile(rb"%(?:25|2[Ff])")


def _keep_escaped(segment: str) -> str:
    """One segment of a path, decoded, with `%` and `/` escaped again so it stays one segment."""
    return unquote(segment).replace("%", "%25").replace("/", "%2F")


def _unescape(value: str) -> str:
    return _KEPT.sub(lambda match: "%" if match[1] == "25" else "/", value)


class IdConvertor(Convertor[str]):
    """`{name:id}`: one path segment holding an id, with the `/` and `%` it may contain decoded."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return _unescape(value)

    def to_string(self, value: str) -> str:
        return value.replace("%", "%25").replace("/", "%2F")


register_url_convertor("id", IdConvertor())


class SegmentedPaths:
    """Route an HTTP request whose path encodes a `/` or a `%` on its segments as sent (see the module
    docstring). The request's own scope is not changed: access logs show the path as decoded. A path
    or query string whose escapes are not UTF-8 is answered 422 VALIDATION_ERROR here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if scope["type"] == "http":
            for part, sent in (("path", raw), ("query string", scope.get("query_string"))):
                if sent and not _is_utf8(unquote_to_bytes(sent)):
                    text = f"the request's {part} is not UTF-8 once its percent-escapes are decoded"
                    await error_response(422, VALIDATION_ERROR, text)(scope, receive, send)
                    return
        if raw and raw.isascii() and _NEEDS_SEGMENTS.search(raw):
            path = "/".join(_keep_escaped(part) for part in raw.decode("ascii").split("/"))
            scope = {**scope, "path": path}
        await self.app(scope, receive, send)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def count_query(description: str, *, low: int = 0) -> object:
    """A Query for a non-negative integer (a seq, a cursor, a log position, an offset)."""
    return Query(ge=low, le=MAX_INT64, description=description)


__all__ = ["ID_RULE", "IdConvertor", "IdPath", "RoomIdQuery", "SegmentedPaths", "count_query"]
