"""Test database: a fresh database per session on the embedded PostgreSQL (or TEST_DATABASE_URL),
migrated to head. Nothing is mocked: every integration test talks to this real server.

TEST_LOG_PARTITIONS (default 1) is the partition count the suite's logs are created with; whatever
it is, every log the suite wrote is checked at its end for a transaction that wrote two partitions."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.log.embedded_postgres import database_url_for, start_embedded_postgres
from engine.log.migrate import upgrade_to_head
from engine.log.store import EventStore, create_db_engine
from tests.nats_server import nats_server

ROOT = Path(__file__).resolve().parents[1]
LOG_PARTITIONS = int(os.environ.get("TEST_LOG_PARTITIONS", "1"))

# The events' rows with the transaction that inserted each: events are never updated, so `xmin` is
# still the writing transaction (the other tables an append writes are rewritten by later appends,
# and every transaction that writes them writes events in the same partition).
SPANNING_TRANSACTIONS = """
    SELECT xmin::text AS tx, array_agg(DISTINCT partition ORDER BY partition) AS partitions
    FROM events GROUP BY xmin::text HAVING count(DISTINCT partition) > 1
"""


def _asyncpg_url(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def _libpq_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def admin_execute(server_url: str, sql: str) -> None:
    """Run one statement on the server's maintenance database (CREATE/DROP DATABASE)."""
    conn = await asyncpg.connect(_libpq_dsn(database_url_for(server_url, "postgres")))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def make_read_only(server_url: str, database_url: str) -> None:
    """Every later session on the database is read-only, as on a standby."""
    name = make_url(database_url).database
    await admin_execute(server_url, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')


async def transactions_spanning_partitions(database_url: str) -> list[tuple[str, list[int]]]:
    """Every transaction whose rows in the log's tables are in more than one partition."""
    conn = await asyncpg.connect(_libpq_dsn(database_url))
    try:
        return [(row["tx"], list(row["partitions"])) for row in await conn.fetch(SPANNING_TRANSACTIONS)]
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def server_url() -> str:
    """A PostgreSQL server the tests may create databases on."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        return _asyncpg_url(given)
    return start_embedded_postgres(ROOT / ".data" / "test")


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database, migrated to head, dropped at the end of the session."""
    name = f"collab_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin_execute(server_url, f'CREATE DATABASE "{name}"'))
    url = database_url_for(server_url, name)
    upgrade_to_head(url, LOG_PARTITIONS)
    yield url
    spanning = asyncio.run(transactions_spanning_partitions(url))
    asyncio.run(admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    assert not spanning, f"transactions that wrote several partitions: {spanning[:5]}"


@pytest.fixture(scope="session")
def one_partition_url(server_url: str) -> Iterator[str]:
    """A log of one partition whatever TEST_LOG_PARTITIONS says: for the tests of one partition's
    writer, tail order and the log contract (shared with the memory log, which has one). A database
    of its own, also when the suite's has one partition: those tests compare the log's head before
    and after, and the session's servers append in the background to theirs (a typing or an upload
    that expires)."""
    name = f"collab_one_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin_execute(server_url, f'CREATE DATABASE "{name}"'))
    url = database_url_for(server_url, name)
    upgrade_to_head(url)
    yield url
    asyncio.run(admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
async def one_partition_store(one_partition_url: str) -> AsyncIterator[EventStore]:
    db_engine = create_db_engine(one_partition_url)
    yield EventStore(db_engine)
    await db_engine.dispose()


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A NATS server of the session's own, for nodes that deliver across each other on a bus."""
    with nats_server() as server:
        yield server.url


@pytest.fixture(scope="session")
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    db_engine = create_db_engine(database_url)
    yield db_engine
    await db_engine.dispose()


@pytest.fixture(scope="session")
def store(db_engine: AsyncEngine) -> EventStore:
    return EventStore(db_engine)


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    """A database of this test's own with nothing in it, not even a schema; dropped afterwards."""
    url = asyncio.run(create_empty_database(server_url))
    try:
        yield url
    finally:
        asyncio.run(drop_database(server_url, url))


async def create_empty_database(server_url: str) -> str:
    """A new database with nothing in it, not even a schema, on the server at `server_url`: its URL."""
    name = f"collab_empty_{uuid.uuid4().hex[:10]}"
    await admin_execute(server_url, f'CREATE DATABASE "{name}"')
    return database_url_for(server_url, name)


async def drop_database(server_url: str, url: str) -> None:
    name = make_url(url).database
    await admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def stream() -> str:
    """A stream id no other test uses, so tests share one database without seeing each other."""
    return f"test:{uuid.uuid4().hex}"
