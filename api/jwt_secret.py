"""The HMAC key that signs and verifies JWTs: JWT_SECRET_KEY, else one generated once per data folder.

A generated key lets `make run` work with no configuration while never shipping a hard-coded secret:
each checkout gets its own random key in DATA_DIR/jwt_secret (mode 0600), reused across restarts so
tokens printed by one run stay valid in the next.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from api.settings import Settings


class JwtSecretError(RuntimeError):
    """The secret file exists but cannot be used; the operator must fix or remove it."""


def _read_secret(path: Path) -> str:
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise JwtSecretError(f"{path} is empty; delete it to have a new secret generated")
    return secret


def _create_secret(path: Path) -> str:
    """Write a new random secret to `path` unless another process wins the race; return the one on disk.

    The secret is written to a private temporary file and then hard-linked into place: the link fails
    if the file already exists, so two processes starting at once (e.g. uvicorn workers, parallel
    tests) agree on one secret, and no reader ever sees a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read_secret(path)
        except OSError:
            # Some filesystems (certain container mounts) refuse hard links; an exclusive create still
            # keeps one winner, only a concurrent reader could then see the file before it is written.
            return _write_exclusive(path, secret)
    finally:
        tmp.unlink(missing_ok=True)
    return secret


def _write_exclusive(path: Path, secret: str) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    return secret


def resolve_jwt_secret(settings: Settings) -> str:
    """The signing key: JWT_SECRET_KEY if set, else DATA_DIR/jwt_secret, created on first use."""
    if settings.jwt_secret_key:
        return settings.jwt_secret_key
    path = settings.secret_file
    try:
        return _read_secret(path)
    except FileNotFoundError:
        return _create_secret(path)


__all__ = ["JwtSecretError", "resolve_jwt_secret"]
