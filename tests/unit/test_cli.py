"""The `collab` CLI as a person runs it: a real subprocess, a real data folder, real JWT decoding."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from api.tokens import parse_ttl

ROOT = Path(__file__).resolve().parents[2]


def collab(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "DATABASE_URL"))}
    environ.update(DATA_DIR=str(data_dir), **env)
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


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
