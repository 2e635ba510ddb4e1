"""One router per resource, mounted under `/api/v1` by the app factory."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import (
    connections,
    files,
    health,
    history,
    management,
    notifications,
    rooms,
    stats,
    websocket,
)

API_PREFIX = "/api/v1"


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(health.router)
    router.include_router(websocket.router)
    router.include_router(stats.router)
    router.include_router(history.router)
    router.include_router(notifications.router)
    router.include_router(files.router)
    router.include_router(management.router)
    router.include_router(connections.router)
    router.include_router(rooms.router)
    return router
