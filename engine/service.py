"""`Engine`: the one object the api holds. It owns the database pool, the event store and the appender,
and turns what connections do into events.

Lifecycle: `Engine(url, ...)`, `await start()`, then `connect(actor)` per socket, `join_room(...)` per
message, `disconnect(connection_id)` when the socket closes, and finally `await stop()`.

Presence has no ghosts: every room a connection joined gets a `UserLeftRoom` when the connection goes
away, whether the client closed it, the network dropped it or the server is shutting down. (A node
that dies without running `stop()` leaves its connections joined; the node heartbeat sweep planned in
DESIGN.md, principle 7, will append those leaves from a surviving node.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.actors import Actor
from engine.appender import Appender, is_connectivity_error
from engine.errors import PermissionDenied, StoreUnavailable, ValidationFailed
from engine.events import USER_JOINED_ROOM, USER_LEFT_ROOM, NewEvent, RecordedEvent, room_stream
from engine.messages import MAX_ROOM_ID_LENGTH
from engine.projections.rooms import DISCONNECTED, RoomView, project
from engine.store import EventStore, create_db_engine

__all__ = ["Actor", "Engine"]

log = logging.getLogger(__name__)

_READ_PAGE = 1000


def default_node_id() -> str:
    """Host, pid and a random suffix: unique across restarts that reuse a pid (containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _Connection:
    actor: Actor
    rooms: set[str] = field(default_factory=set)


class Engine:
    def __init__(
        self,
        database_url: str,
        *,
        max_batch: int = 1000,
        max_wait: float = 0.0,
        append_timeout: float = 5.0,
        pool_size: int = 10,
        health_timeout: float = 2.0,
        node_id: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.node_id = node_id or default_node_id()
        self.health_timeout = health_timeout
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._append_timeout = append_timeout
        self._pool_size = pool_size
        self._db_engine: AsyncEngine | None = None
        self._store: EventStore | None = None
        self._appender: Appender | None = None
        self._connections: dict[str, _Connection] = {}

    # Lifecycle.

    async def start(self) -> None:
        # The pool's command timeout matches the append timeout: a caller never waits on a statement
        # longer than it was promised an answer.
        self._db_engine = create_db_engine(
            self.database_url, pool_size=self._pool_size, command_timeout=self._append_timeout
        )
        self._store = EventStore(self._db_engine)
        self._appender = Appender(
            self._store, max_batch=self._max_batch, max_wait=self._max_wait, timeout=self._append_timeout
        )
        await self._appender.start()

    async def stop(self) -> None:
        """Record the departure of connections still open, commit what is queued, close the pool."""
        # One batch for all of them: at shutdown there may be thousands, and each would be a commit.
        leaves = [leave for cid in list(self._connections) for leave in self._forget(cid)]
        await self._append_leaves(leaves)
        if self._appender is not None:
            await self._appender.stop()
        if self._db_engine is not None:
            await self._db_engine.dispose()
        self._appender = self._store = self._db_engine = None

    async def health(self) -> bool:
        """Whether PostgreSQL answers `SELECT 1` within `health_timeout` seconds.

        Bounded on purpose: a health check that hangs while the database is unreachable is reported by
        the load balancer as a timeout, not as "unhealthy", and takes the node out too late.
        """
        if self._db_engine is None:
            return False
        try:
            async with asyncio.timeout(self.health_timeout), self._db_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means unhealthy; the reason goes to the log
            log.warning("health check failed: %s: %s", type(exc).__name__, exc)
            return False
        return True

    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise StoreUnavailable("the engine is not started")
        return self._store

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # Connections.

    def connect(self, actor: Actor) -> str:
        """Register a new connection of `actor`; returns its id (the `connection_id` of `connected`)."""
        connection_id = f"ws_{uuid.uuid4().hex}"
        self._connections[connection_id] = _Connection(actor)
        return connection_id

    async def join_room(
        self, actor: Actor, room_id: str, connection_id: str, *, client_msg_id: str | None = None
    ) -> RoomView:
        """Append `UserJoinedRoom` and return the room as of (at least) that event.

        Raises ValidationFailed, PermissionDenied, or StoreUnavailable (retryable).
        """
        connection = self._connection_of(actor, connection_id)
        if not room_id or len(room_id) > MAX_ROOM_ID_LENGTH:
            raise ValidationFailed(f"room_id must be 1 to {MAX_ROOM_ID_LENGTH} characters")
        if not actor.may_join(room_id):
            raise PermissionDenied(f"not allowed to join room {room_id!r}")
        # Remembered before the append, not after: if the append times out its outcome is unknown
        # (it may have committed), and a disconnect racing this call must still record the leave.
        # A leave for a join that never committed is harmless; a missing leave is a ghost.
        connection.rooms.add(room_id)
        metadata = {"user_id": actor.user_id, "connection_id": connection_id, "node": self.node_id}
        if client_msg_id is not None:
            metadata["client_msg_id"] = client_msg_id
        event = NewEvent(
            stream_id=room_stream(room_id),
            type=USER_JOINED_ROOM,
            data={
                "room_id": room_id,
                "user_id": actor.user_id,
                "username": actor.username,
                "email": actor.email,
                "connection_id": connection_id,
            },
            metadata=metadata,
            user_id=actor.user_id,
        )
        await self._running_appender().append(event)
        return await self.room_view(room_id)

    async def room_view(self, room_id: str) -> RoomView:
        """The room projected from its whole stream (a replay; persisted projections come later)."""
        return project(await self._read_room(room_id), room_id)

    async def disconnect(self, connection_id: str) -> None:
        """Forget the connection and append `UserLeftRoom` for every room it joined.

        Never raises for a store outage: the socket is gone either way. The leaves are then missing
        from the log, which the log says loudly; the node sweep will append them later.
        """
        await self._append_leaves(self._forget(connection_id))

    # Internals.

    def _connection_of(self, actor: Actor, connection_id: str) -> _Connection:
        connection = self._connections.get(connection_id)
        if connection is None or connection.actor.user_id != actor.user_id:
            raise ValueError(f"{connection_id!r} is not an open connection of {actor.user_id!r}")
        return connection

    def _forget(self, connection_id: str) -> list[NewEvent]:
        """Drop the connection and return the `UserLeftRoom` events its departure needs."""
        connection = self._connections.pop(connection_id, None)
        if connection is None:
            return []
        actor = connection.actor
        return [
            NewEvent(
                stream_id=room_stream(room_id),
                type=USER_LEFT_ROOM,
                data={
                    "room_id": room_id,
                    "user_id": actor.user_id,
                    "connection_id": connection_id,
                    "reason": DISCONNECTED,
                },
                metadata={"user_id": actor.user_id, "connection_id": connection_id, "node": self.node_id},
                user_id=actor.user_id,
            )
            for room_id in sorted(connection.rooms)
        ]

    async def _append_leaves(self, leaves: list[NewEvent]) -> None:
        if not leaves:
            return
        try:
            await self._running_appender().append_many(leaves)
        except StoreUnavailable as exc:
            rooms = sorted({leave.stream_id for leave in leaves})
            log.error("could not record %d departures from %s: %s", len(leaves), rooms, exc)

    def _running_appender(self) -> Appender:
        if self._appender is None:
            raise StoreUnavailable("the engine is not started")
        return self._appender

    async def _read_room(self, room_id: str) -> list[RecordedEvent]:
        events: list[RecordedEvent] = []
        try:
            while True:
                after = events[-1].stream_version if events else 0
                page = await self.store.read_stream(
                    room_stream(room_id), after_version=after, limit=_READ_PAGE
                )
                events.extend(page)
                if len(page) < _READ_PAGE:
                    return events
        except Exception as exc:
            if is_connectivity_error(exc):
                raise StoreUnavailable(f"the event log is unreachable: {type(exc).__name__}") from exc
            raise
