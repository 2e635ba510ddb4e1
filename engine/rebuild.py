"""Rebuilding the inline projections `cells` and `sheets` from the log, and proving them against it.

The writer keeps both tables in the same statement as the events (engine/log_writer.py), so they are
always at the log head. They are still derived state: `rebuild_cells` replays the whole log from zero
through the pure cells fold (engine/projections/cells.py) and rewrites them to exactly what it gives,
and `diff_cells` compares that fold with the live tables row by row without changing anything. An
empty diff is the proof that the writer's decisions and the projection agree.

rebuild_cells holds the `log_head` row lock for its whole transaction, so no append commits between
reading the log and replacing the tables. diff_cells takes no lock: it reads the head and both tables
in one snapshot (the tables are exactly at that head, being written with the events) and folds the
log up to that head, which later appends cannot change.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.events import RecordedEvent
from engine.projections import cells as cells_projection
from engine.projections.cells import Sheet
from engine.store import EventStore

CHECKPOINT = "cells"
PAGE = 5000  # events per read of the log
CHUNK = 5000  # rows per insert

_LOCK_HEAD = "SELECT position FROM log_head WHERE id = 1 FOR UPDATE"
_READ_HEAD = "SELECT position FROM log_head WHERE id = 1"
# Rows travel as one JSON document, decoded by the same jsonb_to_recordset the writer uses, so a
# rebuilt row is stored exactly as the writer would have stored it.
_INSERT_CELLS = """
    INSERT INTO cells (sheet_id, cell_id, value, formula, version, user_id, seq, position, updated_at)
    SELECT c.sheet_id, c.cell_id, c.value, c.formula, c.version, c.user_id, c.seq, c.position, c.updated_at
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS c(sheet_id text, cell_id text, value jsonb,
         formula text, version bigint, user_id text, seq bigint, position bigint, updated_at timestamptz)
"""
_INSERT_SHEETS = """
    INSERT INTO sheets (sheet_id, room_id, position)
    SELECT s.sheet_id, s.room_id, s.position
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS s(sheet_id text, room_id text, position bigint)
"""
_CHECKPOINT = """
    INSERT INTO projector_checkpoints (name, position, updated_at) VALUES (:name, :position, now())
    ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at
"""
_LIVE_CELLS = """
    SELECT sheet_id, cell_id, value::text AS value, formula, version, user_id, seq, position, updated_at
    FROM cells
"""
_LIVE_SHEETS = "SELECT sheet_id, room_id, position FROM sheets"

_CELL_COLUMNS = ("value", "formula", "version", "user_id", "seq", "position", "updated_at")
_SHEET_COLUMNS = ("room_id", "position")


@dataclass(frozen=True, slots=True)
class Folded:
    """The cells fold of the log up to `head`."""

    head: int
    events_read: int
    cell_updates: int
    sheets: dict[str, Sheet]


@dataclass(frozen=True, slots=True)
class RebuildReport:
    head: int
    events_read: int
    cell_updates: int
    sheets: int
    cells: int
    seconds: float


async def fold_cells(db_engine: AsyncEngine, head: int, *, page: int = PAGE) -> Folded:
    """Every sheet folded from the `CellUpdated` events at positions 1..`head`, read in pages."""
    store = EventStore(db_engine)
    sheets: dict[str, Sheet] = {}
    after = read = updates = 0
    while after < head:
        events = [e for e in await store.read_all(after, limit=min(page, head - after)) if e.position <= head]
        if not events:
            break
        read += len(events)
        after = events[-1].position
        # The log holds every concern (and test events outside the catalogue): only cell updates
        # feed this projection. Grouped per sheet so each sheet's cells are copied once per page.
        by_sheet: dict[str, list[RecordedEvent]] = defaultdict(list)
        for event in events:
            if event.type in cells_projection.HANDLED:
                by_sheet[str(event.data["sheet_id"])].append(event)
        for sheet_id, sheet_events in by_sheet.items():
            updates += len(sheet_events)
            sheet = sheets.get(sheet_id) or Sheet(sheet_id)
            sheets[sheet_id] = cells_projection.apply_many(sheet, sheet_events)
    return Folded(head, read, updates, sheets)


async def rebuild_cells(db_engine: AsyncEngine) -> RebuildReport:
    """Rewrite `cells` and `sheets` to the fold of the whole log, in one transaction under the head
    lock, and record the head in projector_checkpoints as "cells"."""
    started = time.perf_counter()
    async with db_engine.begin() as conn:
        head = int((await conn.execute(text(_LOCK_HEAD))).scalar_one())
        folded = await fold_cells(db_engine, head)  # other connections: appends wait for the lock
        cell_rows, sheet_rows = _rows(folded)
        await conn.execute(text("DELETE FROM cells"))
        await conn.execute(text("DELETE FROM sheets"))
        await _insert(conn, _INSERT_CELLS, cell_rows)
        await _insert(conn, _INSERT_SHEETS, sheet_rows)
        await conn.execute(text(_CHECKPOINT), {"name": CHECKPOINT, "position": head})
    return RebuildReport(
        head=head,
        events_read=folded.events_read,
        cell_updates=folded.cell_updates,
        sheets=len(sheet_rows),
        cells=len(cell_rows),
        seconds=time.perf_counter() - started,
    )


async def diff_cells(db_engine: AsyncEngine) -> list[str]:
    """How the live `cells` and `sheets` tables differ from the fold of the log; empty when identical."""
    async with db_engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot for all three
        head = int((await conn.execute(text(_READ_HEAD))).scalar_one())
        live_cells = [dict(r) for r in (await conn.execute(text(_LIVE_CELLS))).mappings()]
        live_sheets = [dict(r) for r in (await conn.execute(text(_LIVE_SHEETS))).mappings()]
        await conn.rollback()
    for row in live_cells:
        row["value"] = None if row["value"] is None else orjson.loads(row["value"])
    cell_rows, sheet_rows = _rows(await fold_cells(db_engine, head))
    differences = _compare(
        "cell",
        {(r["sheet_id"], r["cell_id"]): r for r in live_cells},
        {(r["sheet_id"], r["cell_id"]): r for r in cell_rows},
        _CELL_COLUMNS,
    )
    differences += _compare(
        "sheet",
        {(r["sheet_id"],): r for r in live_sheets},
        {(r["sheet_id"],): r for r in sheet_rows},
        _SHEET_COLUMNS,
    )
    return differences


def _rows(folded: Folded) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The fold as rows of the cells and sheets tables."""
    cell_rows: list[dict[str, Any]] = []
    sheet_rows: list[dict[str, Any]] = []
    for sheet_id in sorted(folded.sheets):
        sheet = folded.sheets[sheet_id]
        sheet_rows.append({"sheet_id": sheet_id, "room_id": sheet.room_id, "position": sheet.position})
        for cell_id in sorted(sheet.cells):
            cell = sheet.cells[cell_id]
            cell_rows.append(
                {
                    "sheet_id": sheet_id,
                    "cell_id": cell_id,
                    "value": cell.value,
                    "formula": cell.formula,
                    "version": cell.version,
                    "user_id": cell.updated_by,
                    "seq": cell.seq,
                    "position": cell.position,
                    "updated_at": cell.updated_at,
                }
            )
    return cell_rows, sheet_rows


async def _insert(conn: AsyncConnection, statement: str, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        await conn.execute(text(statement), {"rows": orjson.dumps(rows[start : start + CHUNK]).decode()})


def _compare(
    kind: str,
    live: dict[tuple[str, ...], dict[str, Any]],
    folded: dict[tuple[str, ...], dict[str, Any]],
    columns: tuple[str, ...],
) -> list[str]:
    out: list[str] = []
    for key in sorted(live.keys() | folded.keys()):
        name = "/".join(key)
        if key not in folded:
            out.append(f"{kind} {name}: in the table but not in the log")
        elif key not in live:
            out.append(f"{kind} {name}: in the log but missing from the table")
        else:
            for column in columns:
                have, want = live[key][column], folded[key][column]
                if not _same(have, want):
                    out.append(f"{kind} {name}: {column} is {have!r} in the table, {want!r} in the log")
    return out


def _same(have: Any, want: Any) -> bool:
    """Equal as stored: JSON values compare by type too (True is not 1, 1 is not 1.0)."""
    if isinstance(have, datetime) or isinstance(want, datetime):
        return bool(have == want)
    return bool(have == want and orjson.dumps(have) == orjson.dumps(want))


__all__ = ["CHECKPOINT", "Folded", "RebuildReport", "diff_cells", "fold_cells", "rebuild_cells"]
