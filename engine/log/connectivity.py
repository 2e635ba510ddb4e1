"""Telling "the database is unreachable" from "the database refused this statement".

The first is retryable and reported to clients as `StoreUnavailable` (INTERNAL_ERROR with
`retryable: true`, HTTP 503); the second is a bug or bad input and must not be dressed up as an outage.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from sqlalchemy import exc as sa_exc

from engine.model.errors import StoreUnavailable

# asyncpg's own: the socket is gone, the server is shutting down or starting, or a connection failed.
_LOST_CONNECTION = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)


def is_connectivity_error(error: BaseException) -> bool:
    """True when the database could not be reached or the connection broke, as opposed to a
    statement that PostgreSQL refused.

    The causes are walked because SQLAlchemy wraps asyncpg's errors in a plain `DBAPIError` (e.g. a
    connect refused with "the database system is shutting down" during a restart). asyncpg's client-side
    `InterfaceError` ("connection is closed") and `InternalClientError` (a protocol state left behind by
    a terminated session) also mean the connection, not the statement: the writer drops it either way.
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (OSError, TimeoutError, sa_exc.TimeoutError, *_LOST_CONNECTION)):
            return True
        # asyncpg's DataError and ClientConfigurationError are ValueErrors too: bad input, not the link.
        client_side = isinstance(seen, asyncpg.InterfaceError | asyncpg.InternalClientError)
        if client_side and not isinstance(seen, ValueError):
            return True
        if isinstance(seen, sa_exc.DBAPIError) and (
            seen.connection_invalidated or isinstance(seen, sa_exc.OperationalError | sa_exc.InterfaceError)
        ):
            return True
        seen = seen.__cause__
    return False


@contextmanager
def unreachable_as_unavailable(what: str = "the event log") -> Iterator[None]:
    """Re-raise a connectivity failure inside the block as StoreUnavailable; anything else as it is."""
    try:
        yield
    except Exception as exc:
        if is_connectivity_error(exc):
            raise StoreUnavailable(f"{what} is unreachable: {type(exc).__name__}") from exc
        raise


__all__ = ["is_connectivity_error", "unreachable_as_unavailable"]
