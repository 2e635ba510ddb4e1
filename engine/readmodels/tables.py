"""The SQL for the projection tables: load views by key, write the changed rows of views, fill a table.

Rows travel as one JSON document decoded by `jsonb_to_recordset` with each column's type, the way the
log writer sends its rows: one statement per table whatever the number of rows, and the runner and
the rebuild store a value through the very same decoding and casts (the runner's update of a changed
row is that insert with `ON CONFLICT`), so equal views give equal rows.

Every statement works in one partition of the log: a view's rows live in the partition of the streams
that feed it (engine/log/partitions.py), the `partition` column of every table, which the views
themselves do not carry. A runner's step and a rebuild each work on one partition, so the statement
names it and touches no other partition's rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.log import jsonb
from engine.readmodels.rows import ReadModel, Row, Rows, TableSpec

CHUNK = 5000  # rows per statement


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _record(columns: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{_ident(name)} {kind}" for name, kind in columns)


def _owner_record(model: ReadModel) -> str:
    return _record((column, "text") for column in model.owner)


def _json(rows: list[Row] | list[dict[str, Any]]) -> str:
    return jsonb.dumps(rows)


async def insert_rows(
    conn: AsyncConnection,
    table: TableSpec,
    rows: list[Row],
    *,
    partition: int,
    into: str | None = None,
    replacing: bool = False,
) -> None:
    """Insert `rows` into `table` (or into `into`, a table of the same columns) in `partition`;
    `replacing`: a row whose key is taken replaces the row there (an update, not a delete and an
    insert: half the statements, and PostgreSQL can update in place); the target needs the table's
    primary key, which the rebuild's fresh tables do not have."""
    columns = ", ".join(_ident(name) for name in table.column_names)
    sql = (
        f"INSERT INTO {_ident(into or table.name)} (partition, {columns}) SELECT :partition, {columns} "
        f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({_record(table.columns)})"
    )
    if replacing:
        key = ", ".join(_ident(name) for name in ("partition", *table.key))
        values = [name for name in table.column_names if name not in table.key]
        sets = ", ".join(f"{_ident(name)} = EXCLUDED.{_ident(name)}" for name in values)
        sql += f" ON CONFLICT ({key}) " + (f"DO UPDATE SET {sets}" if values else "DO NOTHING")
    statement = text(sql)
    for start in range(0, len(rows), CHUNK):
        await conn.execute(statement, {"rows": _json(rows[start : start + CHUNK]), "partition": partition})


async def load_views(
    conn: AsyncConnection, model: ReadModel, keys: Iterable[Any], *, partition: int
) -> dict[Any, Any]:
    """The views of `keys` as `partition`'s rows hold them (an empty view for a key with no rows)."""
    keys = list(keys)
    if not keys:
        return {}
    owners = _json([_owner_of(model, key) for key in keys])
    found: dict[Any, Rows] = {key: {} for key in keys}
    using = ", ".join(_ident(column) for column in model.owner)
    for table in model.tables:
        columns = ", ".join(f"t.{_ident(name)}" for name in table.column_names)
        result = await conn.execute(
            text(
                f"SELECT {columns} FROM {_ident(table.name)} AS t "
                f"JOIN jsonb_to_recordset(CAST(:owners AS jsonb)) AS k({_owner_record(model)}) "
                f"USING ({using}) WHERE t.partition = :partition"
            ),
            {"owners": owners, "partition": partition},
        )
        for row in result.mappings():
            found[model.key_from(dict(row))].setdefault(table.name, []).append(dict(row))
    return {key: model.from_rows(key, rows) for key, rows in found.items()}


async def write_views(
    conn: AsyncConnection,
    model: ReadModel,
    views: Mapping[Any, Any],
    *,
    partition: int,
    stored: Mapping[Any, Any] | None = None,
) -> int:
    """Bring `partition`'s rows to the given views; the number of rows written.

    A view found in `stored` (as the tables hold it now) has only its changed rows replaced, in place,
    and its vanished rows deleted: a cell update moves its room's counters and its writer's
    `last_seen`, not the other members' rows. Any other view has all its rows deleted and written anew.
    """
    if not views:
        return 0
    now = {key: model.to_rows(view) for key, view in views.items()}
    then = {key: model.to_rows(stored[key]) for key in views if stored is not None and key in stored}
    written = 0
    for table in model.tables:
        whole = [key for key in views if key not in then]
        rows = [row for key in whole for row in now[key].get(table.name, [])]
        gone: list[Row] = []  # stored rows whose key the view no longer has
        for key, old_rows in then.items():
            old = {_key_of(table, row): row for row in old_rows.get(table.name, [])}
            for row in now[key].get(table.name, []):
                if old.pop(_key_of(table, row), None) != row:
                    rows.append(row)
            gone += old.values()
        if whole:
            await _delete(conn, table, model.owner, [_owner_of(model, key) for key in whole], partition)
        if gone:
            await _delete(conn, table, table.key, gone, partition)
        # Keys are unique among `rows`: a view's rows have distinct keys, and views distinct owners.
        await insert_rows(conn, table, rows, partition=partition, replacing=bool(then))
        written += len(rows)
    return written


def _key_of(table: TableSpec, row: Row) -> tuple[Any, ...]:
    return tuple(row[column] for column in table.key)


def _owner_of(model: ReadModel, key: Any) -> Row:
    return dict(zip(model.owner, model.owner_values(key), strict=True))


async def _delete(
    conn: AsyncConnection, table: TableSpec, columns: tuple[str, ...], rows: list[Row], partition: int
) -> None:
    """Delete the rows of `table` in `partition` that match one of `rows` on `columns`."""
    kinds = dict(table.columns)
    record = _record((column, kinds[column]) for column in columns)
    match = " AND ".join(f"t.{_ident(column)} = k.{_ident(column)}" for column in columns)
    picked = [{column: row[column] for column in columns} for row in rows]
    for start in range(0, len(picked), CHUNK):
        await conn.execute(
            text(
                f"DELETE FROM {_ident(table.name)} AS t "
                f"USING jsonb_to_recordset(CAST(:keys AS jsonb)) AS k({record}) "
                f"WHERE t.partition = :partition AND {match}"
            ),
            {"keys": _json(picked[start : start + CHUNK]), "partition": partition},
        )


__all__ = ["CHUNK", "insert_rows", "load_views", "write_views"]
