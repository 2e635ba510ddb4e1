"""The `collab` CLI as a person runs it: a real subprocess, a real data folder, real JWT decoding, and
the failures a person can cause without a database (settings, ports), each told in two lines."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import asyncpg
import jwt
import pytest

from api.cli_errors import database_failure
from api.tokens import parse_ttl
from tests.cli_runner import assert_explained, collab


def test_cli_token_generates_a_secret_once_and_signs_with_it(tmp_path: Path) -> None:
    first = collab(
        "token",
        "--sub",
        "u1",
        "--username",
        "ann",
        "--role",
        "admin",
        "viewer",
        "--rooms",
        "team-*",
        "--ttl",
        "1h",
        data_dir=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    secret_file = tmp_path / "jwt_secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32

    claims = jwt.decode(first.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == "u1" and claims["username"] == "ann"
    assert claims["roles"] == ["admin", "viewer"] and claims["rooms"] == ["team-*"]
    assert claims["exp"] - claims["iat"] == 3600

    second = collab("token", "--sub", "u2", data_dir=tmp_path)
    assert second.returncode == 0, second.stderr
    assert secret_file.read_text().strip() == secret, "the generated secret is reused, not replaced"
    assert jwt.decode(second.stdout.strip(), secret, algorithms=["HS256"])["roles"] == ["editor"]


def test_cli_token_uses_configured_secret_issuer_and_audience(tmp_path: Path) -> None:
    key = "k" * 64
    done = collab(
        "token",
        "--sub",
        "u1",
        data_dir=tmp_path,
        JWT_SECRET_KEY=key,
        JWT_ALGORITHMS="HS512,HS256",
        JWT_ISSUER="collab",
        JWT_AUDIENCE="sheets",
    )
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), key, algorithms=["HS512"], audience="sheets", issuer="collab")
    assert claims["sub"] == "u1"
    assert not (tmp_path / "jwt_secret").exists(), "no secret is generated when one is configured"


@pytest.mark.parametrize("args", [["--role", "owner"], ["--ttl", "5w"], ["--ttl", "0"]])
def test_cli_token_rejects_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    done = collab("token", "--sub", "u1", *args, data_dir=tmp_path)
    assert done.returncode != 0
    assert done.stdout == ""


def test_cli_token_refuses_an_asymmetric_algorithm(tmp_path: Path) -> None:
    done = collab("token", "--sub", "u1", data_dir=tmp_path, JWT_ALGORITHMS="RS256")
    assert done.returncode == 1
    assert "RS256" in done.stderr


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800), ("90", 90)]
)
def test_parse_ttl_units(text: str, seconds: int) -> None:
    assert parse_ttl(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"WEBSOCKET_REQUESTS_PER_MINUTE": "abc"}, ["WEBSOCKET_REQUESTS_PER_MINUTE='abc'", "integer"]),
        ({"LOG_FORMAT": "xml"}, ["LOG_FORMAT='xml'", "'auto', 'json' or 'text'"]),
        ({"ROOM_AUTO_CREATE": "maybe"}, ["ROOM_AUTO_CREATE", "boolean"]),
        ({"JWT_ALGORITHMS": "[HS256"}, ["JWT_ALGORITHMS", "JSON list"]),
        ({"NODE_DEAD_AFTER_SECONDS": "6"}, ["NODE_DEAD_AFTER_SECONDS must be at least twice"]),
        ({"ROUTE_APPENDS": "true"}, ["ROUTE_APPENDS needs NATS_URL"]),
        ({"DATABASE_URL": "mysql://root:hunter2@db/app"}, ["DATABASE_URL", "postgresql://USER:PASSWORD@"]),
        ({"DATABASE_URL": "postgresql://root:hunter2@db:port/app"}, ["DATABASE_URL", "%40"]),
    ],
)
def test_cli_names_a_bad_setting_and_where_to_fix_it(
    tmp_path: Path, env: dict[str, str], needles: list[str]
) -> None:
    done = collab("token", "--sub", "u1", data_dir=tmp_path, **env)
    _, fix = assert_explained(done, "invalid setting", *needles)
    assert "hunter2" not in done.stderr, "a password in DATABASE_URL is never echoed"
    assert ".env" in fix


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_cli_reads_the_settings_before_starting_anything(tmp_path: Path, command: str) -> None:
    done = collab(command, data_dir=tmp_path, DATABASE_URL="mysql://root:hunter2@db/app")
    assert_explained(done, "invalid setting: DATABASE_URL")
    assert "hunter2" not in done.stderr
    assert not (tmp_path / "pg").exists()


def test_cli_serve_names_a_port_in_use_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = collab("serve", "--port", str(port), data_dir=tmp_path)
    assert_explained(done, f"port {port} on 127.0.0.1 is already in use", f"--port {port + 1}", "PORT=")
    assert done.stdout == "", "no banner for a server that cannot start"
    assert not (tmp_path / "pg").exists(), "the embedded PostgreSQL is not started for nothing"


def test_cli_serve_names_an_address_it_cannot_listen_on(tmp_path: Path) -> None:
    done = collab("serve", "--host", "192.0.2.1", "--port", "8000", data_dir=tmp_path)  # TEST-NET-1
    assert_explained(done, "cannot listen on 192.0.2.1:8000", "--host 127.0.0.1")


def test_cli_debug_log_level_adds_the_traceback(tmp_path: Path) -> None:
    done = collab("token", "--sub", "u1", data_dir=tmp_path, LOG_LEVEL="DEBUG", WEBSOCKET_PING_INTERVAL="x")
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("  Fix it"), "the explanation still ends it"


def test_database_failure_explains_a_wrong_password() -> None:
    """A password PostgreSQL refuses (the embedded test server trusts every local login, so this one is
    built by hand); the URL's own password is never shown."""
    refused = asyncpg.InvalidPasswordError('password authentication failed for user "app"')
    failure = database_failure(refused, "postgresql+asyncpg://app:hunter2@db.example:5432/app")
    assert failure is not None
    assert failure.cause == (
        'PostgreSQL at app@db.example:5432 refused the login: password authentication failed for user "app"'
    )
    assert failure.fix is not None and "user and password in DATABASE_URL" in failure.fix
    assert "hunter2" not in " ".join(failure.lines())


def test_cli_names_a_data_dir_it_cannot_use(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    done = collab("migrate", data_dir=not_a_folder)
    assert_explained(done, f"cannot use DATA_DIR='{not_a_folder}'", "Point DATA_DIR at a folder")
