"""`GET /api/v1/ws/health`: whether this node can serve, for load balancers and monitors."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import EngineDep
from engine.protocol import iso

router = APIRouter(tags=["health"])


@router.get("/ws/health")
async def health(engine: EngineDep) -> JSONResponse:
    """200 when PostgreSQL answers, else 503, within the engine's health timeout: a node that cannot
    reach the log cannot accept a single message, so it must leave the load balancer's pool."""
    database_ok = await engine.health()
    healthy = database_ok and not engine.draining  # a node shutting down leaves the pool (POST /ws/shutdown)
    body = {
        "status": "healthy" if healthy else ("shutting_down" if engine.draining else "unhealthy"),
        "database": "ok" if database_ok else "unreachable",
        "node": engine.node_id,
        "connections": engine.connection_count,
        "timestamp": iso(datetime.now(UTC)),
    }
    return JSONResponse(body, status_code=200 if healthy else 503)
