"""The embedded PostgreSQL: its data is reused across runs, and it starts despite a stale pid file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Each run is its own process that starts the server, runs one statement and exits, which stops the
# server again: the life of one `collab serve`.
RUN = """
import asyncio, sys
from pathlib import Path
import asyncpg
from sqlalchemy.engine import make_url
from engine.log.embedded_postgres import start_embedded_postgres

url = start_embedded_postgres(Path(sys.argv[1]))

async def main():
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        print(await conn.fetchval(sys.argv[2]))
    finally:
        await conn.close()

asyncio.run(main())
"""


def run(data_dir: Path, sql: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(data_dir), sql], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_embedded_server_keeps_data_across_runs_and_survives_a_stale_pid_file(tmp_path: Path) -> None:
    run(tmp_path, "CREATE TABLE kept AS SELECT 42 AS answer")
    assert run(tmp_path, "SELECT answer FROM kept") == "42"

    # A crash leaves postmaster.pid behind, and in containers its pid is soon reused by another
    # process, so PostgreSQL alone refuses to start. Point it at this test's own, live, pid.
    pgdata = tmp_path / "pg"
    assert not (pgdata / "postmaster.pid").exists(), "a clean stop removes the pid file"
    (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n0\n5432\n\n\n\n")
    assert run(tmp_path, "SELECT answer FROM kept") == "42"
