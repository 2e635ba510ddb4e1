"""The whole engine on the memory log: real components, sessions, hub and delivery order, no
PostgreSQL and no HTTP. A `Client` is a connection whose frames land in a list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson

from engine.config import EngineConfig
from engine.features.limits import RateLimits
from engine.features.storage import FileStorage
from engine.log.memory import MemoryEventStore
from engine.model.actors import Actor, Role
from engine.service import Engine
from engine.session import Close


class Client:
    def __init__(self, engine: Engine, actor: Actor) -> None:
        self.engine = engine
        self.actor = actor
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self._arrived = asyncio.Event()
        self.session = engine.open_session(actor, self._sink, self._close)

    @property
    def connection_id(self) -> str:
        return self.session.connection_id

    async def _sink(self, text: str) -> None:
        self.frames.append(orjson.loads(text))
        self._arrived.set()

    async def until(self, done: Callable[[dict[str, Any]], bool]) -> None:
        """Wait (at most five seconds: a guard against a hang, not a speed check) until a frame that
        `done` accepts has arrived."""
        async with asyncio.timeout(5):
            while not any(done(frame) for frame in self.frames):
                self._arrived.clear()
                await self._arrived.wait()

    async def _close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def send(self, message: dict[str, Any] | bytes) -> Close | None:
        """One frame in; returns when it is answered and every queue it fed has been sent."""
        frame = message if isinstance(message, bytes) else orjson.dumps(message)
        verdict = await self.session.receive(frame)
        await self.session.answered()
        await settle(self.engine)
        return verdict

    def take(self) -> list[dict[str, Any]]:
        """What arrived since the last take."""
        taken, self.frames = self.frames, []
        return taken

    def types(self) -> list[str]:
        return [frame["type"] for frame in self.take()]


async def settle(engine: Engine) -> None:
    """Wait until every connection's queue has been sent."""
    for connection in engine.node.connections:
        try:
            await engine.flush(connection.connection_id)
        except Exception:  # closed meanwhile: nothing left to send
            continue


@asynccontextmanager
async def memory_engine(
    log: MemoryEventStore | None = None, *, file_storage: FileStorage | None = None, **config: Any
) -> AsyncIterator[Engine]:
    """A started engine on a memory log (a fresh one unless given; config: EngineConfig fields), with
    `file_storage` for REST bodies (`Engine.store_file`) when given."""
    config.setdefault("rate_limits", RateLimits(per_minute=10_000, per_hour=100_000))
    store = log if log is not None else MemoryEventStore()
    engine = Engine(EngineConfig(**config), log=store, file_storage=file_storage)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


async def connect(engine: Engine, user_id: str, *roles: Role, **claims: Any) -> Client:
    """A connected client whose `connected` greeting was already read."""
    actor = Actor(user_id, claims.pop("username", user_id), roles=roles or ("editor",), **claims)
    client = Client(engine, actor)
    await client.session.open()
    await settle(engine)
    assert client.types() == ["connected"]
    return client
