"""Shared benchmark plumbing: a throwaway database on the embedded PostgreSQL (or BENCH_DATABASE_URL)
and latency percentiles."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
from sqlalchemy.engine import make_url

from engine.log.embedded_postgres import database_url_for, start_embedded_postgres
from engine.log.migrate import upgrade_to_head


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _admin(server_url: str, sql: str) -> None:
    dsn = make_url(database_url_for(server_url, "postgres")).set(drivername="postgresql")
    conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


ROOT = Path(__file__).resolve().parents[1]


def revision_tree(spec: str, into: Path) -> tuple[str, Path]:
    """'before:HEAD~1' -> ('before', a detached worktree of that commit under `into`, removed at exit),
    for measuring another commit's code in the same run. This virtualenv serves it: the commit must
    not need other dependencies."""
    name, _, rev = spec.partition(":")
    if not name or not rev:
        raise SystemExit(f"--rev {spec!r}: expected NAME:REVISION")
    tree = into / f"rev-{name}"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True)
    atexit.register(subprocess.run, ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    return name, tree


def revision_with(spec: str, into: Path, script: Path) -> tuple[str, Path]:
    """`revision_tree`, with this tree's benchmark `script` copied into it: the other commit's code
    measured by this benchmark (a commit older than the benchmark has none)."""
    name, tree = revision_tree(spec, into)
    shutil.copy(script, tree / "bench" / script.name)
    return name, tree


def _embedded_data_dir() -> Path:
    return Path(os.environ.get("BENCH_DATA_DIR") or Path(tempfile.gettempdir()) / "collab-bench")


def fresh_database(*, migrate: bool = True) -> str:
    """A new database, migrated unless `migrate` is false (a server of another revision migrates it
    to its own head at start); on the embedded server unless BENCH_DATABASE_URL names another."""
    given = os.environ.get("BENCH_DATABASE_URL")
    if given:
        server = make_url(given).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    else:
        server = start_embedded_postgres(_embedded_data_dir())
    name = f"collab_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    url = database_url_for(server, name)
    atexit.register(drop_database, url)  # registered after the embedded server's stop: runs before it
    if migrate:
        upgrade_to_head(url)
    return url


def drop_database(url: str) -> None:
    """Drop a database `fresh_database` made, once its servers have stopped (again: a no-op).

    Autovacuum visits every database on the server: a finished run's log, left behind, was vacuumed
    and analyzed during the next run (or the next benchmark), on the cores being measured."""
    name = make_url(url).database
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def database_processes() -> list[psutil.Process]:
    """The benchmark's PostgreSQL processes: the embedded server's postmaster and backends, or every
    `postgres` on the machine when BENCH_DATABASE_URL names another server."""
    if os.environ.get("BENCH_DATABASE_URL"):
        return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
    pgdata = str((_embedded_data_dir() / "pg").resolve())
    procs: list[psutil.Process] = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and pgdata in (proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                procs += [proc, *proc.children(recursive=True)]
    return procs


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User plus system CPU time the processes have used so far (gone ones count nothing)."""
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def pin_database_server(cores: set[int]) -> None:
    """Pin the benchmark's PostgreSQL (postmaster and its backends, which inherit its affinity) to `cores`.

    Only the embedded server's tree when it is the one in use: pinning every `postgres` on the machine
    would also slow a system server others share, and that affinity outlives the benchmark.
    """
    for proc in database_processes():
        with contextlib.suppress(psutil.Error):
            proc.cpu_affinity(list(cores))


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=1000, method="inclusive")[round(q * 10) - 1]


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """The load generator's garbage collector off while it measures.

    A step keeps every send time and latency it records, so the generator's heap grows by some
    hundred thousand objects a second, and its full collections grew to 40-100 ms every 1.3 s: the
    generator stopped sending and reading meanwhile, then sent the late messages in one burst. That
    stall landed in the measured latency of whichever server was under test (a server near
    saturation took hundreds of milliseconds to drain the burst). Garbage without cycles is still
    freed at once; the rest waits for the collection after the step.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()
