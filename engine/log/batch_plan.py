"""Deciding a batch: pure, so the same rules run on every write path (engine/log/writer.py).

`plan(state, items)` decides each item on its own against the log as of `state.head` and the items
before it in the batch: a repeated idempotency key is a Duplicate, a stale expected version a
Conflict, a cell write that the version rule or the sheet's room refuses is Refused (a sheet's room is
its claim's, committed before or earlier in the batch); everything else gets the next position and
stream version. The writer commits the plan only if the head is still at `state.head`, which is what
makes these decisions hold across processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.decisions.cells import check_sheet_room, next_cell_version
from engine.log import jsonb
from engine.model.catalogue import CELLS_UPDATED, SHEET_CLAIMED, with_versions, written_cells
from engine.model.errors import Rejected, ValidationFailed, VersionConflict
from engine.model.events import AppendOutcome, Committed, Conflict, Duplicate, NewEvent, Refused
from engine.model.streams import durable_stream
from engine.projections.cells import Cell

CellKey = tuple[str, str]  # (sheet_id, cell_id)
# In-batch cells only feed later decisions in the same batch; their time is set at commit.
_NOT_YET = datetime.min.replace(tzinfo=UTC)


IdempotencyKey = tuple[str, str, str]
"""(durable stream, user, key): a key is unique per user and stream, a volatile twin counting as its
durable stream, so its check stays inside one partition when the log is split (docs/scaling.md)."""


@dataclass(frozen=True, slots=True)
class LogState:
    """The log as of `head`, limited to what a batch's decisions need. Absent from `cells`/`sheets`
    means "does not exist" here: the writer only decides on keys it has read or already knows."""

    head: int
    versions: Mapping[str, int]
    used_keys: Mapping[IdempotencyKey, Duplicate]
    cells: Mapping[CellKey, Cell | None] = field(default_factory=dict)
    sheets: Mapping[str, str | None] = field(default_factory=dict)  # sheet -> the room it was claimed for


@dataclass(frozen=True, slots=True)
class _Written:
    position: int
    version: int
    data: dict[str, Any] | None  # the data as completed by the writer, if it changed it


@dataclass(frozen=True, slots=True)
class _PendingDuplicate:
    """A repeat of a key first used in this batch: a Duplicate once its commit time is known."""

    position: int
    version: int


_Decided = Conflict | Duplicate | Refused | _Written | _PendingDuplicate


@dataclass(frozen=True, slots=True)
class Plan:
    """What a batch will do at `base` (the head it was decided on)."""

    base: int
    outcomes: list[_Decided]
    rows: list[dict[str, Any]]
    versions: dict[str, int]  # the new version of each stream written
    cell_rows: dict[CellKey, dict[str, Any]]  # the last write of each cell, for the cells table
    sheet_rows: dict[str, dict[str, Any]]  # sheets claimed by this batch, for the sheets table

    @property
    def new_head(self) -> int:
        return self.base + len(self.rows)

    def encode(self) -> tuple[str, str, str, str]:
        """The rows, stream counters, cells and sheets as JSON; TypeError for data JSON cannot hold."""
        return (
            jsonb.dumps(self.rows),
            jsonb.dumps(self.versions),
            jsonb.dumps(list(self.cell_rows.values())),
            jsonb.dumps(list(self.sheet_rows.values())),
        )

    def resolve(self, recorded_at: datetime | None, partition: int = 0) -> list[AppendOutcome]:
        """The outcomes once committed at `recorded_at` (None when nothing was written) in `partition`."""
        out: list[AppendOutcome] = []
        for o in self.outcomes:
            if isinstance(o, _Written):
                out.append(Committed(o.position, o.version, recorded_at, o.data, partition))  # type: ignore[arg-type]
            elif isinstance(o, _PendingDuplicate):
                out.append(Duplicate(o.position, o.version, recorded_at, partition))  # type: ignore[arg-type]
            else:
                out.append(o)
        return out

    def learned_cells(self, at: datetime) -> dict[CellKey, Cell]:
        """The cells this plan writes, as they are once committed at `at`."""
        return {
            key: Cell(
                row["cell_id"], row["value"], row["formula"], row["version"], row["user_id"], at, row["seq"]
            )
            for key, row in self.cell_rows.items()
        }


def idempotency_key(item: NewEvent) -> IdempotencyKey | None:
    if item.idempotency_key and item.user_id:
        return (durable_stream(item.stream_id), item.user_id, item.idempotency_key)
    return None


def plan(state: LogState, items: Sequence[NewEvent]) -> Plan:
    """Decide each item on its own against `state` and the items before it in the batch.

    Pure, and O(len(items)): `state` may hold a writer's large caches, so it is read, never copied.
    """
    done: dict[IdempotencyKey, Duplicate | _Written] = dict(state.used_keys)
    outcomes: list[_Decided] = []
    rows: list[dict[str, Any]] = []
    written: dict[str, int] = {}
    cell_rows: dict[CellKey, dict[str, Any]] = {}
    sheet_rows: dict[str, dict[str, Any]] = {}
    cells: dict[CellKey, Cell] = {}  # cells written earlier in this batch
    position = state.head
    for item in items:
        key = idempotency_key(item)
        prior = done.get(key) if key is not None else None
        if isinstance(prior, Duplicate):
            outcomes.append(prior)
            continue
        if prior is not None:  # first used in this batch: points at the position it is about to get
            outcomes.append(_PendingDuplicate(prior.position, prior.version))
            continue
        current = written.get(item.stream_id)
        if current is None:
            current = state.versions.get(item.stream_id, 0)
        if item.expected_version is not None and item.expected_version != current:
            outcomes.append(Conflict(item.expected_version, current))
            continue
        data = item.data
        if item.cells:
            try:
                data = _decide_cells(item, state, cells, sheet_rows)
            except Rejected as error:
                outcomes.append(Refused(error))
                continue
        position += 1
        written[item.stream_id] = current + 1
        outcome = _Written(position, current + 1, data if data is not item.data else None)
        outcomes.append(outcome)
        rows.append(
            {
                "p": position,
                "s": item.stream_id,
                "v": current + 1,
                "t": item.type,
                "d": data,
                "m": item.metadata,
                "u": item.user_id,
                "k": item.idempotency_key,
            }
        )
        if item.cells:
            _record_cells(item, data, position, current + 1, cells, cell_rows)
        elif item.type == SHEET_CLAIMED and current == 0:  # the first event of the sheet's stream
            sheet_id = str(item.data["sheet_id"])
            sheet_rows[sheet_id] = {
                "sheet_id": sheet_id,
                "room_id": str(item.data["room_id"]),
                "position": position,
            }
        if key is not None:
            done[key] = outcome
    return Plan(state.head, outcomes, rows, written, cell_rows, sheet_rows)


def _decide_cells(
    item: NewEvent, state: LogState, cells: Mapping[CellKey, Cell], sheet_rows: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """The event's data with the version the rule gives each cell it writes; all or nothing.
    VersionConflict (for a range, with every stale cell) or ValidationFailed."""
    versions: list[int] = []
    conflicts: list[dict[str, Any]] = []
    for write in item.cells:
        sheet_room = sheet_rows[write.sheet_id]["room_id"] if write.sheet_id in sheet_rows else None
        if sheet_room is None:
            sheet_room = state.sheets.get(write.sheet_id)
        if sheet_room is None:  # the engine claims a sheet before its first edit (features/cells.py)
            raise ValidationFailed(
                f"sheet {write.sheet_id!r} has no room yet: its claim comes first",
                sheet_id=write.sheet_id,
            )
        # Refuses an edit from another room than the sheet's claim names.
        check_sheet_room(write.sheet_id, write.room_id, sheet_room)
        key = (write.sheet_id, write.cell_id)
        current = cells[key] if key in cells else state.cells.get(key)
        try:
            versions.append(next_cell_version(current, write.requested_version))
        except VersionConflict as conflict:
            if item.type != CELLS_UPDATED:
                raise
            conflicts.append({"cell_id": write.cell_id, "current": conflict.details["current"]})
    if conflicts:
        stale = ", ".join(c["cell_id"] for c in conflicts[:5])
        raise VersionConflict(
            f"{len(conflicts)} cell(s) changed since the update's base: {stale}", conflicts=conflicts
        )
    return with_versions(item.type, item.data, versions)


def _record_cells(
    item: NewEvent,
    data: dict[str, Any],
    position: int,
    seq: int,
    cells: dict[CellKey, Cell],
    cell_rows: dict[CellKey, dict[str, Any]],
) -> None:
    user_id = item.user_id or data.get("user_id")
    for write, written in zip(item.cells, written_cells(item.type, data), strict=True):
        key = (write.sheet_id, write.cell_id)
        version = int(written["version"])
        cells[key] = Cell(write.cell_id, write.value, write.formula, version, user_id, _NOT_YET, seq)
        cell_rows[key] = {
            "sheet_id": write.sheet_id,
            "cell_id": write.cell_id,
            "value": write.value,
            "formula": write.formula,
            "version": version,
            "user_id": user_id,
            "seq": seq,
            "position": position,
        }
