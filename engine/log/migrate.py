"""Schema upgrades through Alembic, callable from the CLI, the server's start-up and the tests.

These functions are synchronous (Alembic's env runs its own event loop); from async code call them
through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from engine.log.partitions import ensure_partitions
from engine.model.errors import SchemaMismatch

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def current_revision(database_url: str) -> str | None:
    """The revision stamped in the database, or None for an empty one."""

    async def read() -> str | None:
        db_engine = create_async_engine(database_url)
        try:
            async with db_engine.connect() as conn:
                has_table = await conn.run_sync(lambda c: inspect(c).has_table("alembic_version"))
                if not has_table:
                    return None
                return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        finally:
            await db_engine.dispose()

    return asyncio.run(read())


def check_known(database_url: str) -> None:
    """Refuse a database whose schema was written by newer code: running on it could corrupt it."""
    revision = current_revision(database_url)
    if revision is None:
        return
    script = ScriptDirectory.from_config(alembic_config(database_url))
    known = {rev.revision for rev in script.walk_revisions()}
    if revision not in known:
        raise SchemaMismatch(
            f"the database schema is at revision {revision!r}, newer than this collab-engine knows "
            f"(its newest is {script.get_current_head()!r}): running on it could corrupt it"
        )


def upgrade(database_url: str, revision: str = "head") -> None:
    check_known(database_url)
    command.upgrade(alembic_config(database_url), revision)


def upgrade_to_head(database_url: str, partitions: int = 1) -> None:
    """Upgrade the schema; a new log then gets `partitions` partitions (`LOG_PARTITIONS`), and an
    existing one keeps its count, said in a warning when it differs from `partitions`."""
    upgrade(database_url, "head")
    if partitions > 1:
        has = asyncio.run(ensure_partitions(database_url, partitions))
        if has != partitions:
            log.warning(
                "LOG_PARTITIONS=%d is not this log's count: it has events and keeps its %d partition(s)",
                partitions,
                has,
            )


def downgrade(database_url: str, revision: str) -> None:
    check_known(database_url)
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://unused/")).get_current_head()


__all__ = ["check_known", "current_revision", "downgrade", "head_revision", "upgrade", "upgrade_to_head"]
