"""`GET /api/v1/ws/health` and the engine's database check, against a real and a vanished database."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from engine.service import Engine, EngineConfig
from tests.api.conftest import Server, make_settings, serve
from tests.fault_proxy import FaultProxy

HANG_GUARD = 30  # seconds; generous on purpose: these tests check an answer comes, not its speed


def closed_port_url() -> str:
    """A PostgreSQL URL on a loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql+asyncpg://postgres:pw@127.0.0.1:{port}/postgres"


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[FaultProxy]:
    relay = FaultProxy(database_url)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.cut()


async def get_health(server: Server) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        return await http.get("/api/v1/ws/health")


async def test_health_reports_healthy_when_the_database_answers(server: Server) -> None:
    response = await get_health(server)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["database"] == "ok"
    assert body["timestamp"].endswith("Z")


async def test_health_reports_unhealthy_quickly_when_the_database_goes_away_and_recovers(
    proxy: FaultProxy,
) -> None:
    async with serve(make_settings(proxy.url)) as server:
        assert (await get_health(server)).status_code == 200

        await proxy.cut()
        # A hang guard, not a speed check: a health check that never answers is the failure.
        async with asyncio.timeout(HANG_GUARD):
            response = await get_health(server)
        assert response.status_code == 503
        assert response.json()["status"] == "unhealthy"
        assert response.json()["database"] == "unreachable"

        await proxy.restore()
        assert (await get_health(server)).status_code == 200  # the pool reconnects by itself


async def test_engine_health_is_false_for_an_unreachable_database() -> None:
    engine = Engine(EngineConfig(closed_port_url(), health_timeout=2.0))
    await engine.start()
    try:
        async with asyncio.timeout(HANG_GUARD):  # bounded by health_timeout, never a hang
            assert await engine.health() is False
    finally:
        await engine.stop()


async def test_app_refuses_to_start_without_its_database() -> None:
    """The schema must be at head before the first message, so a node that cannot reach PostgreSQL
    at start does not come up at all (and a load balancer never routes to it).

    Driven through the lifespan directly: uvicorn answers a failed startup with `sys.exit`, which
    would end the test session rather than this test.
    """
    app = create_app(make_settings(closed_port_url()))
    with pytest.raises(OSError):
        async with app.router.lifespan_context(app):
            pass
