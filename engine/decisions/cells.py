"""The two rules of a cell update: which room it goes to, and which version it gets.

Both must hold across processes, so the writer applies them inside the append, against the log at
the head it commits on (engine/log/batch_plan.py); the cells feature applies the room rule once more
before queueing, from the sending connection's view, so a client learns of a wrong `room` at once.
The cells projection (engine/projections/cells.py) takes the versions as the writer recorded them.
"""

from __future__ import annotations

from collections.abc import Collection

from engine.model.errors import ValidationFailed, VersionConflict
from engine.model.numbers import MAX_SAFE_INTEGER
from engine.projections.cells import Cell


def check_sheet_room(sheet_id: str, room_id: str, sheet_room: str | None) -> None:
    """ValidationFailed if the sheet already belongs to another room. A sheet belongs to the room it
    was claimed for before its first edit, and all its history lives in that room's stream; an update
    naming another room would split it, so it is refused rather than silently moved."""
    if sheet_room is not None and sheet_room != room_id:
        raise ValidationFailed(
            f"sheet {sheet_id!r} belongs to room {sheet_room!r}", sheet_id=sheet_id, room=sheet_room
        )


def room_for_cell_update(
    sheet_id: str,
    *,
    room: str | None,
    sheet_room: str | None,
    joined_rooms: Collection[str],
    message_type: str = "cell_update",
) -> str:
    """The room a `cell_update` or `cells_update` goes to: its `room` field, else the sheet's room,
    else the sender's only room. `joined_rooms` are the rooms of the sending connection; the refusal
    names `message_type`, the message the client sent."""
    if room is not None:
        check_sheet_room(sheet_id, room, sheet_room)
        return room
    if sheet_room is not None:
        return sheet_room
    if len(joined_rooms) == 1:
        return next(iter(joined_rooms))
    raise ValidationFailed(
        f"{message_type} of new sheet {sheet_id!r} needs 'room': you are in {len(joined_rooms)} rooms",
        details=[{"loc": ["room"], "msg": "required when the sender is not in exactly one room"}],
    )


def check_cell_count(count: int, limit: int) -> None:
    """ValidationFailed, with the `limit`, for a `cells_update` of more than `limit` cells
    (MAX_CELLS_PER_UPDATE): one range is one event, and the server bounds what one event may hold."""
    if count > limit:
        raise ValidationFailed(f"a cells_update carries at most {limit} cells, this one {count}", limit=limit)


def next_cell_version(current: Cell | None, version: int | None) -> int:
    """The version the server gives an update based on `version` (None: the client sent none).

    A base older than the cell's current version means the client edited a value that has changed
    since: VersionConflict with the current cell, so it can merge and retry. Otherwise the new version
    is above both the cell's and the client's (max + 1), which keeps a client's own versioning scheme
    monotonic: the seed's 1642161000000 in gives 1642161000001 out.
    """
    now = 0 if current is None else current.version
    if current is not None and version is not None and version < now:
        raise VersionConflict(
            f"cell {current.cell_id!r} is at version {now}, the update was based on {version}",
            current=current.current(),
        )
    new = now + 1 if version is None else max(now, version) + 1
    if new > MAX_SAFE_INTEGER:
        # A version a JavaScript client cannot hold exactly would wedge the cell: refused, not stored.
        raise ValidationFailed(f"version {new} would exceed 2**53 - 1; base updates on the cell's version")
    return new


__all__ = ["check_cell_count", "check_sheet_room", "next_cell_version", "room_for_cell_update"]
