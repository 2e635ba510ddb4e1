"""`Node`: the kernel every feature stands on. Its lifecycle, its connections, and the two things every
handler does: `commit` (append an event, then publish it before anything else can run) and `reply`
(queue messages for one connection behind what is queued for it).

    node = Node(config)
    await node.start()
    connection_id = node.connect(actor, sink, close)    # one per socket
    await node.commit(event)                            # appended, then published in position order
    await node.reply(connection_id, message)            # ordered with what was fanned out to it
    await node.disconnect(connection_id)                # its rooms are left
    await node.stop()

Presence has no ghosts: every room a connection joined gets a `UserLeftRoom` when the connection goes
away, whether the client closed it, the network dropped it or the server is shutting down. A node
that dies without running `stop()` leaves its connections joined until a survivor notices its silent
heartbeat and appends those leaves (engine/cluster/reaper.py).

Every committed event, this node's or another's, is published in log position order
(engine/fanout/delivery_order.py); other nodes' events arrive through the log follower
(engine/cluster/follower.py). The hub, the live views and the connections exist from construction,
so components can be wired to them; the database parts exist between `start` and `stop`.

Given a `log` (the memory store, engine/log/memory.py), a node runs without PostgreSQL: the same
appender, delivery order and publish path, and none of the parts that need a database (other
nodes, heartbeats, shared rate limits, projection tables). Tests drive the engine that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.cluster import reaper
from engine.cluster.bus import NatsBus, log_subject
from engine.cluster.control import ClusterControl
from engine.cluster.follower import LogFollower
from engine.cluster.rate_sync import RateLimitSync
from engine.cluster.registry import NodeRegistry, session_name
from engine.cluster.routed_appends import AppendRouting
from engine.config import EngineConfig
from engine.fanout.delivery_order import DeliveryOrder, DeliveryOrders
from engine.fanout.hub import Hub, Subscriber, SubscriberClosed
from engine.fanout.live import Live, recorded
from engine.fanout.subscriber import Close, Sink, WriteNow
from engine.features import stats
from engine.features.connections import Connections
from engine.features.limits import RateLimiter
from engine.features.ports import commit_leaves
from engine.features.traffic import EngineStats
from engine.log.appender import Appender
from engine.log.connectivity import is_connectivity_error, unreachable_as_unavailable
from engine.log.lifecycle import STOP_TIMEOUT, cancel_and_wait
from engine.log.store import EventLog, EventStore, create_db_engine, libpq_dsn
from engine.model.actors import Actor
from engine.model.catalogue import DISCONNECTED, SLOW_CONSUMER, USER_LEFT_ROOM, UserLeftRoom
from engine.model.errors import StoreUnavailable
from engine.model.events import AppendOutcome, Committed, Duplicate, NewEvent, Origin, RecordedEvent, Refused
from engine.model.streams import is_engine_stream, user_stream
from engine.projections.cells import SheetAtHead
from engine.projections.uploads import IdleOrder, Upload
from engine.protocol.close_codes import CloseCode
from engine.protocol.rendering import encode
from engine.readmodels import idle_uploads
from engine.readmodels.runner import ProjectorRunner

log = logging.getLogger(__name__)

# Server-side closes after which the connection leaves its rooms at once, not when its socket ends, and
# the reason its leaves record. Only a 4008 close (its queue over the limit) is for not keeping up; a
# send that failed (1011) is almost always a socket its peer closed or lost, which is a disconnect.
_LEAVE_AT_CLOSE: Final[Mapping[int, str]] = {
    CloseCode.SLOW_CONSUMER: SLOW_CONSUMER,
    CloseCode.INTERNAL_ERROR: DISCONNECTED,
}

PublishObserver = Callable[[RecordedEvent], None]
# How often the live state drops the rooms and users nobody here sees any more (Live.evict_idle).
EVICT_INTERVAL_SECONDS: Final = 60.0


def default_node_id() -> str:
    """Host, pid and a random suffix: unique across restarts that reuse a pid (containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Node:
    def __init__(self, config: EngineConfig, *, log: EventLog | None = None) -> None:
        self.config = config
        self._given_log = log
        self.node_id = config.node_id or default_node_id()
        self.live = Live(Hub(max_queue=config.max_queue), typing_timeout=config.typing_timeout)
        self.connections = Connections()
        # Per user on this node (features/limits.py), shared with the other nodes by `rate_sync`.
        self.rate_limiter = RateLimiter(config.rate_limits)
        self.traffic = EngineStats()  # messages by type, errors by code (features/traffic.py)
        self._observers: list[PublishObserver] = []
        self._taken_for_dead: list[Callable[[], None]] = []
        self._departing = 0  # connections whose departure is being recorded right now
        # Connections dropped because a peer took this node for dead (their leaves are in the log):
        # nothing more is appended in their names, also by a handler that was under way.
        self._reaped: set[str] = set()
        # Departures recorded in the background (`_in_background`), which a stop waits for.
        self._recording: set[asyncio.Task[None]] = set()
        self._stopping = False  # no more of those from then on
        self.held_reads = 0  # reads of the log by own commits waiting for earlier positions
        self._db_engine: AsyncEngine | None = None
        self._store: EventLog | None = None
        self._appender: Appender | None = None
        self.order: DeliveryOrders | None = None
        self.nodes: NodeRegistry | None = None
        self.follower: LogFollower | None = None
        self.control: ClusterControl | None = None  # requests to the other nodes
        self.rate_sync: RateLimitSync | None = None
        self.projector: ProjectorRunner | None = None
        self.routing: AppendRouting | None = None  # with ROUTE_APPENDS and a bus
        self._evicting: asyncio.Task[None] | None = None

    @property
    def hub(self) -> Hub:
        return self.live.hub

    def observe_taken_for_dead(self, callback: Callable[[], None]) -> None:
        """Call `callback` when this node learns that a peer took it for dead, before it drops its
        connections: a survivor has recorded the ends of what it was doing."""
        self._taken_for_dead.append(callback)

    def observe_published(self, observer: PublishObserver) -> None:
        """Call `observer` with each event this node publishes, its own commits and other nodes',
        in log order, right after its publish."""
        self._observers.append(observer)

    # Lifecycle.

    async def start(self) -> None:
        config = self.config
        if self._given_log is None:
            # The pool's command timeout matches the append timeout: a caller never waits on a
            # statement longer than it was promised an answer.
            self._db_engine = create_db_engine(
                config.database_url,
                pool_size=config.pool_size,
                command_timeout=config.append_timeout,
                application_name=session_name(self.node_id),
                vanish_within=config.node_dead_after,
            )
            self._store = EventStore(self._db_engine)
        else:
            self._store = self._given_log
        partitions: int | None = None
        try:
            partitions = await self._store.partitions()
        except Exception as error:
            if not is_connectivity_error(error):
                raise
            # Unreachable for now: the appender reads the count at its first append.
        self._appender = Appender(
            self._store,
            partitions=partitions,
            max_batch=config.max_batch,
            max_wait=config.max_wait,
            timeout=config.append_timeout,
            on_committed=self._announce,
            admits=self._admits,
        )
        await self._appender.start()
        # Everything committed from here on is published here in position order within each partition,
        # whichever node wrote it: this node's commits by `commit`, other nodes' by the follower.
        self.order = DeliveryOrders(self._publish_committed, await self._heads(), on_gap=self._read_log)
        self._evicting = asyncio.create_task(self._evict_idle(), name="live-evict")
        if self._db_engine is not None:
            await self._start_cluster(self._db_engine)

    async def _evict_idle(self) -> None:
        while True:
            await asyncio.sleep(EVICT_INTERVAL_SECONDS)
            try:
                self.live.evict_idle()
            except Exception:  # a bug here must not stop the sweeps after it
                log.exception("evicting idle rooms and users failed")

    async def _start_cluster(self, db_engine: AsyncEngine) -> None:
        """The parts that share this node with others through PostgreSQL."""
        config = self.config
        assert self._store is not None and self.order is not None
        bus = None
        if config.nats_url:
            # Pinged twice a heartbeat, a bus whose link went silent is given up within about two (the
            # pings at least 2 s apart: a loop stalled that long on a busy machine keeps its bus).
            ping = max(2, round(config.node_heartbeat / 2))
            bus = NatsBus(config.nats_url, partial(log_subject, db_engine), self.node_id, ping_interval=ping)
        # Whether this node writes its share of the partitions for the others: not while its bus has
        # been out of reach for a heartbeat, since nobody could ask it; the others then share it out.
        routes: bool | Callable[[], bool] = False
        if config.route_appends and bus is not None:
            routes = partial(bus.reachable, config.node_heartbeat)
        self.nodes = NodeRegistry(
            db_engine,
            self.node_id,
            interval=config.node_heartbeat,
            dead_after=config.node_dead_after,
            after_beat=self._record_dead_nodes_departures,
            on_reaped=self._drop_reaped_connections,
            report=self._heartbeat_report,
            session=session_name(self.node_id),
            routes=routes,  # as routing starts below
        )
        await self.nodes.start()
        self.follower = LogFollower(
            self.store, self.order, libpq_dsn(config.database_url), self.nodes, bus=bus
        )
        await self.follower.start()
        if config.route_appends and bus is not None:
            self.routing = AppendRouting(
                db_engine,
                self._running_appender(),
                bus,
                share=self.nodes.writing_standing,  # among the nodes that route, as this one does
                timeout=self._route_timeout,
                deliver=self.follower.offer_peers_events,
            )
            await self.routing.start()
            self._running_appender().route = self.routing
        self.control = ClusterControl(self.follower, self.nodes)
        await self.control.start()
        self.rate_sync = RateLimitSync(
            db_engine, self.rate_limiter, self.node_id, interval=config.rate_limit_sync
        )
        self.rate_sync.start()
        # Keeps the projection tables behind the log; the live nodes share its partitions.
        self.projector = ProjectorRunner(
            db_engine, min_interval=self.config.projection_interval, share=self.nodes.standing
        )
        self.projector.start()

    async def stop(self) -> None:
        """Record the departure of connections still open, commit what is queued, close the pool."""
        # Nobody is left to tell: the hub goes first, and the leaves go in one batch (at shutdown
        # there may be thousands, and each would be a commit).
        self._stopping = True
        if self._evicting is not None:
            await cancel_and_wait(self._evicting, STOP_TIMEOUT)
            self._evicting = None
        await self.hub.aclose()
        if self._recording:  # the leaves of connections dropped when this node was taken for dead
            await asyncio.wait(self._recording, timeout=STOP_TIMEOUT)
        # None starts from here on (`_stopping`), also from the registry's judging until it stops.
        await asyncio.gather(*(cancel_and_wait(task, STOP_TIMEOUT) for task in list(self._recording)))
        leaves = [leave for c in self.connections for leave in self.depart(c.connection_id)]
        if leaves:
            try:
                await self._running_appender().append_many(leaves)
            except StoreUnavailable as exc:
                log.error("could not record %d departures at shutdown: %s", len(leaves), exc)
        if self._appender is not None:
            await self._appender.stop()  # hands what it must to the partitions' writers: the bus is up
        for part in (self.routing, self.projector, self.rate_sync, self.follower, self.nodes):
            if part is not None:
                await part.stop()
        self.projector = self.rate_sync = self.follower = self.nodes = self.order = self.control = None
        self.routing = None
        if self._db_engine is not None:
            await self._db_engine.dispose()
        self._appender = self._store = self._db_engine = None

    async def health(self) -> bool:
        """Whether PostgreSQL answers `SELECT 1` within `health_timeout` seconds.

        Bounded on purpose: a health check that hangs while the database is unreachable is reported by
        the load balancer as a timeout, not as "unhealthy", and takes the node out too late.
        """
        if self._db_engine is None:
            return self._store is not None  # a memory log answers while the node runs
        try:
            async with asyncio.timeout(self.config.health_timeout), self._db_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means unhealthy; the reason goes to the log
            log.warning("health check failed: %s: %s", type(exc).__name__, exc)
            return False
        return True

    @property
    def store(self) -> EventLog:
        if self._store is None:
            raise StoreUnavailable("the engine is not started")
        return self._store

    @property
    def db_engine(self) -> AsyncEngine:
        """The pool, for the read models kept in PostgreSQL (StoreUnavailable without one)."""
        if self._db_engine is None:
            raise StoreUnavailable("the engine has no database (not started, or running on a memory log)")
        return self._db_engine

    @property
    def appender(self) -> Appender:
        return self._running_appender()

    @property
    def departing(self) -> int:
        return self._departing

    # Connections.

    def connect(self, actor: Actor, sink: Sink, close: Close, write_now: WriteNow | None = None) -> str:
        """Register a new connection of `actor` and subscribe it to the hub, in its user's topic (so
        all their tabs hear of their own stream); returns its id. From here on every frame to it goes
        through `reply` or a publish, so one sender task orders them all."""
        connection_id = f"ws_{uuid.uuid4().hex}"

        async def close_and_leave(code: int, reason: str) -> None:
            # A connection closed for not keeping up (or whose sends fail) is gone for its rooms at
            # once: its client may never answer the close, and its socket could linger until the
            # keepalive gives up, listed as a member all that time.
            leave_reason = _LEAVE_AT_CLOSE.get(code)
            if leave_reason is not None:
                # Shielded: the socket ending meanwhile cancels this closer, never the leaves.
                await asyncio.shield(self.leave_all(connection_id, leave_reason))
            await close(code, reason)

        self.hub.subscribe(connection_id, sink, close_and_leave, write_now)
        self.hub.join(connection_id, user_stream(actor.user_id))
        self.connections.add(connection_id, actor)
        # Tracked from now: the next rate-limit exchange brings what other nodes counted for the user.
        self.rate_limiter.touch(actor.user_id)
        return connection_id

    def serving(self, connection_id: str) -> bool:
        """Whether the connection is open and not being closed by the server (its frames are read
        on until its socket closes, but no longer acted on)."""
        if connection_id not in self.connections:
            return False
        try:
            return not self.hub.subscriber(connection_id).closed
        except KeyError:
            return False

    async def reply(self, connection_id: str, *messages: dict[str, Any]) -> None:
        """Queue messages for one connection, behind what is queued for it. Raises SubscriberClosed.
        Every error among them is counted here, whoever sends it (a session, an expiry, a removal)."""
        for message in messages:
            if message.get("type") == "error":
                self.traffic.error_sent(str(message.get("code")))
        await self._subscriber(connection_id).send(encode(list(messages)))

    async def flush(self, connection_id: str) -> None:
        """Wait until what is queued for the connection has been sent (before closing it directly)."""
        await self._subscriber(connection_id).flush()

    def close(self, connection_id: str, code: int) -> None:
        """Close the socket from its subscriber: what is still queued is dropped, and the close reason
        names the last `seq` delivered per room, from which the client resumes."""
        with contextlib.suppress(KeyError):  # already gone
            self.hub.subscriber(connection_id).fail(code)

    async def disconnect(self, connection_id: str) -> None:
        """Unsubscribe, forget the connection, and append (and publish) `UserLeftRoom` for every room
        it joined.

        Never raises for a store outage: the socket is gone either way. The leaves are then missing
        from the log, which the log says loudly; the node sweep will append them later.
        """
        await self.hub.unsubscribe(connection_id)
        await self.leave_all(connection_id, DISCONNECTED)
        # Its session has settled every message it read (engine/session.py), so no handler of it can
        # append any more: the guard against its name is no longer needed. Unless the session was
        # cancelled before they settled (a shutdown, which commits what is queued): then it stays.
        task = asyncio.current_task()
        if task is None or not task.cancelling():
            self._reaped.discard(connection_id)

    async def leave_all(self, connection_id: str, reason: str) -> None:
        """Forget the connection and append (and publish) `UserLeftRoom` for every room it joined;
        nothing for a connection already forgotten. Never raises for a store outage (see
        `disconnect`)."""
        self._departing += 1
        try:
            connection = self.connections.get(connection_id)
            leaves = self.depart(connection_id, reason)
            # One commit call per leave, each awaiting its own append: callers resume in commit order,
            # which `commit`'s publish needs (engine/fanout/live.py); a gathered batch would resume late.
            await commit_leaves(self.commit, leaves, log)
            if connection is not None and not self.connections.has_user(connection.actor.user_id):
                self.live.forget_user(connection.actor.user_id)
        finally:
            self._departing -= 1

    def depart(self, connection_id: str, reason: str = DISCONNECTED) -> list[NewEvent]:
        """Forget the connection and return the `UserLeftRoom` events its departure needs."""
        connection = self.connections.pop(connection_id)
        if connection is None:
            return []
        origin = Origin.of(self.node_id, connection.actor, connection_id)
        user_id = connection.actor.user_id
        return [
            UserLeftRoom(room_id, user_id, connection_id, reason).new(origin)
            for room_id in connection.departures
        ]

    # Appending and reading.

    async def commit(self, event: NewEvent) -> AppendOutcome:
        """Append `event` and, if it committed, publish it before anything else can run.

        Raises StoreUnavailable, or the Rejected of a decision made inside the append (a cell's
        VersionConflict). A Duplicate is returned unpublished: its original was published; so is a
        Conflict (a claim of an id another claim took first: engine/features/claims.py).
        """
        return await self._settle(event, self._running_appender().append(event))

    def submit(self, event: NewEvent) -> Awaitable[AppendOutcome] | None:
        """Queue `event` now, in the caller's order, and return what `commit` would: await it at once
        (its publishing is in it). None when it cannot be queued without waiting (the engine not
        started, the log's partitions not read yet): `commit` it instead. Raises StoreUnavailable."""
        if self._appender is None:
            return None
        queued = self._appender.submit(event)
        return None if queued is None else self._settle(event, queued)

    def _admits(self, event: NewEvent) -> bool:
        """Whether `event` may still be written or handed over: not once this node's peers may have
        taken it for dead. They record its connections' departures then, and an edit or a join after
        them would reach the room in the name of someone who left it (or never be closed). A
        departure itself always goes."""
        nodes = self.nodes
        if nodes is None or event.type == USER_LEFT_ROOM:
            return True
        if self._reaped and event.metadata.get("connection_id") in self._reaped:
            return False
        return not nodes.may_be_counted_dead

    async def _settle(self, event: NewEvent, appended: Awaitable[AppendOutcome]) -> AppendOutcome:
        outcome = await appended
        if isinstance(outcome, Committed):
            published = recorded(event, outcome)
            order = self._running_order().of(published.partition)
            # Published before anything else can run: no await between the result and this, unless
            # another node committed positions just before ours, which the follower reads first.
            if not order.offer(published):
                try:
                    async with asyncio.timeout(self.config.append_timeout):
                        if self.follower is not None:
                            await self.follower.wait_for_peers(published.partition, published.position)
                        await self._read_up_to(order, published.partition, published.position)
                except TimeoutError:
                    # Committed, but not yet published here: answering now would reply from a view
                    # without it. The client retries with its client_msg_id and gets the original seq.
                    raise StoreUnavailable(
                        f"committed at position {published.position}, but the log before it is unreadable"
                    ) from None
            if self.projector is not None:
                self.projector.wake()
        elif isinstance(outcome, Refused):  # a decision inside the append said no: nothing was written
            raise outcome.error
        return outcome  # a Conflict too: only claims set an expected version, and they read the winner

    async def published(self, event: Duplicate | RecordedEvent) -> None:
        """Wait, within the append timeout, until this node has published the event a Duplicate names
        (or a recorded event): another node may have just committed it, and a reply sent now would
        overtake it."""
        order = self._running_order().of(event.partition)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.append_timeout):
                await order.wait_delivered(event.position)

    async def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int = 1000
    ) -> Sequence[RecordedEvent]:
        """`EventStore.read_stream`, with an unreachable database reported as StoreUnavailable."""
        with unreachable_as_unavailable():
            return await self.store.read_stream(stream_id, after_version=after_version, limit=limit)

    async def read_all(
        self, after: int = 0, limit: int = 1000, partition: int = 0
    ) -> Sequence[RecordedEvent]:
        with unreachable_as_unavailable():
            return await self.store.read_all(after=after, limit=limit, partition=partition)

    async def sheet_room(self, sheet_id: str) -> str | None:
        with unreachable_as_unavailable():
            return await self.store.sheet_room(sheet_id)

    async def sheet_at_head(self, sheet_id: str) -> SheetAtHead | None:
        with unreachable_as_unavailable():
            return await self.store.sheet_at_head(sheet_id)

    async def event_by_key(
        self, user_id: str, key: str, stream_id: str | None = None
    ) -> RecordedEvent | None:
        with unreachable_as_unavailable():
            return await self.store.event_by_key(user_id, key, stream_id)

    async def latest_statuses(self, user_ids: Sequence[str]) -> dict[str, str]:
        with unreachable_as_unavailable():
            return await self.store.latest_statuses(user_ids)

    async def latest_cursors(self, room_id: str, user_ids: Sequence[str]) -> list[RecordedEvent]:
        with unreachable_as_unavailable():
            return await self.store.latest_cursors(room_id, user_ids)

    async def file_claims(self, file_id: str) -> list[RecordedEvent]:
        with unreachable_as_unavailable():
            return await self.store.file_claims(file_id)

    async def upload_events(self, user_id: str, file_id: str) -> list[RecordedEvent]:
        with unreachable_as_unavailable():
            return await self.store.upload_events(user_id, file_id)

    async def idle_uploads(
        self, cutoff: datetime, *, after: IdleOrder | None = None, limit: int = 100
    ) -> list[Upload]:
        """A page of the unfinished uploads with no event since `cutoff` (after `after`, in
        `idle_order`), from the uploads projection table; on a memory log, which has no tables,
        folded from the whole log."""
        if self._db_engine is not None:
            with unreachable_as_unavailable("the uploads table"):
                return await idle_uploads.idle_uploads(self._db_engine, cutoff, after=after, limit=limit)
        events: list[RecordedEvent] = []
        while page := await self.read_all(after=events[-1].position if events else 0):
            events.extend(page)
        return idle_uploads.idle_in(events, cutoff, after=after, limit=limit)

    async def log_heads(self) -> dict[int, int]:
        """Each partition's newest committed position (every node's appends)."""
        with unreachable_as_unavailable():
            return await self.store.heads()

    # Figures.

    def node_stats(self) -> stats.NodeStats:
        """This node's figures now. Raises StoreUnavailable when the engine is not running."""
        delivery = None
        if self.follower is not None:
            delivery = {**self.follower.stats(), "held_reads": self.held_reads}
        routing = self.routing.figures() if self.routing is not None else None
        return stats.node_stats(
            self.node_id,
            self.traffic,
            self._running_appender(),
            self.hub,
            self.connections,
            delivery,
            routing,
        )

    async def cluster_stats(self) -> stats.ClusterStats:
        """Every live node's figures: this node's as of now, the others' as of their last heartbeat."""
        own = self.node_stats()
        with unreachable_as_unavailable("the node table"):
            reports = await self.nodes.reports() if self.nodes is not None else {}
        return stats.cluster_stats(own, self.connections.rooms_active(), reports)

    def _heartbeat_report(self) -> Mapping[str, Any] | None:
        try:
            return stats.heartbeat_report(self.node_stats(), self.connections.rooms_active())
        except StoreUnavailable:
            return None

    # Internals.

    def _subscriber(self, connection_id: str) -> Subscriber:
        """The connection's subscriber; SubscriberClosed once it is gone (closed, or the engine stopped)."""
        try:
            return self.hub.subscriber(connection_id)
        except KeyError:
            raise SubscriberClosed(connection_id) from None

    async def _heads(self) -> dict[int, int] | None:
        """The partitions' heads, or None while the database is unreachable (the follower learns them
        later)."""
        try:
            async with asyncio.timeout(self.config.health_timeout):
                return await self.store.heads()
        except Exception as exc:
            log.warning("log heads unknown at start: %s: %s", type(exc).__name__, exc)
            return None

    async def _record_dead_nodes_departures(self) -> None:
        db_engine, nodes = self._db_engine, self.nodes
        if db_engine is not None and nodes is not None and not self._stopping:  # its appender stops first
            # By then a join the dead node handed over before it stopped appending is in the log.
            recheck_after = self._route_timeout
            await reaper.record_departures(db_engine, nodes, self.commit, recheck_after=recheck_after)
            await reaper.record_late_departures(db_engine, nodes, self.commit)

    @property
    def _route_timeout(self) -> float:
        """How long a batch handed to another node may take: its queue, then its commit there."""
        return 2 * self.config.append_timeout + 1.0

    def _in_background(self, work: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Departures recorded apart from the heartbeat, which a stop waits for within a bound. None
        once the node is stopping: nothing would be left to write them."""
        if self._stopping:
            log.warning("%s: not started, the node is stopping", name)
            return

        async def logged() -> None:
            try:
                await work()
            except Exception as exc:  # each commit was tried again until its bound
                log.error("%s: departures not recorded: %s: %s", name, type(exc).__name__, exc)

        task = asyncio.create_task(logged(), name=name)
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _drop_reaped_connections(self) -> None:
        """A peer recorded this node's connections as gone (it took this node for dead): close them
        with 1012; their clients reconnect and resume. Their departures are recorded again, under the
        survivor's keys, so that a membership it could not see (a join this node handed over late) is
        closed too and one it closed is not closed twice: in the background, since the node registers
        again only after this returns."""
        for callback in self._taken_for_dead:
            callback()
        leaves: list[NewEvent] = []
        for connection in self.connections:
            self.connections.pop(connection.connection_id)  # so `disconnect` appends no second leave
            self._reaped.add(connection.connection_id)
            self.close(connection.connection_id, CloseCode.SERVICE_RESTART)
            user_id = connection.actor.user_id
            leaves += [
                reaper.lost_leave(room_id, user_id, connection.connection_id, self.node_id, self.node_id)
                for room_id in connection.departures
            ]
        if leaves:
            record = partial(self._record_lost_leaves, leaves)
            self._in_background(record, "lost-leaves")

    async def _record_lost_leaves(self, leaves: list[NewEvent]) -> None:
        await reaper.commit_all(leaves, self.commit, bound=4 * self.config.node_dead_after)

    async def _read_up_to(self, order: DeliveryOrder, partition: int, position: int) -> None:
        """Read the partition's positions before `position` that another node (or a commit whose
        caller was gone) wrote, and publish them, so the held `position` goes out. The caller reads
        them itself rather than wait for the follower, which may be backing off after an outage."""
        while order.delivered is None or order.delivered < position:
            after = order.delivered if order.delivered is not None else position - 1
            try:
                page = await self.store.read_all(after=after, limit=position - after, partition=partition)
                self.held_reads += 1
            except Exception as exc:  # a connection that died with the outage: the pool replaces it
                log.info("reading the log before %d failed: %s: %s", position, type(exc).__name__, exc)
                page = []
            order.offer_all(page)
            if not page:
                await asyncio.sleep(0.05)

    def _running_order(self) -> DeliveryOrders:
        if self.order is None:
            raise StoreUnavailable("the engine is not started")
        return self.order

    def _running_appender(self) -> Appender:
        if self._appender is None:
            raise StoreUnavailable("the engine is not started")
        return self._appender

    def _publish_committed(self, event: RecordedEvent) -> None:
        if is_engine_stream(event.stream_id):
            self.live.publish(event)
            for observer in self._observers:
                observer(event)

    def _announce(self, event: NewEvent, committed: Committed) -> None:
        """Tell the other nodes of a commit as soon as the appender has it: before this node publishes
        it, which may wait for their positions (waiting first would chain the nodes' waits)."""
        if self.follower is not None:
            self.follower.committed(event, committed)

    def _read_log(self) -> None:
        if self.follower is not None:
            self.follower.wake()


__all__ = ["Node", "default_node_id"]
