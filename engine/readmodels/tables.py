"""The SQL for the projection tables: load views by key, replace the rows of changed views, fill a table.

Rows travel as one JSON document decoded by `jsonb_to_recordset` with each column's type, the way the
log writer sends its rows: one statement per table whatever the number of rows, and the runner and
the rebuild store a value through the very same statement, so equal views give equal rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.readmodels.rows import ReadModel, Row, Rows, TableSpec, rows_of

CHUNK = 5000  # rows per statement


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _record(columns: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{_ident(name)} {kind}" for name, kind in columns)


def _owner_record(model: ReadModel) -> str:
    return _record((column, "text") for column in model.owner)


def _json(rows: list[Row] | list[dict[str, Any]]) -> str:
    return orjson.dumps(rows).decode()


async def insert_rows(
    conn: AsyncConnection, table: TableSpec, rows: list[Row], *, into: str | None = None
) -> None:
    """Insert `rows` into `table` (or into `into`, a table of the same columns)."""
    columns = ", ".join(_ident(name) for name in table.column_names)
    statement = text(
        f"INSERT INTO {_ident(into or table.name)} ({columns}) SELECT {columns} "
        f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({_record(table.columns)})"
    )
    for start in range(0, len(rows), CHUNK):
        await conn.execute(statement, {"rows": _json(rows[start : start + CHUNK])})


async def load_views(conn: AsyncConnection, model: ReadModel, keys: Iterable[Any]) -> dict[Any, Any]:
    """The views of `keys` as the tables hold them (an empty view for a key with no rows)."""
    keys = list(keys)
    if not keys:
        return {}
    owners = _json([dict(zip(model.owner, model.owner_values(key), strict=True)) for key in keys])
    found: dict[Any, Rows] = {key: {} for key in keys}
    using = ", ".join(_ident(column) for column in model.owner)
    for table in model.tables:
        columns = ", ".join(f"t.{_ident(name)}" for name in table.column_names)
        result = await conn.execute(
            text(
                f"SELECT {columns} FROM {_ident(table.name)} AS t "
                f"JOIN jsonb_to_recordset(CAST(:owners AS jsonb)) AS k({_owner_record(model)}) "
                f"USING ({using})"
            ),
            {"owners": owners},
        )
        for row in result.mappings():
            found[model.key_from(dict(row))].setdefault(table.name, []).append(dict(row))
    return {key: model.from_rows(key, rows) for key, rows in found.items()}


async def write_views(conn: AsyncConnection, model: ReadModel, views: Mapping[Any, Any]) -> int:
    """Replace every row of the given views with their rows now; the number of rows written."""
    if not views:
        return 0
    owners = _json([dict(zip(model.owner, model.owner_values(key), strict=True)) for key in views])
    match = " AND ".join(f"t.{_ident(column)} = k.{_ident(column)}" for column in model.owner)
    rows = rows_of(model, views.values())
    written = 0
    for table in model.tables:
        await conn.execute(
            text(
                f"DELETE FROM {_ident(table.name)} AS t "
                f"USING jsonb_to_recordset(CAST(:owners AS jsonb)) AS k({_owner_record(model)}) WHERE {match}"
            ),
            {"owners": owners},
        )
        await insert_rows(conn, table, rows[table.name])
        written += len(rows[table.name])
    return written


__all__ = ["CHUNK", "insert_rows", "load_views", "write_views"]
