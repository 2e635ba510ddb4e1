"""Shared benchmark plumbing: a throwaway database on the embedded PostgreSQL (or BENCH_DATABASE_URL)
and latency percentiles."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from engine.embedded_postgres import database_url_for, start_embedded_postgres
from engine.migrate import upgrade_to_head


async def _admin(server_url: str, sql: str) -> None:
    dsn = make_url(database_url_for(server_url, "postgres")).set(drivername="postgresql")
    conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fresh_database() -> str:
    """A new, migrated database; on the embedded server unless BENCH_DATABASE_URL names another."""
    given = os.environ.get("BENCH_DATABASE_URL")
    if given:
        server = make_url(given).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    else:
        data_dir = Path(os.environ.get("BENCH_DATA_DIR") or Path(tempfile.gettempdir()) / "collab-bench")
        server = start_embedded_postgres(data_dir)
    name = f"collab_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    url = database_url_for(server, name)
    upgrade_to_head(url)
    return url


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=1000, method="inclusive")[round(q * 10) - 1]
