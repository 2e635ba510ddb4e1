"""The cells of a sheet (value, formula, version, who wrote it and when) and the room of each sheet.

Folded from `CellUpdated` events, which live in room streams: a sheet belongs to the room it was
claimed for before its first edit (`SheetClaimed`), and `engine.decisions.cells.check_sheet_room`
never lets a later update of it go to another room, so one room stream holds all of a sheet's
history. "The sheet as of seq N" of its room is `project(room_events[:N], sheet_id)`.

Versions are taken from the events as they are: the server assigned them when it decided the update
(`engine.decisions.cells.next_cell_version`), and the log is the truth a projection reproduces, not
re-judges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from engine.model.catalogue import (
    AI_EVENTS,
    BROADCAST_EVENTS,
    CELL_EVENTS,
    CLAIM_EVENTS,
    CURSOR_EVENTS,
    MEMBERSHIP_EVENTS,
    NOTIFICATION_EVENTS,
    STATUS_EVENTS,
    TYPING_EVENTS,
    UPLOAD_EVENTS,
    written_cells,
)
from engine.model.events import RecordedEvent
from engine.model.streams import durable_stream, room_id_of
from engine.projections import empty, folds, frozen, optional_str

HANDLED = CELL_EVENTS
SKIPPED = (
    MEMBERSHIP_EVENTS
    | BROADCAST_EVENTS
    | CURSOR_EVENTS
    | TYPING_EVENTS
    | STATUS_EVENTS
    | NOTIFICATION_EVENTS
    | UPLOAD_EVENTS
    | AI_EVENTS
    | CLAIM_EVENTS
)


@dataclass(frozen=True, slots=True)
class Cell:
    cell_id: str
    value: Any  # str, int, float, bool or None: whatever JSON the client sent
    formula: str | None
    version: int
    updated_by: str | None
    updated_at: datetime
    seq: int  # the room seq of the update that wrote this cell
    # The log position of that update (the cells table keeps it). Bookkeeping, not part of the cell:
    # left out of equality, and 0 in cells built outside a fold (the writer's cache).
    position: int = field(default=0, compare=False)

    def current(self) -> dict[str, Any]:
        """The cell as a VERSION_CONFLICT reports it (docs/protocol.md)."""
        return {
            "value": self.value,
            "formula": self.formula,
            "version": self.version,
            "user_id": self.updated_by,
        }


@dataclass(frozen=True, slots=True)
class Sheet:
    sheet_id: str
    room_id: str | None = None  # the room of the sheet's first edit; None before any
    cells: Mapping[str, Cell] = field(default_factory=empty)
    seq: int = 0  # the room seq of the newest update folded
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SheetAtHead:
    """A sheet as of its room's `seq`: every cell written up to that seq and none after, so live
    events with a higher seq apply on top (`load_sheet`). The cells are as `sheet_state` shows them,
    `{value, formula, version, user_id, updated_at}` with the time as ISO-8601 text: a sheet of ten
    thousand cells is built by the database in one document rather than row by row in Python."""

    sheet_id: str
    room_id: str
    seq: int  # the room's seq, not the seq of the sheet's last update
    cells: Mapping[str, Mapping[str, Any]]


def key_of(event: RecordedEvent) -> str | None:
    """The sheet whose view `event` changes; None for events of other concerns."""
    return str(event.data["sheet_id"]) if folds("cells", event.type, HANDLED, SKIPPED) else None


def apply_cell(cell: Cell | None, event: RecordedEvent, written: Mapping[str, Any] | None = None) -> Cell:
    """The cell after `event` wrote it: the fold a cells table keeps row by row. `written` is the
    cell's entry among the event's `written_cells` (default: the data of a `CellUpdated`)."""
    written = event.data if written is None else written
    cell_id = str(written["cell_id"])
    if cell is not None and cell.cell_id != cell_id:
        raise ValueError(f"update of cell {cell_id!r} applied to cell {cell.cell_id!r}")
    return Cell(
        cell_id=cell_id,
        value=written.get("value"),
        formula=written.get("formula"),
        version=int(written["version"]),
        # Who appended it, as the writer records it (engine/log/batch_plan.py): the event's user, else
        # the one its data names.
        updated_by=optional_str(event.user_id or event.data.get("user_id")),
        updated_at=event.recorded_at,
        seq=event.stream_version,
        position=event.position,
    )


def apply(sheet: Sheet, event: RecordedEvent) -> Sheet:
    """The sheet after `event`; events of other concerns leave it as it was."""
    return apply_many(sheet, (event,))


def apply_many(sheet: Sheet, events: Iterable[RecordedEvent]) -> Sheet:
    """`apply` over `events` in order, copying the cells once rather than once per event."""
    cells = dict(sheet.cells)
    for event in events:
        key = key_of(event)
        if key is None:
            continue
        if key != sheet.sheet_id:
            raise ValueError(f"update of sheet {key!r} applied to sheet {sheet.sheet_id!r}")
        for written in written_cells(event.type, event.data):
            cell_id = str(written["cell_id"])
            cells[cell_id] = apply_cell(cells.get(cell_id), event, written)
        sheet = replace(
            sheet,
            # The first edit decides the room, later ones cannot move it.
            room_id=sheet.room_id or room_id_of(durable_stream(event.stream_id)),
            seq=event.stream_version,
            updated_at=event.recorded_at,
        )
    return replace(sheet, cells=frozen(cells))


def project(events: Iterable[RecordedEvent], sheet_id: str) -> Sheet:
    """The sheet folded from the `CellUpdated` events of `sheet_id` among `events`."""
    return apply_many(Sheet(sheet_id), (event for event in events if key_of(event) == sheet_id))


def attach(sheet_rooms: Mapping[str, str], event: RecordedEvent) -> Mapping[str, str]:
    """The sheet -> room index after `event`: a sheet's first update names its room for good.

    Copies the index only when a sheet appears, which is rare next to updates of known sheets.
    """
    sheet_id = key_of(event)
    if sheet_id is None or sheet_id in sheet_rooms:
        return sheet_rooms
    return frozen({**sheet_rooms, sheet_id: room_id_of(durable_stream(event.stream_id))})


def sheet_rooms(events: Iterable[RecordedEvent]) -> Mapping[str, str]:
    """The room of every sheet edited in `events` (any streams, in position order)."""
    rooms: dict[str, str] = {}
    for event in events:
        sheet_id = key_of(event)
        if sheet_id is not None and sheet_id not in rooms:
            rooms[sheet_id] = room_id_of(durable_stream(event.stream_id))
    return frozen(rooms)


__all__ = [
    "HANDLED",
    "SKIPPED",
    "Cell",
    "Sheet",
    "SheetAtHead",
    "apply",
    "apply_cell",
    "apply_many",
    "attach",
    "key_of",
    "project",
    "sheet_rooms",
]
