"""The parameter types REST paths and queries share, so every route bounds them alike.

Ids follow the one identifier rule (engine/model/identifiers.py), the same as in WebSocket messages
and token claims; integers stop at PostgreSQL's bigint, so an out-of-range cursor or offset is a 422
that names it, never a database error.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from engine.model.numbers import MAX_INT64
from engine.protocol.fields import Identifier

ID_RULE = "1 to 128 characters, no control characters"

IdPath = Annotated[Identifier, Path(description=ID_RULE)]
RoomIdQuery = Annotated[Identifier | None, Query(description=f"share with this room's readers ({ID_RULE})")]


def count_query(description: str, *, low: int = 0) -> object:
    """A Query for a non-negative integer (a seq, a cursor, a log position, an offset)."""
    return Query(ge=low, le=MAX_INT64, description=description)


__all__ = ["ID_RULE", "IdPath", "RoomIdQuery", "count_query"]
