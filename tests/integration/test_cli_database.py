"""`collab` against a real PostgreSQL that is missing, unreachable, refuses the login or holds a newer
schema: each told in two lines naming the cause and the fix. And `collab migrate` moving a real schema:
it says what it did, refuses an "upgrade" to an older revision, and asks before dropping the event log."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bench.common import free_port
from engine.log.embedded_postgres import database_url_for
from engine.log.migrate import current_revision, head_revision, upgrade_to_head
from tests.cli_runner import ROOT, assert_explained, collab
from tests.conftest import make_read_only

COMMANDS = [["migrate"], ["serve", "--port", "0"], ["projections", "rebuild", "--check"]]
HEAD = head_revision()


@pytest.fixture
def migrated_database(empty_database: str) -> str:
    upgrade_to_head(empty_database)
    return empty_database


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_cli_names_a_missing_database_and_how_to_create_it(
    tmp_path: Path, server_url: str, command: list[str]
) -> None:
    url = database_url_for(server_url, "collab_never_created")
    done = collab(*command, data_dir=tmp_path, DATABASE_URL=url)
    assert_explained(
        done,
        'database "collab_never_created" does not exist',
        "createdb collab_never_created",
        "DATABASE_URL",
    )


@pytest.mark.parametrize("command", COMMANDS[:2], ids=lambda c: c[0])
def test_cli_names_a_server_it_cannot_reach(tmp_path: Path, command: list[str]) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://app:hunter2@127.0.0.1:{port}/app"
    done = collab(*command, data_dir=tmp_path, DATABASE_URL=url)
    assert_explained(
        done, f"cannot reach PostgreSQL at app@127.0.0.1:{port}", "connection refused", "host and port"
    )
    assert "hunter2" not in done.stderr


def test_cli_names_a_refused_login(tmp_path: Path, server_url: str) -> None:
    url = make_url(server_url).set(username="collab_no_such_role").render_as_string(hide_password=False)
    done = collab("migrate", data_dir=tmp_path, DATABASE_URL=url)
    assert_explained(
        done, "refused the login", 'role "collab_no_such_role" does not exist', "user and password"
    )


@pytest.mark.parametrize("command", COMMANDS[:2], ids=lambda c: c[0])
def test_cli_refuses_a_schema_newer_than_the_code(
    tmp_path: Path, migrated_database: str, command: list[str]
) -> None:
    asyncio.run(_execute(migrated_database, "UPDATE alembic_version SET version_num = '9999'"))
    done = collab(*command, data_dir=tmp_path, DATABASE_URL=migrated_database)
    assert_explained(
        done, "revision '9999', newer than this collab-engine knows", f"'{HEAD}'", "newer collab"
    )
    assert current_revision(migrated_database) == "9999", "nothing was changed"


@pytest.mark.parametrize("command", COMMANDS[:2], ids=lambda c: c[0])
def test_cli_names_what_a_read_only_database_refused(
    tmp_path: Path, server_url: str, empty_database: str, command: list[str]
) -> None:
    # As a standby is: the failed migration's own error is told, not the release of its lock after it.
    asyncio.run(make_read_only(server_url, empty_database))
    done = collab(*command, data_dir=tmp_path, DATABASE_URL=empty_database)
    # The migration had started, so its log lines come first; the explanation is the last two lines.
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    cause, fix = done.stderr.strip().splitlines()[-2:]
    assert "refused a statement: cannot execute CREATE TABLE in a read-only transaction" in cause, cause
    assert "may create and alter tables" in fix
    assert current_revision(empty_database) is None, "nothing was changed"


def test_cli_shows_the_traceback_with_debug_logging(tmp_path: Path, server_url: str) -> None:
    url = database_url_for(server_url, "collab_never_created")
    done = collab("migrate", data_dir=tmp_path, DATABASE_URL=url, LOG_LEVEL="DEBUG")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "InvalidCatalogNameError" in done.stderr
    assert done.stderr.strip().splitlines()[-2].startswith('collab: database "collab_never_created"')


def test_migrate_says_what_it_did_and_when_there_is_nothing_to_do(
    tmp_path: Path, empty_database: str
) -> None:
    first = collab("migrate", data_dir=tmp_path, DATABASE_URL=empty_database)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"database schema upgraded from base to {HEAD} (head)"
    again = collab("migrate", data_dir=tmp_path, DATABASE_URL=empty_database)
    assert again.stdout.strip() == f"database schema already at {HEAD} (head); nothing to do"


def test_migrate_upgrade_to_an_older_revision_points_to_downgrade(
    tmp_path: Path, migrated_database: str
) -> None:
    done = collab("migrate", "--revision", "0003", data_dir=tmp_path, DATABASE_URL=migrated_database)
    assert_explained(done, f"at {HEAD}, newer than 0003", "collab migrate --downgrade 0003")
    assert current_revision(migrated_database) == HEAD


def test_migrate_names_the_known_revisions_for_an_unknown_one(tmp_path: Path, migrated_database: str) -> None:
    done = collab("migrate", "--revision", "0042x", data_dir=tmp_path, DATABASE_URL=migrated_database)
    assert_explained(done, "unknown revision '0042x'", "base, 0001", f"{HEAD} (head)")


def test_migrate_downgrade_that_keeps_the_log_needs_no_question(
    tmp_path: Path, migrated_database: str
) -> None:
    done = collab("migrate", "--downgrade", "0003", data_dir=tmp_path, DATABASE_URL=migrated_database)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"database schema downgraded from {HEAD} to 0003"
    assert current_revision(migrated_database) == "0003"


def test_migrate_will_not_drop_the_event_log_unasked(tmp_path: Path, migrated_database: str) -> None:
    """Not at a terminal and no --yes: refused, with what would be lost; the log is untouched."""
    (tmp_path / "files" / "ab").mkdir(parents=True)
    (tmp_path / "files" / "ab" / "file_1").write_bytes(b"kept")
    asyncio.run(_execute(migrated_database, "UPDATE log_head SET position = 1234"))
    done = collab("migrate", "--downgrade", "base", data_dir=tmp_path, DATABASE_URL=migrated_database)
    assert_explained(done, "refusing to drop the event log", "1,234 event(s)", "1 stored file(s)", "--yes")
    assert current_revision(migrated_database) == HEAD

    done = collab(
        "migrate", "--downgrade", "base", "--yes", data_dir=tmp_path, DATABASE_URL=migrated_database
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"database schema downgraded from {HEAD} to base"
    assert current_revision(migrated_database) is None


@pytest.mark.parametrize(("answer", "dropped"), [("no", False), ("yes", True)])
def test_migrate_asks_at_a_terminal_before_dropping_the_event_log(
    tmp_path: Path, migrated_database: str, answer: str, dropped: bool
) -> None:
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DATA_DIR", "LOG_"))}
    env.update(DATABASE_URL=migrated_database, DATA_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "migrate", "--downgrade", "base"],
        cwd=ROOT, env=env, stdin=follower, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    try:
        seen = b""
        while b"Type yes to drop it" not in seen:
            chunk = os.read(leader, 1024)
            assert chunk, seen
            seen += chunk
        assert b"drops the event log: 0 event(s)" in seen
        os.write(leader, answer.encode() + b"\n")
        assert proc.wait(timeout=60) == (0 if dropped else 1)
    finally:
        proc.kill()
        proc.wait()
        os.close(leader)
    assert current_revision(migrated_database) == (None if dropped else HEAD)
