"""What a statement really read: the statements a block of code ran, and the table rows each one's plan
visited under EXPLAIN ANALYZE. A test of a query's cost counts rows, which a machine's speed does not
change, instead of timing it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@contextmanager
def statements_of(db_engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """Every statement (and its parameters) sent through `db_engine` inside the block."""
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        statements.append((statement, parameters))

    sa_event.listen(db_engine.sync_engine, "before_cursor_execute", keep)
    try:
        yield statements
    finally:
        sa_event.remove(db_engine.sync_engine, "before_cursor_execute", keep)


Plan = dict[str, Any]


async def plans(
    db_engine: AsyncEngine, statements: list[tuple[str, Any]], *, generic: bool = False
) -> list[tuple[str, Plan]]:
    """Each statement run again under EXPLAIN ANALYZE, with its plan: the plan PostgreSQL makes for
    these parameters, or with `generic`, the one it makes for any (a prepared statement's plan once
    it has run a few times, which cannot use the parameters' values)."""
    found = []
    async with db_engine.connect() as conn, conn.begin():  # SET LOCAL: the pool gets it back as it was
        if generic:
            await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        for number, (statement, parameters) in enumerate(statements):
            # A prepared statement outlives the transaction, on a connection the pool hands out again:
            # named once for all, and deallocated once explained.
            name = f"generic_plan_{uuid.uuid4().hex}_{number}" if generic else None
            if name is not None:
                explain, parameters = await _explain_generic(conn, name, statement, parameters)
            else:
                explain = f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}"
            plan = (await conn.exec_driver_sql(explain, parameters)).scalar_one()[0]["Plan"]
            if name is not None:
                await conn.exec_driver_sql(f"DEALLOCATE {name}")
            found.append((statement, plan))
    return found


async def _explain_generic(
    conn: AsyncConnection, name: str, statement: str, parameters: Any
) -> tuple[str, tuple[()]]:
    """EXPLAIN of `statement` as a prepared statement's generic plan runs it. EXPLAIN of the statement
    itself is planned with its values bound, whatever the plan cache mode: only EXECUTE of a prepared
    statement takes the generic plan, and it takes no bound parameters, so each value is written out
    as a literal of the type the statement gives it (rendered by the server, not by hand)."""
    await conn.exec_driver_sql(f"PREPARE {name} AS {statement}")
    found = await conn.exec_driver_sql(
        f"SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = '{name}'"
    )
    types: list[str] = found.scalar_one()
    literals = []
    for kind, value in zip(types, parameters or (), strict=True):
        quoted = (await conn.exec_driver_sql(f"SELECT quote_nullable($1::{kind})", (value,))).scalar_one()
        literals.append(f"{quoted}::{kind}")
    values = f"({', '.join(literals)})" if literals else ""
    return f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}{values}", ()


def rows_read(node: dict[str, Any]) -> float:
    """Table rows a plan visited: those its scans returned or filtered away, over their loops. (A
    bitmap index scan is not counted: of the BRIN index on time it is a range of pages, not rows;
    the heap scan over it counts the rows it rechecked.)"""
    own = 0.0
    if node["Node Type"] in _SCANS:
        removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
        own = (node["Actual Rows"] + removed) * node["Actual Loops"]
    return own + sum(rows_read(child) for child in node.get("Plans", []))


_SCANS = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


def shape(node: dict[str, Any]) -> str:
    """A plan in one line: each node, its index, and rows returned / removed by its filter."""
    kids = ",".join(shape(child) for child in node.get("Plans", []))
    rows = f"{node['Actual Rows']}/{node.get('Rows Removed by Filter', 0)}"
    return f"{node['Node Type']}({node.get('Index Name', '')} {rows})[{kids}]"
