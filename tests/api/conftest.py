"""The real app on a real port: uvicorn serves `create_app(settings)` in this event loop, clients talk
to it over TCP with the `websockets` library and httpx, and the app uses the session's PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from api.app import create_app
from api.server import uvicorn_options
from api.settings import Settings
from api.tokens import mint_token
from bench.common import free_port
from engine.log.embedded_postgres import database_url_for
from engine.log.migrate import upgrade_to_head
from engine.log.store import EventStore
from engine.model.events import RecordedEvent
from engine.service import Engine
from tests.conftest import LOG_PARTITIONS, admin_execute, transactions_spanning_partitions

ROOT = Path(__file__).resolve().parents[2]
# Long enough for HS512 (64 bytes), so no test trips PyJWT's short-key warning.
SECRET = "test-secret-" + "k" * 64
ALLOWED_ORIGIN = "https://sheets.example"
RECEIVE_TIMEOUT = 5.0


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for a test app: nothing from a `.env` file, the test secret, the given database."""
    values: dict[str, Any] = {"database_url": database_url, "jwt_secret_key": SECRET, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass(frozen=True)
class Server:
    settings: Settings
    port: int
    app: Any = None  # the FastAPI app (its running engine: `engine`)

    @property
    def engine(self) -> Engine:
        """The app's running engine, for tests that look behind the API (its hub, its log)."""
        engine: Engine = self.app.state.engine
        return engine

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws"

    def token(self, sub: str = "user-1", **claims: Any) -> str:
        return mint_token(self.settings, sub=sub, secret=SECRET, **claims)

    def connect(self, token: str | None = None, **kwargs: Any) -> Any:
        """`websockets` connect to the app, the token in the query string when given."""
        url = self.ws_url if token is None else f"{self.ws_url}?token={token}"
        return connect(url, open_timeout=RECEIVE_TIMEOUT, **kwargs)


@asynccontextmanager
async def serve(settings: Settings, **app_options: Any) -> AsyncIterator[Server]:
    """Run the app under uvicorn on a free loopback port until the block ends (`app_options` go to
    `create_app`, e.g. `ai_provider`)."""
    app = create_app(settings, **app_options)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_level="warning",
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    app.state.request_exit = lambda: setattr(server, "should_exit", True)  # POST /ws/shutdown ends `serve`
    task = asyncio.create_task(server.serve())
    # uvicorn offers no event for "started", only the flag. A failed startup never sets it: uvicorn
    # answers it with sys.exit (which is why test_health.py drives a failing lifespan directly).
    async with asyncio.timeout(30):
        while True:
            if server.started:
                break
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Server(settings, port, app)
    finally:
        server.should_exit = True
        await task


async def start_node_process(
    database_url: str,
    *,
    uvicorn_log_level: str = "warning",
    output: Path | None = None,
    host: str = "127.0.0.1",
    enter: Sequence[str] = (),
    **settings: object,
) -> tuple[asyncio.subprocess.Process, int]:
    """A real server process (`uvicorn api.app:create_app --factory`, with uvicorn's own logging at
    `uvicorn_log_level`, its standard output and error to `output` when given) on `database_url`,
    listening on `host` (its command prefixed with `enter`: another host's namespace), once its health
    check answers 200; `settings` become its environment (`node_heartbeat_seconds=1` ->
    NODE_HEARTBEAT_SECONDS=1). The caller ends it."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": SECRET,
        **{name.upper(): str(value) for name, value in settings.items()},
    }
    with contextlib.ExitStack() as files:
        sink = files.enter_context(output.open("ab")) if output is not None else None
        proc = await asyncio.create_subprocess_exec(
            *enter, sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
            "--host", host, "--port", str(port), "--log-level", uvicorn_log_level,
            cwd=ROOT, env=env, stdout=sink, stderr=sink,
        )  # fmt: skip
    try:
        async with asyncio.timeout(60), httpx.AsyncClient() as http:
            while True:
                try:
                    if (await http.get(f"http://{host}:{port}/api/v1/ws/health")).status_code == 200:
                        return proc, port
                except httpx.TransportError:
                    pass
                assert proc.returncode is None, "the node process exited during start-up"
                await asyncio.sleep(0.1)
    except BaseException:  # not left running behind a test that never got it
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise


@asynccontextmanager
async def fresh_database(server_url: str, partitions: int = LOG_PARTITIONS) -> AsyncIterator[str]:
    """A database of its own, migrated (its log in `partitions` partitions), dropped afterwards: for
    nodes with short heartbeat settings, which would take the shared database's other servers
    (default heartbeat) for dead."""
    name = f"collab_nodes_{uuid.uuid4().hex[:10]}"
    await admin_execute(server_url, f'CREATE DATABASE "{name}"')
    url = database_url_for(server_url, name)
    await asyncio.to_thread(upgrade_to_head, url, partitions)
    try:
        yield url
        spanning = await transactions_spanning_partitions(url)
        assert not spanning, f"transactions that wrote several partitions: {spanning[:5]}"
    finally:
        await admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def server(database_url: str) -> AsyncIterator[Server]:
    # The suite reuses user ids across many tests within a minute, and some tests repeat a cursor move
    # in a loop faster than 30 a second: the seed's rate limits would refuse them here;
    # tests/api/test_websocket_rate_limits.py runs its own server with small limits.
    settings = make_settings(
        database_url,
        allowed_origins=[ALLOWED_ORIGIN],
        websocket_requests_per_minute=1_000_000,
        websocket_requests_per_hour=1_000_000,
        volatile_messages_per_second=1_000_000,
    )
    async with serve(settings) as running:
        yield running


@pytest.fixture
async def client(server: Server) -> AsyncIterator[ClientConnection]:
    """A connected, authenticated client whose `connected` greeting was already read."""
    async with server.connect(server.token("user-1", username="alice")) as ws:
        greeting = await receive(ws)
        assert greeting["type"] == "connected"
        yield ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT)
    message: dict[str, Any] = json.loads(raw)
    return message


async def request(ws: ClientConnection, message: dict[str, Any] | str | bytes) -> dict[str, Any]:
    """Send one message (a dict is sent as JSON text) and return the reply."""
    await ws.send(json.dumps(message) if isinstance(message, dict) else message)
    return await receive(ws)


async def wait_for_events(store: EventStore, stream_id: str, count: int) -> list[RecordedEvent]:
    """The stream once it holds at least `count` events; for effects that follow a socket's close,
    which the server records after the client has already seen the close."""
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while True:
            events = await store.read_stream(stream_id)
            if len(events) >= count:
                return events
            await asyncio.sleep(0.02)


@pytest.fixture
def room() -> str:
    """A room id no other test uses, so tests share one server and database without meeting."""
    return f"room-{uuid.uuid4().hex[:12]}"
