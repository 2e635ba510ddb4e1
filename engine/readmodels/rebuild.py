"""Rebuilding the inline projections `cells` and `sheets` from the log, and proving them against it.

The writer keeps both tables in the same statement as the events (engine/log/writer.py), so they are
always at their partition's head. They are still derived state: `rebuild_cells` replays a partition
from zero through the pure cells fold (engine/projections/cells.py), takes each sheet's room from its
claim (`SheetClaimed`), and rewrites that partition's rows to exactly what that gives, and
`diff_cells` compares that fold with the live rows without changing anything. An empty diff is the
proof that the writer's decisions and the projection agree.

Each partition is its own: a cell's row is in its room's partition, with the room's `CellUpdated`
events, and a sheet's row in its claim's (engine/log/partitions.py). So both work partition by
partition, every partition or only the one asked for. rebuild_cells holds the partition's `log_head`
row lock for its transaction, so no append to it commits between reading it and replacing its rows.
diff_cells takes no lock: it reads the heads and the rows in one snapshot (the rows are exactly at
their heads, being written with the events) and folds each partition up to its head, which later
appends cannot change.

The projection tables (rooms, room_members, declared_statuses, typing, notifications, uploads,
ai_requests) are kept by the projector runner behind the log, at its checkpoint
(engine/readmodels/runner.py). The rebuild folds the log with the same folds and the same
view-to-row code (engine/readmodels/rows/) and writes rows through the same statement, the one the
runner inserts and updates with (engine/readmodels/tables.py), so a rebuild gives exactly the rows the
runner wrote. Their rows are
per partition too (every row names the partition of the streams that feed it), so both work partition
by partition, every partition or only the one asked for:

- `rebuild_projections` locks the partition's runner checkpoint row (its runner skips the partition
  meanwhile, then finds the checkpoint moved and reloads its views), folds the partition up to its
  head, replaces that partition's rows in every table and sets its checkpoint to the head, in one
  transaction; events after it are the runner's again. Other partitions' rows and runners go on.
- `diff_projections` reads the checkpoints and the tables in one snapshot, folds each partition up to
  its checkpoint into fresh temporary tables, and compares them with that partition's live rows, row
  for row and the partition included (SQL `EXCEPT ALL`, so a value compares as PostgreSQL stores it);
  nothing is changed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.log import jsonb
from engine.log.partitions import check_partition, partition_count, read_head, read_heads
from engine.log.store import EventStore
from engine.model.catalogue import SHEET_CLAIMED
from engine.model.events import RecordedEvent
from engine.projections import cells as cells_projection
from engine.projections.cells import Sheet
from engine.readmodels.rows import MODELS, TABLES, TableSpec, Views, fold_all, rows_of
from engine.readmodels.runner import CHECKPOINT as PROJECTIONS_CHECKPOINT
from engine.readmodels.runner import lock_checkpoint, move_checkpoint
from engine.readmodels.tables import insert_rows

CHECKPOINT = "cells"
PAGE = 5000  # events per read of the log
CHUNK = 5000  # rows per insert

_LOCK_HEAD = "SELECT position FROM log_head WHERE partition = :partition FOR UPDATE"
# Rows travel as one JSON document, decoded by the same jsonb_to_recordset the writer uses, so a
# rebuilt row is stored exactly as the writer would have stored it.
_INSERT_CELLS = """
    INSERT INTO cells (sheet_id, cell_id, partition, value, formula, version, user_id, seq, position,
                       updated_at)
    SELECT c.sheet_id, c.cell_id, :partition, c.value, c.formula, c.version, c.user_id, c.seq, c.position,
           c.updated_at
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS c(sheet_id text, cell_id text, value jsonb,
         formula text, version bigint, user_id text, seq bigint, position bigint, updated_at timestamptz)
"""
_INSERT_SHEETS = """
    INSERT INTO sheets (sheet_id, partition, room_id, position)
    SELECT s.sheet_id, :partition, s.room_id, s.position
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS s(sheet_id text, room_id text, position bigint)
"""
_CHECKPOINT = """
    INSERT INTO projector_checkpoints (partition, name, position, updated_at)
    VALUES (:partition, :name, :position, now())
    ON CONFLICT (partition, name) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at
"""
_LIVE_CELLS = """
    SELECT sheet_id, cell_id, value::text AS value, formula, version, user_id, seq, position, updated_at
    FROM cells WHERE partition = :partition
"""
_LIVE_SHEETS = "SELECT sheet_id, room_id, position FROM sheets WHERE partition = :partition"

_CELL_COLUMNS = ("value", "formula", "version", "user_id", "seq", "position", "updated_at")
_SHEET_COLUMNS = ("room_id", "position")


@dataclass(frozen=True, slots=True)
class SheetClaim:
    room_id: str
    position: int


@dataclass(frozen=True, slots=True)
class Folded:
    """The cells fold of the log up to `head`, and the sheets' claims."""

    head: int
    events_read: int
    cell_updates: int
    sheets: dict[str, Sheet]
    claims: dict[str, SheetClaim]


@dataclass(frozen=True, slots=True)
class RebuildReport:
    heads: dict[int, int]  # partition -> the head it was rebuilt at
    events_read: int
    cell_updates: int
    sheets: int
    cells: int
    seconds: float

    @property
    def head(self) -> int:
        """The events of the partitions rebuilt (positions are gapless in each)."""
        return sum(self.heads.values())


async def fold_cells(db_engine: AsyncEngine, head: int, *, partition: int = 0, page: int = PAGE) -> Folded:
    """Every sheet folded from the partition's `CellUpdated` events at positions 1..`head`, and the
    claim of every sheet in it (the first event of its stream, the `SheetClaimed` the writer keeps the
    `sheets` row from), read in pages."""
    sheets: dict[str, Sheet] = {}
    claims: dict[str, SheetClaim] = {}
    read = updates = 0
    async for events in _pages(EventStore(db_engine), partition, head, page):
        read += len(events)
        # The log holds every concern (and test events outside the catalogue): only cell updates
        # feed this projection. Grouped per sheet so each sheet's cells are copied once per page.
        by_sheet: dict[str, list[RecordedEvent]] = defaultdict(list)
        for event in events:
            if event.type in cells_projection.HANDLED:
                by_sheet[str(event.data["sheet_id"])].append(event)
            elif event.type == SHEET_CLAIMED and event.stream_version == 1:
                claims[str(event.data["sheet_id"])] = SheetClaim(str(event.data["room_id"]), event.position)
        for sheet_id, sheet_events in by_sheet.items():
            updates += len(sheet_events)
            sheet = sheets.get(sheet_id) or Sheet(sheet_id)
            sheets[sheet_id] = cells_projection.apply_many(sheet, sheet_events)
    return Folded(head, read, updates, sheets, claims)


async def _chosen(db_engine: AsyncEngine, partition: int | None) -> list[int]:
    """Every partition of the log, or only `partition` (ValidationFailed for one the log does not have)."""
    async with db_engine.connect() as conn:
        partitions = await partition_count(conn)
    if partition is None:
        return list(range(partitions))
    check_partition(partition, partitions)
    return [partition]


async def rebuild_cells(db_engine: AsyncEngine, *, partition: int | None = None) -> RebuildReport:
    """Rewrite the `cells` and `sheets` rows of every partition (or only of `partition`) to the fold
    of its events, each partition in one transaction under its head lock, and record each head in
    projector_checkpoints as "cells". Appends to the other partitions go on meanwhile."""
    started = time.perf_counter()
    heads: dict[int, int] = {}
    read = updates = sheets = cells = 0
    for chosen in await _chosen(db_engine, partition):
        selected = {"partition": chosen}
        async with db_engine.begin() as conn:
            head = int((await conn.execute(text(_LOCK_HEAD), selected)).scalar_one())
            # Read on other connections: appends to this partition wait for the lock meanwhile.
            folded = await fold_cells(db_engine, head, partition=chosen)
            cell_rows, sheet_rows = _rows(folded)
            await conn.execute(text("DELETE FROM cells WHERE partition = :partition"), selected)
            await conn.execute(text("DELETE FROM sheets WHERE partition = :partition"), selected)
            await _insert(conn, _INSERT_CELLS, cell_rows, chosen)
            await _insert(conn, _INSERT_SHEETS, sheet_rows, chosen)
            await conn.execute(text(_CHECKPOINT), {**selected, "name": CHECKPOINT, "position": head})
        heads[chosen] = head
        read += folded.events_read
        updates += folded.cell_updates
        sheets += len(sheet_rows)
        cells += len(cell_rows)
    return RebuildReport(heads, read, updates, sheets, cells, time.perf_counter() - started)


async def diff_cells(db_engine: AsyncEngine, *, partition: int | None = None) -> list[str]:
    """How the live `cells` and `sheets` rows of every partition (or only of `partition`) differ from
    the fold of its events; empty when identical."""
    chosen = await _chosen(db_engine, partition)
    live: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    async with db_engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot for them all
        heads = await read_heads(conn)
        for p in chosen:
            cells_found = await conn.execute(text(_LIVE_CELLS), {"partition": p})
            sheets_found = await conn.execute(text(_LIVE_SHEETS), {"partition": p})
            live[p] = ([dict(r) for r in cells_found.mappings()], [dict(r) for r in sheets_found.mappings()])
        await conn.rollback()
    differences: list[str] = []
    for p, (live_cells, live_sheets) in live.items():
        for row in live_cells:
            row["value"] = None if row["value"] is None else orjson.loads(row["value"])
        cell_rows, sheet_rows = _rows(await fold_cells(db_engine, heads[p], partition=p))
        differences += _compare(
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


@dataclass(frozen=True, slots=True)
class ProjectionsReport:
    heads: dict[int, int]  # partition -> the head it was rebuilt at
    events_read: int
    rows: dict[str, int]  # table -> rows written
    seconds: float

    @property
    def head(self) -> int:
        """The events of the partitions rebuilt."""
        return sum(self.heads.values())


@dataclass(frozen=True, slots=True)
class FullReport:
    cells: RebuildReport
    projections: ProjectionsReport


async def fold_projections(
    db_engine: AsyncEngine, partition: int, upto: int, *, page: int = PAGE
) -> tuple[Views, int]:
    """Every read model's views folded from the partition's events at positions 1..`upto`, and the
    events read. Every row is fed by one owner's streams, which live in one partition, so these are
    exactly the views whose rows the partition holds."""
    views: Views = {}
    read = 0
    async for batch in _pages(EventStore(db_engine), partition, upto, page):
        read += len(batch)
        fold_all(MODELS, batch, views)
    return views, read


async def _pages(
    store: EventStore, partition: int, upto: int, size: int
) -> AsyncIterator[list[RecordedEvent]]:
    """The partition's events at positions 1..`upto`, in pages of at most `size`."""
    after = 0
    while after < upto:
        found = await store.read_all(after, limit=min(size, upto - after), partition=partition)
        page = [e for e in found if e.position <= upto]
        if not page:
            return
        yield page
        after = page[-1].position


async def _fill(conn: AsyncConnection, views: Views, partition: int, *, prefix: str = "") -> dict[str, int]:
    """Insert every row of `views` into the tables (or into `prefix`+table) in `partition`; rows per
    table."""
    counts: dict[str, int] = {}
    for model in MODELS:
        rows = rows_of(model, views.get(model.name, {}).values())
        for table in model.tables:
            into = prefix + table.name if prefix else None
            await insert_rows(conn, table, rows[table.name], partition=partition, into=into)
            counts[table.name] = len(rows[table.name])
    return counts


async def rebuild_projections(db_engine: AsyncEngine, *, partition: int | None = None) -> ProjectionsReport:
    """Rewrite every partition's rows of the projection tables (or only `partition`'s) to the fold of
    its events, and set the runner's checkpoint there to the head folded, each partition in one
    transaction holding its checkpoint row lock (its runner skips the partition meanwhile). The other
    partitions' rows, and their runners, are not touched."""
    started = time.perf_counter()
    heads: dict[int, int] = {}
    read = 0
    counts = {table.name: 0 for table in TABLES}
    for chosen in await _chosen(db_engine, partition):
        async with db_engine.begin() as conn:
            await lock_checkpoint(conn, PROJECTIONS_CHECKPOINT, chosen)
            head = await read_head(conn, chosen)
            views, events = await fold_projections(db_engine, chosen, head)
            for table in TABLES:
                await conn.execute(
                    text(f'DELETE FROM "{table.name}" WHERE partition = :partition'), {"partition": chosen}
                )
            for name, written in (await _fill(conn, views, chosen)).items():
                counts[name] += written
            await move_checkpoint(conn, head, PROJECTIONS_CHECKPOINT, chosen)
        heads[chosen] = head
        read += events
    return ProjectionsReport(heads, read, counts, time.perf_counter() - started)


async def diff_projections(db_engine: AsyncEngine, *, partition: int | None = None) -> list[str]:
    """How the projection tables differ from the fold of each partition (or only `partition`) up to
    the runner's checkpoint there, a row in the wrong partition included; empty when identical."""
    chosen = await _chosen(db_engine, partition)
    async with db_engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")  # checkpoints and tables together
        found = await conn.execute(
            text("SELECT partition, position FROM projector_checkpoints WHERE name = :n"),
            {"n": PROJECTIONS_CHECKPOINT},
        )
        checkpoints: dict[int, int] = {int(p): int(c) for p, c in found}
        for table in TABLES:
            await conn.execute(
                text(f'CREATE TEMP TABLE "fresh_{table.name}" (LIKE "{table.name}") ON COMMIT DROP')
            )
        for p in chosen:
            views, _ = await fold_projections(db_engine, p, checkpoints.get(p, 0))
            await _fill(conn, views, p, prefix="fresh_")
        differences: list[str] = []
        for table in TABLES:
            differences += await _diff_table(conn, table, chosen)
        await conn.rollback()
    return differences


async def _diff_table(conn: AsyncConnection, table: TableSpec, partitions: list[int]) -> list[str]:
    """The rows of `table` in `partitions` that differ from `fresh_` + table's. The partition is one
    of the columns compared: a row kept in another partition than its owner's is a difference."""
    names = ("partition", *table.column_names)
    columns = ", ".join(f'"{name}"' for name in names)
    live = f'(SELECT {columns} FROM "{table.name}" WHERE partition = ANY(:partitions)) AS live'
    fresh = f'"fresh_{table.name}"'

    async def only_in(first: str, second: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
        result = await conn.execute(
            text(f"SELECT {columns} FROM {first} EXCEPT ALL SELECT {columns} FROM {second}"),
            {"partitions": partitions},
        )
        found: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in result.mappings():
            found[tuple(row[k] for k in table.key)].append(dict(row))
        return found

    in_table, in_log = await only_in(live, fresh), await only_in(fresh, live)
    out: list[str] = []
    for key in sorted(in_table.keys() | in_log.keys(), key=repr):
        name = f"{table.name} {'/'.join(str(part) for part in key)}"
        have_rows, want_rows = in_table.get(key, []), in_log.get(key, [])
        if not want_rows:
            out.append(f"{name}: in the table but not in the log")
        elif not have_rows:
            out.append(f"{name}: in the log but missing from the table")
        else:
            want = want_rows[0]
            # Compared with its row in the owner's partition when there is one; any other is a copy.
            have = next((row for row in have_rows if row["partition"] == want["partition"]), have_rows[0])
            have_rows = [have, *(row for row in have_rows if row is not have)]
            changed = [c for c in names if not _same(have[c], want[c])]
            out += [f"{name}: {c} is {have[c]!r} in the table, {want[c]!r} in the log" for c in changed]
            if not changed:  # equal in Python, not as stored (a JSON 1 against 1.0, say)
                out.append(f"{name}: differs from the log as stored")
        # The same key twice in the table: kept in a second partition besides its owner's.
        out += [f"{name}: also in partition {row['partition']} of the table" for row in have_rows[1:]]
    return out


async def rebuild_all(db_engine: AsyncEngine, *, partition: int | None = None) -> FullReport:
    """`rebuild_cells`, then `rebuild_projections`, of every partition or only `partition`."""
    return FullReport(
        await rebuild_cells(db_engine, partition=partition),
        await rebuild_projections(db_engine, partition=partition),
    )


async def diff_all(db_engine: AsyncEngine, *, partition: int | None = None) -> list[str]:
    """`diff_cells` and `diff_projections` together; empty when every table matches the log."""
    return await diff_cells(db_engine, partition=partition) + await diff_projections(
        db_engine, partition=partition
    )


def _rows(folded: Folded) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The fold as rows of the cells and sheets tables."""
    cell_rows: list[dict[str, Any]] = []
    sheet_rows: list[dict[str, Any]] = []
    for sheet_id in sorted(folded.claims):
        claim = folded.claims[sheet_id]
        sheet_rows.append({"sheet_id": sheet_id, "room_id": claim.room_id, "position": claim.position})
    for sheet_id in sorted(folded.sheets):
        sheet = folded.sheets[sheet_id]
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


async def _insert(conn: AsyncConnection, statement: str, rows: list[dict[str, Any]], partition: int) -> None:
    for start in range(0, len(rows), CHUNK):
        rows_json = jsonb.dumps(rows[start : start + CHUNK])
        await conn.execute(text(statement), {"rows": rows_json, "partition": partition})


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


__all__ = [
    "CHECKPOINT",
    "Folded",
    "FullReport",
    "ProjectionsReport",
    "RebuildReport",
    "diff_all",
    "diff_cells",
    "diff_projections",
    "fold_cells",
    "fold_projections",
    "rebuild_all",
    "rebuild_cells",
    "rebuild_projections",
]
