"""The query-plan helper (tests/integration/query_plans.py) itself, against a real PostgreSQL."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.query_plans import plans


async def test_generic_plans_can_be_asked_for_again_on_the_same_engine(log_engine: AsyncEngine) -> None:
    """A prepared statement outlives its transaction on the pooled connection it was made on: asking
    for the generic plans of a block of statements a second time (a test of two blocks, or of the
    same one twice) must not find the first call's statements still there."""
    statements = [
        ("SELECT count(*) FROM events WHERE stream_id = $1", ("room:a",)),
        ("SELECT count(*) FROM events WHERE stream_id = $1 AND stream_version > $2", ("room:a", 1)),
    ]
    for _ in range(2):
        found = await plans(log_engine, statements, generic=True)
        assert [statement for statement, _ in found] == [statement for statement, _ in statements]
    async with log_engine.connect() as conn:  # the pool's connection, which the calls used
        left = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'generic_plan_%'"
        assert (await conn.exec_driver_sql(left)).scalar_one() == 0
