"""What `collab` tells a person when something they can fix goes wrong: the cause, then the fix.

A traceback answers "where in the code", which a user who mistyped DATABASE_URL cannot act on. Each
failure a user can cause is turned here into a `CliFailure` of one or two lines; `collab` prints it and
exits 1, and shows the traceback as well only with LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import ValidationError

# Settings whose value must never be echoed: a password inside a URL, keys.
_SECRET_SETTINGS = frozenset({"DATABASE_URL", "JWT_SECRET_KEY", "AI_API_KEY"})
_MAX_SHOWN_VALUE = 60
_EMBEDDED_HINT = "unset DATABASE_URL to use the embedded PostgreSQL instead"


class CliFailure(Exception):
    """A failure explained for the person at the terminal: what went wrong, and what to do about it."""

    def __init__(self, cause: str, fix: str | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix

    def lines(self) -> list[str]:
        return [f"collab: {self.cause}", *([f"  {self.fix}"] if self.fix else [])]


def invalid_settings(exc: ValidationError) -> CliFailure:
    """A setting the environment or .env gives that the settings refuse, named by its variable."""
    problems = []
    for error in exc.errors():
        loc = error.get("loc") or ()
        name = str(loc[0]).upper() if loc else None
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if name is None:  # a rule across settings; its message names them
            problems.append(message)
            continue
        if message[1:2].islower():  # "Input should be ..." reads on after a colon; "NODE_..." stays
            message = message[:1].lower() + message[1:]
        shown = "" if name in _SECRET_SETTINGS else _shown_value(error.get("input"))
        problems.append(f"{name}{shown}: {message}")
    return CliFailure(
        f"invalid setting: {'; '.join(problems)}",
        "Fix it in the environment or in .env; the README's settings table lists every setting.",
    )


def _shown_value(value: Any) -> str:
    if not isinstance(value, str | int | float | bool):
        return ""
    text = str(value)
    if len(text) > _MAX_SHOWN_VALUE:
        text = text[:_MAX_SHOWN_VALUE] + "..."
    return f"={text!r}"


def describe_server(url: str) -> str:
    """Where a URL points, without password or database: `user@host:port` (or the socket folder)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    socket_dir = parsed.query.get("host")
    where = parsed.host or (socket_dir if isinstance(socket_dir, str) else "localhost")
    if parsed.port:
        where += f":{parsed.port}"
    return f"{parsed.username}@{where}" if parsed.username else where


def database_failure(exc: BaseException, url: str, *, named: str = "DATABASE_URL") -> CliFailure | None:
    """The failure to show for `exc` raised while talking to the database at `url`, or None when it is
    not one a user can fix from the outside (a bug: the caller lets it through). `named` is where the
    user gave the URL, so the fix sends them there (the embedded server is offered for DATABASE_URL)."""
    where = describe_server(url)
    embedded = f"; {_EMBEDDED_HINT}" if named == "DATABASE_URL" else ""
    for cause in _causes(exc):
        if isinstance(cause, asyncpg.InvalidCatalogNameError):
            name = _database_name(url)
            return CliFailure(
                f"{cause} on the PostgreSQL at {where}",
                f"Create it (createdb {name}, or CREATE DATABASE {name}) or fix the database name in "
                f"{named}{embedded}.",
            )
        if isinstance(cause, asyncpg.InvalidAuthorizationSpecificationError):
            return CliFailure(
                f"PostgreSQL at {where} refused the login: {cause}",
                f"Fix the user and password in {named} (postgresql://USER:PASSWORD@HOST:PORT/DATABASE).",
            )
        if isinstance(cause, asyncpg.CannotConnectNowError):
            return CliFailure(
                f"PostgreSQL at {where} is starting up or shutting down ({cause})",
                "Try again in a moment.",
            )
        reason = _unreachable_reason(cause)
        if reason is not None:
            return CliFailure(
                f"cannot reach PostgreSQL at {where} ({reason})",
                f"Start it, or fix the host and port in {named}{embedded}.",
            )
        if isinstance(cause, asyncpg.PostgresError):
            return CliFailure(
                f"PostgreSQL at {where} refused a statement: {cause}",
                f"Check that the user in {named} may create and alter tables in that database.",
            )
    return None


def _unreachable_reason(cause: BaseException) -> str | None:
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused: nothing listens there"
    if isinstance(cause, socket.gaierror):
        return "host name not found"
    if isinstance(cause, TimeoutError):
        return "timed out"
    if isinstance(cause, FileNotFoundError):  # a Unix socket path with no server behind it
        return "no server socket in that folder"
    if isinstance(cause, OSError) and cause.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "no route to the host"
    return None


def _database_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database or "DATABASE"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: SQLAlchemy hides asyncpg's error behind its own DBAPIError."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


@contextmanager
def talking_to_database(url: str, *, named: str = "DATABASE_URL") -> Iterator[None]:
    """Inside the block, a failure to reach or use the database at `url` (given as `named`) becomes a
    CliFailure."""
    try:
        yield
    except CliFailure:
        raise  # explained already, perhaps of another database: its chained cause must not re-blame this one
    except Exception as exc:
        failure = database_failure(exc, url, named=named)
        if failure is None:
            raise
        raise failure from exc


@contextmanager
def starting_embedded_postgres(data_dir: Path) -> Iterator[None]:
    """The embedded server's start failing (a damaged or foreign data folder) becomes a CliFailure."""
    pgdata = (data_dir / "pg").resolve()
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise _embedded_failure(pgdata, exc) from exc
        raise CliFailure(
            f"cannot use DATA_DIR={str(data_dir)!r}: {exc.strerror}: {exc.filename}",
            "Point DATA_DIR at a folder you may write, or set DATABASE_URL to use another PostgreSQL.",
        ) from exc
    except Exception as exc:
        raise _embedded_failure(pgdata, exc) from exc


def _embedded_failure(pgdata: Path, exc: BaseException) -> CliFailure:
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return CliFailure(
        f"the embedded PostgreSQL in {pgdata} did not start: {first_line}",
        f"Its log is {pgdata / 'log'}; move {pgdata} aside for a fresh one, or set DATABASE_URL.",
    )


def check_port_free(host: str, port: int) -> None:
    """Fail now, before the database starts and the banner prints, if uvicorn could not bind.

    Binds the way uvicorn does (address family by the host's form, SO_REUSEADDR so a port in TIME_WAIT
    is not taken for busy) and lets go; a server that grabs the port in between still fails in uvicorn.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise _bind_failure(host, port, exc) from exc


def _bind_failure(host: str, port: int, exc: OSError) -> CliFailure:
    if exc.errno == errno.EADDRINUSE:
        return CliFailure(
            f"port {port} on {host} is already in use (another collab serve or make run?)",
            f"Stop that process, or choose another port: collab serve --port {port + 1} "
            f"(make run PORT={port + 1}).",
        )
    if exc.errno == errno.EACCES:
        return CliFailure(
            f"no permission to listen on port {port}", "Choose a port above 1023 (--port 8000)."
        )
    reason = exc.strerror or str(exc)
    return CliFailure(
        f"cannot listen on {host}:{port}: {reason}",
        "Use an address of this machine: --host 127.0.0.1 (this machine only) or --host 0.0.0.0 (all).",
    )


__all__ = [
    "CliFailure",
    "check_port_free",
    "database_failure",
    "describe_server",
    "invalid_settings",
    "starting_embedded_postgres",
    "talking_to_database",
]
