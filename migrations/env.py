"""Alembic environment, async: runs migrations over asyncpg under an advisory lock, so several
server processes starting at once never race on the same upgrade."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from engine.log.schema import metadata
from engine.log.session_settings import UNATTACHED_VANISH_WITHIN, session_settings

config = context.config
MIGRATION_LOCK = 7_160_241  # arbitrary, stable advisory-lock key for schema changes


def _url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: set DATABASE_URL or run `collab migrate`")
    return url


def _run(connection: Connection) -> None:
    # A session-level lock, committed at once so that Alembic owns the transactions that follow.
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
    connection.commit()
    try:
        context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        # A migration that failed can leave its transaction aborted, where even the unlock is refused
        # and its error would hide the migration's own (a read-only database, say).
        if connection.in_transaction():
            connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
        connection.commit()


async def _run_async() -> None:
    # A host that vanishes while holding the migration lock must not keep every other node from starting.
    settings = session_settings(vanish_within=UNATTACHED_VANISH_WITHIN)
    db_engine = create_async_engine(_url(), connect_args={"server_settings": settings})
    try:
        async with db_engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await db_engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
