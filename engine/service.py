"""`Engine`: the one object the api holds. It builds the node kernel and the feature components, wires
each to the narrow interfaces it uses, and keeps one method per thing a client or an admin can do.

    node (engine/node.py)            lifecycle, connections, commit, reply; the cluster parts
    rooms, cells, presence           join/leave, cell updates, cursors, typing, status (features/)
    notifications, uploads, files    the user's own stream; file bodies over REST
    ai, typing and upload sweepers   background work that appends events of its own
    admin                            broadcasts, direct messages, removing a connection, draining
    sessions (engine/session.py)     one per socket: a frame in, replies and events out

Every handler follows one pattern: check (engine/decisions/) before anything is written, build the
event (engine/model/catalogue.py), `commit` it (append, then publish with no await in between), then
answer the sender through the connection's queue, so replies and fanned-out messages reach a socket
in one order. `client_msg_id` is the event's idempotency key (scoped to the connection for a join or a
subscription, which belong to it): a repeat is not applied again, and its `ack` carries the original
`seq`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from engine.config import EngineConfig
from engine.fanout.hub import Hub
from engine.fanout.live import Live, UserPublisher
from engine.fanout.subscriber import Close, Sink, WriteNow
from engine.features.admin import Admin, Removal
from engine.features.ai import AiProvider
from engine.features.ai.runner import AiRunner
from engine.features.cells import Cells, SheetRooms
from engine.features.files import Files
from engine.features.limits import RateLimiter
from engine.features.notifications import Notifications
from engine.features.presence import Presence
from engine.features.rooms import Rooms
from engine.features.storage import FileStorage
from engine.features.tokens import Credentials, TokenExpiry, VerifyToken
from engine.features.traffic import EngineStats
from engine.features.typing_sweeper import TypingSweeper
from engine.features.upload_sweeper import UploadSweeper
from engine.features.uploads import Uploads
from engine.log.appender import AppenderStats
from engine.log.store import EventLog
from engine.model.actors import Actor
from engine.model.errors import NotFound
from engine.node import Node, default_node_id
from engine.readmodels import rebuild, room_listing
from engine.readmodels.history import History
from engine.session import Session

__all__ = ["Engine", "EngineConfig", "default_node_id"]

REMOVE_CONNECTION = "remove_connection"
STOP_AI_RUN = "stop_ai_run"


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        *,
        ai_provider: AiProvider | None = None,
        file_storage: FileStorage | None = None,
        log: EventLog | None = None,
    ) -> None:
        """`log`: the memory store, to run without PostgreSQL (tests); default the database's."""
        self.config = config
        self.node = node = Node(config, log=log)
        node_id, connections, live, hub = node.node_id, node.connections, node.live, node.hub
        commit, reply, read_stream = node.commit, node.reply, node.read_stream
        self.sheet_rooms = SheetRooms(node.sheet_room)
        self.rooms = Rooms(
            node_id=node_id,
            connections=connections,
            live=live,
            hub=hub,
            commit=commit,
            reply=reply,
            read_stream=read_stream,
            read_statuses=node.latest_statuses,
            read_cursors=node.latest_cursors,
            auto_create=config.room_auto_create,
            max_rooms_per_connection=config.max_rooms_per_connection,
        )
        self.cells = Cells(
            node_id=node_id,
            connections=connections,
            live=live,
            load_room=self.rooms.view,
            sheet_rooms=self.sheet_rooms,
            read_sheet=node.sheet_at_head,
            read_stream=read_stream,
            commit=commit,
            submit=node.submit,
            reply=reply,
            max_cells=config.max_cells_per_update,
        )
        self.presence = Presence(node_id=node_id, connections=connections, commit=commit, reply=reply)
        self.notifications = Notifications(
            node_id=node_id,
            connections=connections,
            hub=hub,
            commit=commit,
            reply=reply,
            read_stream=read_stream,
        )
        self.uploads = Uploads(
            node_id=node_id,
            connections=connections,
            hub=hub,
            commit=commit,
            reply=reply,
            read_stream=read_stream,
            max_file_size=config.max_upload_bytes,
        )
        self.ai = AiRunner(
            node_id=node_id,
            connections=connections,
            hub=hub,
            sheet_rooms=self.sheet_rooms,
            commit=commit,
            reply=reply,
            read_stream=read_stream,
            provider=ai_provider,
            stop_elsewhere=self._stop_ai_run_elsewhere,
            read_by_key=node.event_by_key,
            published=node.published,
        )
        node.observe_taken_for_dead(self.ai.abandon_runs)
        self.files = Files(
            node_id=node_id,
            commit=commit,
            read_claims=node.file_claims,
            read_by_key=node.event_by_key,
            read_stream=read_stream,
            starting=self.uploads.starting,  # one lock per (user, file id) for socket and PUT starts
            storage=file_storage,
            idle_timeout=config.upload_idle_timeout,
        )
        self.admin = Admin(
            node_id=node_id,
            connections=connections,
            live=live,
            load_room=self.rooms.view,
            hub=hub,
            commit=commit,
            reply=reply,
            flush=node.flush,
            read_stream=read_stream,
            depart=node.depart,
            departing=lambda: node.departing,
        )
        self.tokens = TokenExpiry(reply=reply, flush=node.flush, close=node.close)
        self.typing_sweeper = TypingSweeper(node.commit, config.typing_timeout, node.node_id)
        node.observe_published(self.typing_sweeper.observe)
        self.upload_sweeper = UploadSweeper(
            node_id=node_id,
            commit=commit,
            find_idle=node.idle_uploads,
            read_upload=node.upload_events,
            timeout_seconds=config.upload_idle_timeout,
        )
        # Who publishes each user-stream event type: one table, each type owned by one component.
        publishers: dict[str, UserPublisher] = {}
        for component in (self.notifications, self.uploads, self.ai, self.admin):
            owned = component.publishers()
            if claimed := publishers.keys() & owned.keys():
                raise RuntimeError(f"event types published twice: {sorted(claimed)}")
            publishers.update(owned)
        node.live.route_user_events(publishers)

        # The public face: one method per thing a client or an admin can do, each a component's own.
        self.connect = node.connect
        self.reply = node.reply
        self.flush = node.flush
        self.commit = node.commit
        self.node_stats = node.node_stats
        self.cluster_stats = node.cluster_stats
        self.log_heads = node.log_heads
        self._histories: dict[int, History] = {}  # by snapshot interval
        self.join_room = self.rooms.join
        self.leave_room = self.rooms.leave
        self.room_view = self.rooms.view
        self.update_cell = self.cells.update
        self.submit_cell_update = self.cells.submit_update
        self.update_cells = self.cells.update_range
        self.load_sheet = self.cells.load
        self.sheet_room = self.sheet_rooms.room_of
        self.move_cursor = self.presence.move_cursor
        self.typing = self.presence.typing
        self.set_status = self.presence.set_status
        self.request_ai = self.ai.request
        self.cancel_ai = self.ai.cancel
        self.ai_retried = self.ai.retried
        self.subscribe_notifications = self.notifications.subscribe
        self.read_notification = self.notifications.read
        self.mark_notification_read = self.notifications.mark_read
        self.record_notification = self.notifications.create
        self.inbox = self.notifications.inbox
        self.start_upload = self.uploads.start
        self.report_upload_progress = self.uploads.progress
        self.upload = self.uploads.upload
        self.shared_file = self.files.shared_file
        self.open_file = self.files.open_file
        self.store_file = self.files.store_file
        self.broadcast_to_room = self.admin.broadcast_to_room
        self.notify_user = self.admin.notify_user
        self.begin_shutdown = self.admin.begin_shutdown
        self.drain = self.admin.drain

    # Lifecycle.

    async def start(self) -> None:
        await self.node.start()
        if self.node.control is not None:
            self.node.control.serve(REMOVE_CONNECTION, self._remove_here)
            self.node.control.serve(STOP_AI_RUN, self._stop_ai_run_here)
        await self.files.start()
        self.typing_sweeper.start()
        self.upload_sweeper.start()
        self.tokens.start()

    async def stop(self) -> None:
        """Stop the background work that appends (typing and upload expiry, AI runs recorded as failed
        while the hub still publishes), then the node: departures recorded, queue committed, pool
        closed."""
        await self.tokens.stop()
        await self.typing_sweeper.stop()
        await self.upload_sweeper.stop()
        await self.ai.stop()
        await self.node.stop()

    async def health(self) -> bool:
        return await self.node.health()

    @property
    def node_id(self) -> str:
        return self.node.node_id

    @property
    def store(self) -> EventLog:
        return self.node.store

    @property
    def live(self) -> Live:
        return self.node.live

    @property
    def hub(self) -> Hub:
        return self.node.hub

    @property
    def rate_limiter(self) -> RateLimiter:
        return self.node.rate_limiter

    @property
    def stats(self) -> EngineStats:
        return self.node.traffic

    @property
    def connection_count(self) -> int:
        return len(self.node.connections)

    @property
    def rooms_active(self) -> int:
        """Rooms with at least one connection on this node."""
        return len(self.node.connections.rooms_active())

    # Connections.

    def open_session(
        self,
        actor: Actor,
        sink: Sink,
        close: Close,
        *,
        expires_at: datetime | None = None,
        verify: VerifyToken | None = None,
        write_now: WriteNow | None = None,
    ) -> Session:
        """A new connection of `actor` and the session that serves its messages (engine/session.py);
        `expires_at` is when its token expires, `verify` checks the token of a `refresh_token`,
        `write_now` is the transport's synchronous write if it has one (engine/fanout/subscriber.py).
        Raises NodeFull or TooManyConnections (ConnectionRefused) when a cap is reached."""
        config = self.config
        self.node.connections.admit(
            actor.user_id, max_total=config.max_connections, max_per_user=config.max_connections_per_user
        )
        connection_id = self.node.connect(actor, sink, close, write_now)
        credentials = Credentials(actor, expires_at)
        return Session(
            self.node, self, self.config, credentials, connection_id, tokens=self.tokens, verify=verify
        )

    async def disconnect(self, connection_id: str) -> None:
        try:
            await self.node.disconnect(connection_id)
        finally:  # after: a subscription committing meanwhile sets filters while the connection is known
            self.notifications.forget(connection_id)

    async def create_notification(
        self, user_id: str, notification: Mapping[str, Any], *, created_by: str
    ) -> dict[str, Any]:
        record, _ = await self.notifications.create(user_id, notification, created_by=created_by)
        return record

    async def remove_connection(self, connection_id: str, *, grace: float = 2.0) -> Removal:
        """Close the connection with 4410 and record its departures, on whichever node holds it.
        NOT_FOUND when no node does."""
        if connection_id in self.node.connections:
            return await self.admin.remove_connection(connection_id, grace=grace)
        if self.node.control is not None:
            # The holder says its last word (up to `grace`), then commits the leaves.
            wait = grace + self.node.config.append_timeout + self.node.control.timeout
            done = await self.node.control.ask(REMOVE_CONNECTION, connection_id, wait_seconds=wait)
            if done is not None:
                return Removal(str(done["connection_id"]), str(done["user_id"]), tuple(done["rooms_left"]))
        raise NotFound(f"no open connection {connection_id!r}")

    async def _stop_ai_run_elsewhere(self, user_id: str, request_id: str, client_msg_id: str | None) -> bool:
        """An `ai_cancel` came in here for a run on another node (the user asked through another tab)."""
        if self.node.control is None:
            return False
        subject = orjson.dumps([user_id, request_id, client_msg_id]).decode()
        # The holder waits for the run to stop (it may be in a commit), then commits the cancellation.
        wait = 2 * self.node.config.append_timeout + self.node.control.timeout
        return await self.node.control.ask(STOP_AI_RUN, subject, wait_seconds=wait) is not None

    async def _stop_ai_run_here(self, subject: str) -> dict[str, Any] | None:
        user_id, request_id, client_msg_id = orjson.loads(subject)
        stopped = await self.ai.cancel_here(str(user_id), str(request_id), client_msg_id)
        return {"stopped": True} if stopped else None

    async def _remove_here(self, connection_id: str) -> dict[str, Any] | None:
        """Another node's admin asked for this node's connection."""
        if connection_id not in self.node.connections:
            return None
        removal = await self.admin.remove_connection(connection_id)
        return {
            "connection_id": removal.connection_id,
            "user_id": removal.user_id,
            "rooms_left": removal.rooms_left,
        }

    @property
    def draining(self) -> bool:
        return self.admin.draining

    # Figures and reads of the read models.

    @property
    def appender_stats(self) -> AppenderStats:
        """The appender's batch and latency figures (raises StoreUnavailable before start)."""
        return self.node.appender.stats

    def history(self, *, snapshot_every: int = 100) -> History:
        """History and time travel over the log (engine/readmodels/history.py); kept while the pool
        is, so the log's partition count is read once."""
        db_engine = self.node.db_engine
        kept = self._histories.get(snapshot_every)
        if kept is None or kept.db_engine is not db_engine:
            kept = self._histories[snapshot_every] = History(db_engine, snapshot_every=snapshot_every)
        return kept

    async def list_rooms(
        self, reader: Actor, *, now: datetime, limit: int, offset: int, active_only: bool
    ) -> list[room_listing.RoomSummary]:
        """The rooms `reader` may see: every room for an admin, else those its `rooms` claim allows
        (all, without one)."""
        patterns = None if reader.has_role("admin") else reader.rooms_regex()
        return await room_listing.list_rooms(
            self.node.db_engine,
            now=now,
            limit=limit,
            offset=offset,
            active_only=active_only,
            patterns=patterns,
        )

    async def room_detail(self, room_id: str, *, now: datetime) -> room_listing.RoomDetail:
        return await room_listing.room_detail(
            self.node.db_engine, room_id, now=now, partitions=await self.node.store.partitions()
        )

    async def rebuild_projections(self, *, partition: int | None = None) -> rebuild.FullReport:
        """Replay the log into every projection table, for every partition or only `partition`; the
        runner then reloads its views from them."""
        report = await rebuild.rebuild_all(self.node.db_engine, partition=partition)
        if self.node.projector is not None:
            self.node.projector.wake()
        return report

    async def check_projections(self, *, partition: int | None = None) -> list[str]:
        """How the projection tables differ from a fold of the log (empty: they agree), in every
        partition or only `partition`."""
        return await rebuild.diff_all(self.node.db_engine, partition=partition)
