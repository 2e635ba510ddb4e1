"""Which PostgreSQL to use: DATABASE_URL when given, else the embedded server in DATA_DIR.

Kept apart from the app factory so the CLI can resolve the URL once, in the parent process, and hand
it to uvicorn workers through the environment (each worker starting its own server would race).
"""

from __future__ import annotations

from api.settings import Settings
from engine.log.embedded_postgres import start_embedded_postgres

_ASYNC_SCHEME = "postgresql+asyncpg://"
# Schemes people paste from Heroku, docker-compose files and psql docs; all mean "PostgreSQL, default
# driver", and the engine only speaks asyncpg.
_PLAIN_SCHEMES = ("postgresql://", "postgres://")


def normalise_database_url(url: str) -> str:
    """Return `url` with a plain PostgreSQL scheme turned into the asyncpg one; others are kept as given."""
    url = url.strip()
    for scheme in _PLAIN_SCHEMES:
        if url.startswith(scheme):
            return _ASYNC_SCHEME + url[len(scheme) :]
    return url


def resolve_database_url(settings: Settings, *, stop_at_exit: bool = True) -> str:
    """The asyncpg URL to connect to, starting the embedded server when DATABASE_URL is unset.

    `stop_at_exit` is passed to the embedded server: the process that owns it (e.g. `collab serve`)
    stops it on exit; pass False when other processes will keep using it after this one ends.
    """
    if settings.database_url:
        return normalise_database_url(settings.database_url)
    return start_embedded_postgres(settings.data_dir, stop_at_exit=stop_at_exit)


__all__ = ["normalise_database_url", "resolve_database_url"]
