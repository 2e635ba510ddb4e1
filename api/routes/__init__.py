"""One router per resource, mounted under `/api/v1` by the app factory."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import health, websocket

API_PREFIX = "/api/v1"


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(health.router)
    router.include_router(websocket.router)
    return router
