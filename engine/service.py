"""`Engine`: the one object the api holds. It builds the node kernel and the feature components, wires
each to the narrow interfaces it uses, and keeps one method per thing a client or an admin can do.

    node (engine/node.py)            lifecycle, connections, commit, reply; the cluster parts
    rooms, cells, presence           join/leave, cell updates, cursors, typing, status (features/)
    notifications, uploads, files    the user's own stream; file bodies over REST
    ai, typing sweeper               background work that appends events of its own
    admin                            broadcasts, direct messages, removing a connection, draining
    sessions (engine/session.py)     one per socket: a frame in, replies and events out

Every handler follows one pattern: check (engine/decisions/) before anything is written, build the
event (engine/model/catalogue.py), `commit` it (append, then publish with no await in between), then
answer the sender through the connection's queue, so replies and fanned-out messages reach a socket
in one order. `client_msg_id` is the event's idempotency key: a repeat is not applied again, and its
`ack` carries the original `seq`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from engine.config import EngineConfig
from engine.fanout.hub import Hub
from engine.fanout.live import Live, UserPublisher
from engine.fanout.subscriber import Close, Sink
from engine.features.admin import Admin, Delivery, Removal
from engine.features.ai import AiProvider
from engine.features.ai.runner import AiRunner
from engine.features.cells import Cells, SheetRooms
from engine.features.files import Files, SharedFile
from engine.features.limits import RateLimiter
from engine.features.notifications import Notifications
from engine.features.presence import Presence
from engine.features.rooms import Rooms
from engine.features.stats import ClusterStats, NodeStats
from engine.features.storage import FileStorage, FileStream
from engine.features.traffic import EngineStats
from engine.features.typing_sweeper import TypingSweeper
from engine.features.uploads import Uploads
from engine.log.appender import AppenderStats
from engine.log.store import EventLog
from engine.model.actors import Actor
from engine.model.events import AppendOutcome, Committed, NewEvent
from engine.node import Node, default_node_id
from engine.projections.notifications import Inbox, Notification
from engine.projections.rooms import RoomView
from engine.projections.uploads import Upload
from engine.readmodels import rebuild, room_listing
from engine.readmodels.history import History
from engine.session import Session

__all__ = ["Engine", "EngineConfig", "default_node_id"]


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
            read_all=node.read_all,
            auto_create=config.room_auto_create,
        )
        self.cells = Cells(
            node_id=node_id,
            connections=connections,
            live=live,
            load_room=self.rooms.view,
            sheet_rooms=self.sheet_rooms,
            commit=commit,
            reply=reply,
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
        )
        self.files = Files(node_id=node_id, commit=commit, read_claims=node.file_claims, storage=file_storage)
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
        self.typing_sweeper = TypingSweeper(node.commit, config.typing_timeout)
        node.observe_commits(self.typing_sweeper.observe)
        # Who publishes each user-stream event type: one table, each type owned by one component.
        publishers: dict[str, UserPublisher] = {}
        for component in (self.notifications, self.uploads, self.ai, self.admin):
            owned = component.publishers()
            if claimed := publishers.keys() & owned.keys():
                raise RuntimeError(f"event types published twice: {sorted(claimed)}")
            publishers.update(owned)
        node.live.route_user_events(publishers)

    # Lifecycle.

    async def start(self) -> None:
        await self.node.start()
        await self.files.start()
        self.typing_sweeper.start()

    async def stop(self) -> None:
        """Stop the background work that appends (typing expiry, AI runs recorded as failed while the
        hub still publishes), then the node: departures recorded, queue committed, pool closed."""
        await self.typing_sweeper.stop()
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

    def connect(self, actor: Actor, sink: Sink, close: Close) -> str:
        return self.node.connect(actor, sink, close)

    def open_session(self, actor: Actor, sink: Sink, close: Close) -> Session:
        """A new connection of `actor` and the session that serves its messages (engine/session.py)."""
        return Session(self.node, self, self.config, actor, self.node.connect(actor, sink, close))

    async def disconnect(self, connection_id: str) -> None:
        self.notifications.forget(connection_id)
        await self.node.disconnect(connection_id)

    async def reply(self, connection_id: str, *messages: dict[str, Any]) -> None:
        await self.node.reply(connection_id, *messages)

    async def flush(self, connection_id: str) -> None:
        await self.node.flush(connection_id)

    async def commit(self, event: NewEvent) -> AppendOutcome:
        return await self.node.commit(event)

    # Rooms, cells, presence.

    async def join_room(
        self,
        actor: Actor,
        room_id: str,
        connection_id: str,
        *,
        since: int | None = None,
        client_msg_id: str | None = None,
    ) -> RoomView:
        return await self.rooms.join(actor, room_id, connection_id, since=since, client_msg_id=client_msg_id)

    async def leave_room(
        self, actor: Actor, room_id: str, connection_id: str, *, client_msg_id: str | None = None
    ) -> None:
        await self.rooms.leave(actor, room_id, connection_id, client_msg_id=client_msg_id)

    async def room_view(self, room_id: str) -> RoomView:
        return await self.rooms.view(room_id)

    async def update_cell(
        self,
        actor: Actor,
        connection_id: str,
        sheet_id: str,
        cell_id: str,
        *,
        value: Any,
        formula: str | None = None,
        version: int | None = None,
        room: str | None = None,
        client_msg_id: str | None = None,
    ) -> None:
        await self.cells.update(
            actor,
            connection_id,
            sheet_id,
            cell_id,
            value=value,
            formula=formula,
            version=version,
            room=room,
            client_msg_id=client_msg_id,
        )

    async def sheet_room(self, sheet_id: str) -> str | None:
        return await self.sheet_rooms.room_of(sheet_id)

    async def move_cursor(
        self,
        actor: Actor,
        connection_id: str,
        room: str,
        *,
        x: float,
        y: float,
        cell: str | None,
        client_msg_id: str | None = None,
    ) -> None:
        await self.presence.move_cursor(
            actor, connection_id, room, x=x, y=y, cell=cell, client_msg_id=client_msg_id
        )

    async def typing(
        self,
        actor: Actor,
        connection_id: str,
        room: str,
        cell_id: str,
        *,
        started: bool,
        client_msg_id: str | None = None,
    ) -> None:
        await self.presence.typing(
            actor, connection_id, room, cell_id, started=started, client_msg_id=client_msg_id
        )

    async def set_status(
        self, actor: Actor, connection_id: str, status: str, *, client_msg_id: str | None = None
    ) -> None:
        await self.presence.set_status(actor, connection_id, status, client_msg_id=client_msg_id)

    # AI.

    async def request_ai(
        self,
        actor: Actor,
        connection_id: str,
        request_id: str,
        query: str,
        sheet_id: str,
        context: Mapping[str, Any] | None = None,
        *,
        client_msg_id: str | None = None,
    ) -> None:
        await self.ai.request(
            actor, connection_id, request_id, query, sheet_id, context, client_msg_id=client_msg_id
        )

    async def cancel_ai(
        self, actor: Actor, connection_id: str, request_id: str, *, client_msg_id: str | None = None
    ) -> None:
        await self.ai.cancel(actor, connection_id, request_id, client_msg_id=client_msg_id)

    # Notifications.

    async def subscribe_notifications(
        self,
        actor: Actor,
        connection_id: str,
        filters: Mapping[str, list[str] | None],
        *,
        client_msg_id: str | None = None,
    ) -> None:
        await self.notifications.subscribe(actor, connection_id, filters, client_msg_id=client_msg_id)

    async def read_notification(
        self, actor: Actor, connection_id: str, notification_id: str, *, client_msg_id: str | None = None
    ) -> None:
        await self.notifications.read(actor, connection_id, notification_id, client_msg_id=client_msg_id)

    async def mark_notification_read(self, actor: Actor, notification_id: str) -> Notification:
        return await self.notifications.mark_read(actor, notification_id)

    async def create_notification(
        self, user_id: str, notification: Mapping[str, Any], *, created_by: str
    ) -> dict[str, Any]:
        record, _ = await self.notifications.create(user_id, notification, created_by=created_by)
        return record

    async def record_notification(
        self, user_id: str, notification: Mapping[str, Any], *, created_by: str
    ) -> tuple[dict[str, Any], Committed]:
        return await self.notifications.create(user_id, notification, created_by=created_by)

    async def inbox(self, user_id: str, *, upto: int | None = None) -> Inbox:
        return await self.notifications.inbox(user_id, upto=upto)

    # Uploads and files.

    async def start_upload(
        self,
        actor: Actor,
        connection_id: str,
        file_id: str,
        *,
        filename: str,
        file_size: int,
        mime_type: str,
        client_msg_id: str | None = None,
    ) -> None:
        await self.uploads.start(
            actor,
            connection_id,
            file_id,
            filename=filename,
            file_size=file_size,
            mime_type=mime_type,
            client_msg_id=client_msg_id,
        )

    async def report_upload_progress(
        self,
        actor: Actor,
        connection_id: str,
        file_id: str,
        *,
        bytes_uploaded: int,
        total_bytes: int,
        percentage: float,
        client_msg_id: str | None = None,
    ) -> None:
        await self.uploads.progress(
            actor,
            connection_id,
            file_id,
            bytes_uploaded=bytes_uploaded,
            total_bytes=total_bytes,
            percentage=percentage,
            client_msg_id=client_msg_id,
        )

    async def upload(self, user_id: str, file_id: str) -> Upload | None:
        return await self.uploads.upload(user_id, file_id)

    async def shared_file(self, file_id: str) -> SharedFile | None:
        return await self.files.shared_file(file_id)

    async def open_file(self, file_id: str) -> FileStream:
        return await self.files.open_file(file_id)

    async def store_file(
        self,
        actor: Actor,
        file_id: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        filename: str | None = None,
        room_id: str | None = None,
        content_type: str | None = None,
        content_length: int | None = None,
    ) -> SharedFile:
        return await self.files.store_file(
            actor,
            file_id,
            chunks,
            max_bytes=max_bytes,
            filename=filename,
            room_id=room_id,
            content_type=content_type,
            content_length=content_length,
        )

    # Admin.

    async def broadcast_to_room(self, admin: Actor, room_id: str, message: Mapping[str, Any]) -> Delivery:
        return await self.admin.broadcast_to_room(admin, room_id, message)

    async def notify_user(self, admin: Actor, user_id: str, message: Mapping[str, Any]) -> Delivery:
        return await self.admin.notify_user(admin, user_id, message)

    async def remove_connection(self, connection_id: str, *, grace: float = 2.0) -> Removal:
        return await self.admin.remove_connection(connection_id, grace=grace)

    @property
    def draining(self) -> bool:
        return self.admin.draining

    def begin_shutdown(self) -> bool:
        return self.admin.begin_shutdown()

    async def drain(self, *, reason: str, grace: float = 5.0, reconnect_after: float | None = None) -> int:
        return await self.admin.drain(reason=reason, grace=grace, reconnect_after=reconnect_after)

    # Figures and reads of the read models.

    def node_stats(self) -> NodeStats:
        return self.node.node_stats()

    async def cluster_stats(self) -> ClusterStats:
        return await self.node.cluster_stats()

    @property
    def appender_stats(self) -> AppenderStats:
        """The appender's batch and latency figures (raises StoreUnavailable before start)."""
        return self.node.appender.stats

    async def log_head(self) -> int:
        return await self.node.log_head()

    def history(self, *, snapshot_every: int = 100) -> History:
        """History and time travel over the log (engine/readmodels/history.py)."""
        return History(self.node.db_engine, snapshot_every=snapshot_every)

    async def list_rooms(
        self, *, now: datetime, limit: int, offset: int, active_only: bool
    ) -> list[room_listing.RoomSummary]:
        return await room_listing.list_rooms(
            self.node.db_engine, now=now, limit=limit, offset=offset, active_only=active_only
        )

    async def room_detail(self, room_id: str, *, now: datetime) -> room_listing.RoomDetail:
        return await room_listing.room_detail(self.node.db_engine, room_id, now=now)

    async def rebuild_projections(self) -> rebuild.FullReport:
        """Replay the log into every projection table; the runner then reloads its views from them."""
        report = await rebuild.rebuild_all(self.node.db_engine)
        if self.node.projector is not None:
            self.node.projector.wake()
        return report

    async def check_projections(self) -> list[str]:
        """How the projection tables differ from a fold of the log (empty: they agree)."""
        return await rebuild.diff_all(self.node.db_engine)
