"""The inline cells and sheets tables against a replay of the log (engine/readmodels/rebuild.py), on a real
PostgreSQL: the writer and the fold agree, a corruption is reported, and a rebuild repairs it.

The session database is shared with every other test, which also writes cells through the writer, so
the diffs here are of the whole tables: the writer keeps them equal to the log by construction.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.log.appender import Appender
from engine.log.store import EventStore
from engine.model.catalogue import SheetClaimed
from engine.model.events import CellWrite, Committed, Duplicate, NewEvent, Origin, Refused
from engine.readmodels.rebuild import diff_cells, rebuild_cells

ROOT = Path(__file__).resolve().parents[2]


def update(
    room: str, sheet: str, cell: str, value: Any, user: str, *, base: int | None = None, **kw: Any
) -> NewEvent:
    data = {
        "room_id": room,
        "sheet_id": sheet,
        "cell_id": cell,
        "value": value,
        "formula": f"={value}" if isinstance(value, int) and not isinstance(value, bool) else None,
        "user_id": user,
        "username": user.title(),
    }
    return NewEvent(
        f"room:{room}",
        "CellUpdated",
        data,
        user_id=user,
        cells=(CellWrite(sheet, cell, room, base, value, data["formula"]),),
        **kw,
    )


async def session(store: EventStore) -> dict[str, Any]:
    """Appends through a real Appender: two rooms, four sheets, many updates (single and batched),
    some refused by the version rule, a repeated client key, and events of other concerns between."""
    tag = uuid.uuid4().hex[:8]
    rooms = [f"rb-{tag}-r1", f"rb-{tag}-r2"]
    sheets = {f"rb-{tag}-s{i}": rooms[i % 2] for i in range(4)}
    values: list[Any] = ["text", 7, 2.5, True, None, {"nested": [1, 2]}, "", 0]
    appender = Appender(EventStore(store.db_engine), max_batch=16)
    await appender.start()
    outcomes: list[Any] = []
    try:
        for sheet, room in sheets.items():
            await appender.append(SheetClaimed(sheet, room).claim(Origin("n", "alice")))
        for n in range(96):
            sheet = list(sheets)[n % 4]
            cell = f"{'ABC'[n % 3]}{n % 5}"
            user = ("alice", "bob")[n % 2]
            outcomes.append(await appender.append(update(sheets[sheet], sheet, cell, values[n % 8], user)))
        # A batch racing on one cell: same stale base (1) after it moved on, and fresh bases.
        sheet = next(iter(sheets))
        batch = [update(sheets[sheet], sheet, "Z9", n, "carol", base=n) for n in range(1, 6)]
        batch += [update(sheets[sheet], sheet, "A0", "stale", "carol", base=1)]
        batch += [NewEvent(f"test:{tag}", "Probed", {"n": 1})]  # not a cell event: the fold skips it
        outcomes += await appender.append_many(batch)
        key = f"rb-{tag}-client-msg"
        first = await appender.append(update(sheets[sheet], sheet, "K1", "once", "dave", idempotency_key=key))
        again = await appender.append(
            update(sheets[sheet], sheet, "K1", "twice", "dave", idempotency_key=key)
        )
    finally:
        await appender.stop()
    assert isinstance(first, Committed) and isinstance(again, Duplicate)
    assert again.position == first.position
    assert sum(isinstance(o, Refused) for o in outcomes) >= 1, "the session refused nothing"
    assert sum(isinstance(o, Committed) for o in outcomes) >= 96
    return {"rooms": rooms, "sheets": sheets}


async def snapshot(db_engine: AsyncEngine, sheets: dict[str, str]) -> list[Any]:
    async with db_engine.connect() as conn:
        cells = await conn.execute(
            text("SELECT * FROM cells WHERE sheet_id = ANY(:s) ORDER BY sheet_id, cell_id"),
            {"s": list(sheets)},
        )
        rows = [tuple(r) for r in cells]
        found = await conn.execute(
            text("SELECT * FROM sheets WHERE sheet_id = ANY(:s) ORDER BY sheet_id"), {"s": list(sheets)}
        )
        return rows + [tuple(r) for r in found]


async def execute(db_engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with db_engine.begin() as conn:
        await conn.execute(text(sql), params)


async def test_live_tables_equal_the_fold_and_a_rebuild_repairs_corruption(
    store: EventStore, db_engine: AsyncEngine
) -> None:
    made = await session(store)
    sheets = made["sheets"]
    assert await diff_cells(db_engine) == []
    before = await snapshot(db_engine, sheets)
    assert len(before) > 4 + 40  # the sheets and their many cells are there
    first, second = sorted(sheets)[:2]

    await execute(
        db_engine, "UPDATE cells SET value = '\"x\"'::jsonb WHERE sheet_id = :s AND cell_id = 'A0'", s=first
    )
    await execute(
        db_engine, "UPDATE cells SET version = version + 1 WHERE sheet_id = :s AND cell_id = 'B1'", s=first
    )
    await execute(db_engine, "DELETE FROM cells WHERE sheet_id = :s AND cell_id = 'C2'", s=second)
    await execute(
        db_engine,
        "INSERT INTO cells (sheet_id, cell_id, partition, value, formula, version, user_id, seq, position, "
        "updated_at) SELECT sheet_id, 'ghost', partition, value, formula, version, user_id, seq, position, "
        "updated_at FROM cells WHERE sheet_id = :s AND cell_id = 'A0'",
        s=second,
    )
    await execute(db_engine, "UPDATE sheets SET room_id = 'elsewhere' WHERE sheet_id = :s", s=second)

    differences = await diff_cells(db_engine)
    assert len(differences) == 5, differences
    assert any(line.startswith(f"cell {first}/A0: value is 'x' in the table") for line in differences)
    assert any(line.startswith(f"cell {first}/B1: version is") for line in differences)
    assert f"cell {second}/C2: in the log but missing from the table" in differences
    assert f"cell {second}/ghost: in the table but not in the log" in differences
    assert any(line.startswith(f"sheet {second}: room_id is 'elsewhere'") for line in differences)

    report = await rebuild_cells(db_engine)
    assert await diff_cells(db_engine) == []
    assert await snapshot(db_engine, sheets) == before  # exactly the rows the writer had written
    # Other tests' servers share this database and may append meanwhile (a sweeper expiring an upload).
    assert report.head <= sum((await store.heads()).values())
    assert report.events_read == report.head  # the whole log as of the rebuild, every position once
    assert report.cell_updates >= 96 and report.sheets >= 4 and report.cells >= len(before) - 4
    async with db_engine.connect() as conn:
        checkpoints = await conn.execute(
            text("SELECT partition, position FROM projector_checkpoints WHERE name = 'cells'")
        )
        assert {int(p): int(c) for p, c in checkpoints} == report.heads


async def test_cells_written_after_a_rebuild_still_match(store: EventStore, db_engine: AsyncEngine) -> None:
    await rebuild_cells(db_engine)
    await session(store)  # the writer's caches are fresh per appender; the tables carry on from the rebuild
    assert await diff_cells(db_engine) == []


async def test_a_rebuild_keeps_a_large_float_a_float(store: EventStore, db_engine: AsyncEngine) -> None:
    """jsonb spells out an exponent: a float written as `1e+16` would be rebuilt as an integer."""
    tag = uuid.uuid4().hex[:8]
    room, sheet = f"rb-{tag}-r", f"rb-{tag}-s"
    floats = {"A1": 1e16, "A2": -1.2345678901234567e19, "A3": 5e15}
    appender = Appender(EventStore(store.db_engine))
    await appender.start()
    try:
        await appender.append(SheetClaimed(sheet, room).claim(Origin("n", "alice")))
        for cell, value in floats.items():
            assert isinstance(await appender.append(update(room, sheet, cell, value, "alice")), Committed)
    finally:
        await appender.stop()

    async def stored() -> dict[str, str]:
        async with db_engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT cell_id, value::text FROM cells WHERE sheet_id = :s"), {"s": sheet}
            )
            return {str(cell): str(value) for cell, value in rows}

    spelled = {"A1": "10000000000000000.0", "A2": "-12345678901234567000.0", "A3": "5000000000000000.0"}
    assert await stored() == spelled
    await rebuild_cells(db_engine)
    assert await stored() == spelled
    assert await diff_cells(db_engine) == []


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "projections", "rebuild", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_cli_check_exits_0_when_equal_and_1_after_a_corruption_until_rebuilt(
    store: EventStore, db_engine: AsyncEngine, database_url: str
) -> None:
    sheets = (await session(store))["sheets"]
    sheet = sorted(sheets)[0]

    equal = await asyncio.to_thread(cli, database_url, "--check")
    assert equal.returncode == 0, equal.stdout + equal.stderr
    assert "0 difference(s)" in equal.stdout

    await execute(
        db_engine, "UPDATE cells SET value = '\"x\"'::jsonb WHERE sheet_id = :s AND cell_id = 'A0'", s=sheet
    )
    differs = await asyncio.to_thread(cli, database_url, "--check")
    assert differs.returncode == 1, differs.stdout + differs.stderr
    assert f"cell {sheet}/A0: value is 'x' in the table" in differs.stdout

    rebuilt = await asyncio.to_thread(cli, database_url)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "events read" in rebuilt.stdout and "cells" in rebuilt.stdout
    again = await asyncio.to_thread(cli, database_url, "--check")
    assert again.returncode == 0, again.stdout + again.stderr
    assert await diff_cells(db_engine) == []
