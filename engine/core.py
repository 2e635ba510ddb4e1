"""`EngineCore`: what every message handler of the `Engine` (engine/service.py) stands on: the pool, the
event store, the appender, the hub, the node's connections, and `commit`, which appends an event and
publishes it.

Lifecycle: `await start()`, then `connect(actor, sink, close)` per socket and `disconnect(connection_id)`
when it closes, and finally `await stop()`.

Presence has no ghosts: every room a connection joined gets a `UserLeftRoom` when the connection goes
away, whether the client closed it, the network dropped it or the server is shutting down, and the
remaining members hear of it. A node that dies without running `stop()` leaves its connections
joined until a survivor notices its silent heartbeat and appends those leaves (engine/cluster/reaper.py).

Every committed event, this node's or another's, is published in log position order
(engine/fanout/delivery_order.py); other nodes' events arrive through the log follower
(engine/cluster/follower.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.cluster.follower import LogFollower
from engine.cluster.rate_sync import RateLimitSync
from engine.cluster.reaper import dead_nodes, leaves_for, mark_stopped
from engine.cluster.registry import NodeRegistry
from engine.fanout.delivery_order import DeliveryOrder
from engine.fanout.hub import Hub, Subscriber, SubscriberClosed
from engine.fanout.live import Live, recorded
from engine.fanout.subscriber import CLOSE_SERVICE_RESTART, Close, Sink
from engine.features.ai import AiProvider
from engine.features.ai.runner import AiRunner
from engine.features.limits import RateLimiter, RateLimits
from engine.features.typing_sweeper import TypingSweeper
from engine.log.appender import Appender, is_connectivity_error
from engine.log.store import EventStore, create_db_engine, libpq_dsn
from engine.model.actors import Actor
from engine.model.catalogue import DISCONNECTED, UserLeftRoom
from engine.model.errors import StoreUnavailable
from engine.model.events import AppendOutcome, Committed, Conflict, NewEvent, Origin, RecordedEvent, Refused
from engine.model.streams import is_engine_stream, room_stream, user_stream
from engine.projections.rooms import RoomView, project
from engine.protocol.rendering import encode
from engine.readmodels.runner import ProjectorRunner

log = logging.getLogger(__name__)


_READ_PAGE = 1000


def default_node_id() -> str:
    """Host, pid and a random suffix: unique across restarts that reuse a pid (containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _Connection:
    actor: Actor
    # Rooms this connection may have joined: added before the join's append, whose outcome may be
    # unknown (a timeout), so that its departure always records the leave. A leave for a join that
    # never committed is harmless; a missing leave is a ghost.
    rooms: set[str] = field(default_factory=set)


class EngineCore:
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
        max_queue: int = 1024,
        rate_limits: RateLimits | None = None,
        typing_timeout: float = 5.0,
        ai_provider: AiProvider | None = None,
        room_auto_create: bool = True,
        node_heartbeat: float = 5.0,
        node_dead_after: float = 15.0,
        rate_limit_sync: float = 1.0,
    ) -> None:
        self.database_url = database_url
        # NODE_HEARTBEAT_SECONDS / NODE_DEAD_AFTER_SECONDS (engine/cluster/registry.py): a node silent for
        # longer than the second is dead, and a survivor records its connections' departures.
        self._node_heartbeat = node_heartbeat
        self._node_dead_after = node_dead_after
        self._rate_limit_sync = rate_limit_sync  # RATE_LIMIT_SYNC_SECONDS (engine/cluster/rate_sync.py)
        self.rate_sync: RateLimitSync | None = None
        # ROOM_AUTO_CREATE: whether a join_room of a room with no events creates it (engine/service.py).
        self.room_auto_create = room_auto_create
        self.node_id = node_id or default_node_id()
        self.health_timeout = health_timeout
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._append_timeout = append_timeout
        self._pool_size = pool_size
        self._max_queue = max_queue
        self._db_engine: AsyncEngine | None = None
        self._store: EventStore | None = None
        self._appender: Appender | None = None
        self._live: Live | None = None
        self._connections: dict[str, _Connection] = {}
        self._sheet_rooms: dict[str, str] = {}  # sheet -> the room of its first edit (never changes)
        # Per user on this node (engine/features/limits.py); checked before a message reaches a handler.
        self.rate_limiter = RateLimiter(rate_limits or RateLimits())
        self.typing_sweeper = TypingSweeper(self.commit, typing_timeout)  # engine/features/typing_sweeper.py
        self.ai = AiRunner(
            self, ai_provider
        )  # ai_request / ai_cancel (engine/features/ai/runner.py); default builtin
        self.projector: ProjectorRunner | None = None  # engine/readmodels/runner.py, from start()
        # Cross-node delivery (engine/fanout/delivery_order.py, engine/cluster/follower.py), from start().
        self.order: DeliveryOrder | None = None
        self.nodes: NodeRegistry | None = None
        self.follower: LogFollower | None = None

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
        self._live = Live(Hub(max_queue=self._max_queue))
        self.ai.register(self._live)
        await self._appender.start()
        # Everything committed from here on is published here in position order, whichever node
        # wrote it: this node's commits by `commit`, other nodes' by the follower.
        self.order = DeliveryOrder(self._publish_committed, await self._head(), on_gap=self._read_log)
        self.nodes = NodeRegistry(
            self._db_engine,
            self.node_id,
            interval=self._node_heartbeat,
            dead_after=self._node_dead_after,
            after_beat=self._record_dead_nodes_departures,
            on_reaped=self._drop_reaped_connections,
            report=self._node_report,
        )
        await self.nodes.start()
        self.follower = LogFollower(self._store, self.order, libpq_dsn(self.database_url), self.nodes)
        await self.follower.start()
        self.rate_sync = RateLimitSync(
            self._db_engine, self.rate_limiter, self.node_id, interval=self._rate_limit_sync
        )
        self.rate_sync.start()
        self.typing_sweeper.start()
        # Keeps the projection tables behind the log; only one node's runner projects at a time.
        self.projector = ProjectorRunner(self._db_engine)
        self.projector.start()

    async def stop(self) -> None:
        """Record the departure of connections still open, commit what is queued, close the pool."""
        # Nobody is left to tell: the hub goes first, and the leaves go in one batch (at shutdown
        # there may be thousands, and each would be a commit).
        await self.typing_sweeper.stop()
        await self.ai.stop()  # running AI requests are recorded as failed while the hub still publishes
        if self._live is not None:
            await self._live.hub.aclose()
        leaves = [leave for cid in list(self._connections) for leave in self._forget(cid)]
        if leaves:
            try:
                await self._running_appender().append_many(leaves)
            except StoreUnavailable as exc:
                log.error("could not record %d departures at shutdown: %s", len(leaves), exc)
        if self._appender is not None:
            await self._appender.stop()
        if self.projector is not None:
            await self.projector.stop()
        if self.rate_sync is not None:
            await self.rate_sync.stop()
            self.rate_sync = None
        if self.follower is not None:
            await self.follower.stop()
        if self.nodes is not None:
            await self.nodes.stop()
        self.follower = self.nodes = self.order = None
        if self._db_engine is not None:
            await self._db_engine.dispose()
        self._appender = self._store = self._db_engine = self._live = None

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
    def live(self) -> Live:
        if self._live is None:
            raise StoreUnavailable("the engine is not started")
        return self._live

    @property
    def hub(self) -> Hub:
        return self.live.hub

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # Connections.

    def connect(self, actor: Actor, sink: Sink, close: Close) -> str:
        """Register a new connection of `actor` and subscribe it to the hub, in its user's topic (so
        all their tabs hear of their own stream); returns its id. From here on every frame to it goes
        through `reply` or a publish, so one sender task orders them all."""
        connection_id = f"ws_{uuid.uuid4().hex}"
        self.hub.subscribe(connection_id, sink, close)
        self.hub.join(connection_id, user_stream(actor.user_id))
        self._connections[connection_id] = _Connection(actor)
        # Tracked from now: the next rate-limit exchange brings what other nodes counted for the user.
        self.rate_limiter.touch(actor.user_id)
        return connection_id

    async def reply(self, connection_id: str, *messages: dict[str, Any]) -> None:
        """Queue messages for one connection, behind what is queued for it. Raises SubscriberClosed."""
        await self._subscriber(connection_id).send(encode(list(messages)))

    async def flush(self, connection_id: str) -> None:
        """Wait until what is queued for the connection has been sent (before closing it directly)."""
        await self._subscriber(connection_id).flush()

    async def disconnect(self, connection_id: str) -> None:
        """Unsubscribe, forget the connection, and append (and publish) `UserLeftRoom` for every room
        it joined.

        Never raises for a store outage: the socket is gone either way. The leaves are then missing
        from the log, which the log says loudly; the node sweep will append them later.
        """
        if self._live is not None:
            await self._live.hub.unsubscribe(connection_id)
        connection = self._connections.get(connection_id)
        leaves = self._forget(connection_id)
        # One commit call per leave, each awaiting its own append: callers resume in commit order,
        # which `commit`'s publish needs (engine/fanout/live.py); a gathered batch would resume late.
        outcomes = await asyncio.gather(*(self.commit(leave) for leave in leaves), return_exceptions=True)
        for leave, outcome in zip(leaves, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("could not record the departure from %s: %s", leave.stream_id, outcome)
        if connection is not None and self._live is not None:
            user_id = connection.actor.user_id
            if not any(c.actor.user_id == user_id for c in self._connections.values()):
                self._live.forget_user(user_id)

    async def sheet_room(self, sheet_id: str) -> str | None:
        """The room of the sheet's first edit (None: never edited). Cached once known: a sheet's
        room never changes, so the cache can never be stale."""
        room = self._sheet_rooms.get(sheet_id)
        if room is None:
            room = await self.store.sheet_room(sheet_id)
            if room is not None:
                self._sheet_rooms[sheet_id] = room
        return room

    async def room_view(self, room_id: str) -> RoomView:
        """The room projected from its whole stream (a replay; persisted projections come later)."""
        return project(await self._read_room(room_id), room_id)

    # Appending.

    async def commit(self, event: NewEvent) -> AppendOutcome:
        """Append `event` and, if it committed, publish it before anything else can run.

        Raises StoreUnavailable, or the Rejected of a decision made inside the append (a cell's
        VersionConflict). A Duplicate is returned unpublished: its original was published.
        """
        outcome = await self._running_appender().append(event)
        if isinstance(outcome, Committed):
            published = recorded(event, outcome)
            order = self._running_order()
            # Published before anything else can run: no await between the result and this, unless
            # another node committed positions just before ours, which the follower reads first.
            if not order.offer(published):
                try:
                    async with asyncio.timeout(self._append_timeout):
                        await self._read_up_to(order, published.position)
                except TimeoutError:
                    # Committed, but not yet published here: answering now would reply from a view
                    # without it. The client retries with its client_msg_id and gets the original seq.
                    raise StoreUnavailable(
                        f"committed at position {published.position}, but the log before it is unreadable"
                    ) from None
            self.typing_sweeper.observe(published)
            if self.follower is not None:
                self.follower.committed()
            if self.projector is not None:
                self.projector.wake()
        elif isinstance(outcome, Refused):  # a decision inside the append said no: nothing was written
            raise outcome.error
        elif isinstance(outcome, Conflict):  # no handler sets expected_version
            raise RuntimeError(f"unexpected conflict appending to {event.stream_id!r}: {outcome}")
        return outcome

    def origin(
        self, actor: Actor, connection_id: str | None = None, client_msg_id: str | None = None
    ) -> Origin:
        """Who causes an event through this node: a connection's message, or a REST call (no connection,
        so every connection of the user hears of it). `client_msg_id` is the idempotency key (per user)
        and is echoed in every message fanned out from the event."""
        via = "rest" if connection_id is None else None
        return Origin(self.node_id, actor.user_id, connection_id, client_msg_id, via)

    # Internals.

    def _connection_of(self, actor: Actor, connection_id: str) -> _Connection:
        connection = self._connections.get(connection_id)
        if connection is None or connection.actor.user_id != actor.user_id:
            raise ValueError(f"{connection_id!r} is not an open connection of {actor.user_id!r}")
        return connection

    def _subscriber(self, connection_id: str) -> Subscriber:
        """The connection's subscriber; SubscriberClosed once it is gone (closed, or the engine stopped)."""
        try:
            return self.hub.subscriber(connection_id)
        except (KeyError, StoreUnavailable):
            raise SubscriberClosed(connection_id) from None

    def _forget(self, connection_id: str, *, reason: str = DISCONNECTED) -> list[NewEvent]:
        """Drop the connection and return the `UserLeftRoom` events its departure needs."""
        connection = self._connections.pop(connection_id, None)
        if connection is None:
            return []
        actor = connection.actor
        origin = self.origin(actor, connection_id)
        return [
            UserLeftRoom(room_id, actor.user_id, connection_id, reason).new(origin)
            for room_id in sorted(connection.rooms)
        ]

    async def _head(self) -> int | None:
        """The log head, or None while the database is unreachable (the follower learns it later)."""
        try:
            async with asyncio.timeout(self.health_timeout):
                return await self.store.head()
        except Exception as exc:
            log.warning("log head unknown at start: %s: %s", type(exc).__name__, exc)
            return None

    async def _record_dead_nodes_departures(self) -> None:
        """Append the leaves of the connections of nodes that stopped heartbeating (node_reaper.py)."""
        if self._db_engine is None or self.nodes is None:
            return
        for dead in await dead_nodes(self._db_engine, self.node_id, self.nodes.dead_after):
            leaves = await leaves_for(self._db_engine, dead, self.node_id)
            outcomes = await asyncio.gather(*(self.commit(leave) for leave in leaves))
            await mark_stopped(self._db_engine, dead)
            self.nodes.gone(dead.node_id)
            recorded_here = sum(isinstance(outcome, Committed) for outcome in outcomes)
            log.warning(
                "node %s stopped heartbeating: %d departures of its connections recorded",
                dead.node_id,
                recorded_here,
            )

    def _node_report(self) -> Mapping[str, Any] | None:
        """This node's figures for its heartbeat row; the Engine's stats mixin provides them."""
        return None

    async def _drop_reaped_connections(self) -> None:
        """A peer recorded this node's connections as gone (it took this node for dead): close them
        with 1012 without appending their departures again; their clients reconnect and resume."""
        for connection_id in list(self._connections):
            del self._connections[connection_id]  # so `disconnect` appends no second leave
            with contextlib.suppress(KeyError, StoreUnavailable):
                self.hub.subscriber(connection_id).fail(CLOSE_SERVICE_RESTART)

    async def _read_up_to(self, order: DeliveryOrder, position: int) -> None:
        """Read the positions before `position` that another node (or a commit whose caller was gone)
        wrote, and publish them, so the held `position` goes out. The caller reads them itself rather
        than wait for the follower, which may be backing off after an outage."""
        while order.delivered is None or order.delivered < position:
            after = order.delivered if order.delivered is not None else position - 1
            try:
                page = await self.store.read_all(after=after, limit=position - after)
            except Exception as exc:  # a connection that died with the outage: the pool replaces it
                log.info("reading the log before %d failed: %s: %s", position, type(exc).__name__, exc)
                page = []
            order.offer_all(page)
            if not page:
                await asyncio.sleep(0.05)

    def _running_order(self) -> DeliveryOrder:
        if self.order is None:
            raise StoreUnavailable("the engine is not started")
        return self.order

    def _publish_committed(self, event: RecordedEvent) -> None:
        if self._live is not None and is_engine_stream(event.stream_id):
            self._live.publish(event)

    def _read_log(self) -> None:
        if self.follower is not None:
            self.follower.wake()

    def _running_appender(self) -> Appender:
        if self._appender is None:
            raise StoreUnavailable("the engine is not started")
        return self._appender

    async def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        """`EventStore.read_stream`, with an unreachable database reported as StoreUnavailable."""
        try:
            return await self.store.read_stream(stream_id, after_version=after_version, limit=limit)
        except Exception as exc:
            if is_connectivity_error(exc):
                raise StoreUnavailable(f"the event log is unreachable: {type(exc).__name__}") from exc
            raise

    async def _read_room(self, room_id: str, upto: int | None = None) -> list[RecordedEvent]:
        """The room's durable events, from the first up to seq `upto` (all when None)."""
        events: list[RecordedEvent] = []
        while upto is None or len(events) < upto:
            after = events[-1].stream_version if events else 0
            page = await self.read_stream(room_stream(room_id), after_version=after, limit=_READ_PAGE)
            events.extend(page)
            if len(page) < _READ_PAGE:
                break
        return events if upto is None else events[:upto]
