"""`create_app(settings)`: the FastAPI application, built on demand and never at import time.

Everything with a lifetime (database URL, schema, JWT secret, engine) is set up in the lifespan, so
each app has its own: uvicorn workers (`collab serve` uses the factory) and tests never share an
engine by accident, and importing this module touches neither the network nor the disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.auth import TokenVerifier
from api.database_url import resolve_database_url
from api.http_errors import install_error_handlers
from api.jwt_secret import resolve_jwt_secret
from api.logging_setup import install_redaction
from api.metrics import install_metrics
from api.middleware import install_middleware
from api.routes import api_router
from api.routes.pages import install_pages
from api.server import settle_heap
from api.settings import Settings, get_settings
from api.socket_entry import CollabApp
from engine.config import EngineConfig
from engine.features.ai import AiProvider, provider_from
from engine.features.limits import RateLimits
from engine.features.storage import LocalFileStorage
from engine.log.migrate import upgrade_to_head
from engine.service import Engine

log = logging.getLogger(__name__)


def engine_config(settings: Settings, database_url: str) -> EngineConfig:
    """The engine's configuration from the settings (the environment variables the README lists)."""
    return EngineConfig(
        database_url=database_url,
        max_batch=settings.append_max_batch,
        max_wait=settings.append_max_wait_ms / 1000,
        append_timeout=settings.append_timeout_seconds,
        pool_size=settings.db_pool_size,
        max_queue=settings.fanout_max_queue,
        heartbeat_interval=settings.websocket_ping_interval,
        heartbeat_timeout=settings.websocket_ping_timeout,
        max_message_bytes=settings.max_message_bytes,
        max_connections=settings.max_connections,
        max_connections_per_user=settings.max_connections_per_user,
        max_rooms_per_connection=settings.max_rooms_per_connection,
        bad_frames_per_window=settings.bad_frames_per_window,
        bad_frame_window=settings.bad_frame_window_seconds,
        room_auto_create=settings.room_auto_create,
        typing_timeout=settings.typing_timeout_seconds,
        upload_idle_timeout=settings.upload_idle_timeout_seconds,
        max_upload_bytes=settings.max_upload_bytes,
        max_cells_per_update=settings.max_cells_per_update,
        rate_limits=RateLimits(
            per_minute=settings.websocket_requests_per_minute,
            per_hour=settings.websocket_requests_per_hour,
            block_seconds=settings.websocket_block_duration_minutes * 60,
            volatile_per_second=settings.volatile_messages_per_second,
        ),
        node_heartbeat=settings.node_heartbeat_seconds,
        node_dead_after=settings.node_dead_after_seconds,
        rate_limit_sync=settings.rate_limit_sync_seconds,
        nats_url=settings.nats_url or "",
        route_appends=settings.route_appends,
        projection_interval=settings.projection_interval_ms / 1000,
    )


def create_app(
    settings: Settings | None = None,
    *,
    ai_provider: AiProvider | None = None,
    serving_process: bool = False,
) -> CollabApp:
    """The app for `settings` (default: from the environment); `ai_provider` replaces the one the
    AI_* settings name (tests). `serving_process`: the app owns its process (`collab serve`), so once
    started it may settle the process's heap (api/server.py); tests run many apps in one process."""
    settings = settings if settings is not None else get_settings()
    if ai_provider is None:
        ai_provider = provider_from(settings.ai_base_url, settings.ai_api_key, settings.ai_model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Whoever configured logging (`collab serve` already filters its handler, plain `uvicorn` does
        # not), no line may carry a token; by now the server has set up its handlers.
        install_redaction()
        # Both may block (starting the embedded server, Alembic's own event loop): off the loop.
        url = await asyncio.to_thread(resolve_database_url, settings)
        # Raises SchemaMismatch on a newer schema; a new log gets LOG_PARTITIONS partitions.
        await asyncio.to_thread(upgrade_to_head, url, settings.log_partitions)
        verifier = TokenVerifier(resolve_jwt_secret(settings), settings)
        engine = Engine(
            engine_config(settings, url),
            ai_provider=ai_provider,
            file_storage=LocalFileStorage(settings.data_dir / "files"),
        )
        await engine.start()
        app.state.settings = settings
        app.state.verifier = verifier
        app.state.engine = engine
        log.info("engine started (node %s)", engine.node_id)
        if serving_process:
            settle_heap()
        try:
            yield
        finally:
            await engine.stop()

    # FastAPI's own /docs and /redoc load from a CDN: api/routes/pages.py serves them from this server.
    app = CollabApp(title="collab-engine", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    install_middleware(app, settings)  # request ids, secure headers, CORS (api/middleware.py)
    install_metrics(app)  # GET /metrics, with this app's own registry (api/metrics.py)
    app.include_router(api_router())
    install_pages(app)  # /, /app, /console, /client, /docs, /redoc (api/routes/pages.py)
    app.enter_sockets_directly()  # past the HTTP-only layers (api/socket_entry.py)
    return app


def create_serving_app() -> CollabApp:
    """The app of a `collab serve` worker process."""
    return create_app(serving_process=True)


__all__ = ["create_app", "create_serving_app", "engine_config"]
