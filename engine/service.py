"""`Engine`: the one object the api holds. It turns what connections send into events, and replies.

Every handler follows one pattern: check (decide.py) before anything is written, build the event,
`commit` it (append, then publish with no await in between: engine/core.py), then answer the sender
(`room_state`, `room_left`, `ack`) through the connection's subscriber, so that replies and fanned-out
messages reach a socket in one order. `client_msg_id` is the event's idempotency key: a repeat is not
applied again, and its `ack` carries the original `seq` (PROTOCOL.md, envelope additions).

The lifecycle, connections and the commit path live in engine/core.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.core import EngineCore, default_node_id
from engine.decisions.rules import (
    authorize,
    check_join,
    require_in_room,
    require_member,
    room_for_cell_update,
)
from engine.files_service import FileHandlers
from engine.management_service import ManagementHandlers
from engine.model.actors import Actor
from engine.model.catalogue import (
    LEFT,
    STOPPED,
    USER_JOINED_ROOM,
    CellUpdated,
    CursorMoved,
    TypingStarted,
    TypingStopped,
    UserJoinedRoom,
    UserLeftRoom,
    UserStatusChanged,
)
from engine.model.errors import ValidationFailed
from engine.model.events import AppendOutcome, CellWrite, Committed, Duplicate, NewEvent
from engine.model.streams import ROOM_STREAM_PREFIX, room_id_of, room_stream
from engine.notification_reads import NotificationReads
from engine.notifications_service import NotificationHandlers
from engine.projections.rooms import RoomView, project, with_statuses
from engine.protocol import MAX_ROOM_ID_LENGTH, Envelope, ack, replay_complete, room_left, room_state
from engine.protocol.rendering import ReplayRenderer, encode
from engine.stats_service import StatsReporting
from engine.uploads_service import UploadHandlers

__all__ = ["Actor", "Engine", "default_node_id"]


class Engine(
    ManagementHandlers,
    NotificationReads,
    FileHandlers,
    NotificationHandlers,
    UploadHandlers,
    StatsReporting,
    EngineCore,
):
    # Notifications and uploads: engine/notifications_service.py, engine/uploads_service.py.

    # Rooms.

    async def join_room(
        self,
        actor: Actor,
        room_id: str,
        connection_id: str,
        *,
        since: int | None = None,
        client_msg_id: str | None = None,
    ) -> RoomView:
        """Append `UserJoinedRoom`, send the joiner `room_state` (and, with `since`, every room event
        after `since` and `replay_complete`), then go live; the other members get the join's
        `room_state` and `user_joined`. Returns the view sent.

        A repeated `client_msg_id` is a retry. If the log already holds this connection's join of this
        room under that id, nothing is appended and the ack repeats the original `seq`. A retry from a
        new connection (the first one dropped before its ack) must still make this connection a
        member, or it would receive the room's events unseen by the room: so it appends a join of its
        own (keyless, `retry_of` in its metadata), and the ack carries that join's `seq`.

        Raises ValidationFailed, PermissionDenied, StoreUnavailable (retryable), SubscriberClosed.
        """
        connection = self._connection_of(actor, connection_id)
        if not room_id or len(room_id) > MAX_ROOM_ID_LENGTH:
            raise ValidationFailed(f"room_id must be 1 to {MAX_ROOM_ID_LENGTH} characters")
        check_join(actor, room_id, room_exists=True)  # role and `rooms` patterns, before any read
        if not self.room_auto_create:
            check_join(actor, room_id, room_exists=await self._room_exists(room_id), auto_create=False)
        current = await self.live.load(room_id, self.room_view)
        if since is not None and since > current.seq:
            raise ValidationFailed(
                f"since {since} is beyond room {room_id!r}'s seq {current.seq}", seq=current.seq
            )
        was_in = room_id in connection.rooms
        connection.rooms.add(room_id)  # before the append: see `_Connection.rooms`
        joined = UserJoinedRoom(room_id, actor.user_id, actor.username, actor.email, connection_id)
        event = joined.new(self.origin(actor, connection_id, client_msg_id))
        async with self.hub.catch_up(connection_id, room_stream(room_id)) as catch_up:
            outcome = await self.commit(event)
            if isinstance(outcome, Duplicate) and not (was_in and await self._own_join(outcome, event)):
                metadata = {**event.metadata, "retry_of": outcome.position}
                outcome = await self.commit(replace(event, metadata=metadata, idempotency_key=None))
            # Taken together, before any await: the replay below starts exactly where this view ends.
            raw = self.live.view(room_id, shown=False) or await self._reloaded(room_id)
            view = with_statuses(raw, self.live.statuses(raw))
            await catch_up.send(encode([room_state(view)]))
            if since is None:
                renderer = ReplayRenderer(raw, self.live.statuses)
                await catch_up.replay(self.read_stream, renderer, since=raw.seq)
            else:
                base = project(await self._read_room(room_id, upto=since), room_id)
                await catch_up.replay(
                    self.read_stream,
                    ReplayRenderer(base, self.live.statuses),
                    since=since,
                    complete=lambda seq: encode([replay_complete(room_id, seq)]),
                )
        await self._ack(connection_id, client_msg_id, room_id, outcome)
        return view

    async def leave_room(
        self, actor: Actor, room_id: str, connection_id: str, *, client_msg_id: str | None = None
    ) -> None:
        """Append `UserLeftRoom` (reason "left"); the leaver gets `room_left`, the remaining members
        `room_state` and `user_left`. ROOM_NOT_FOUND if this connection is not in the room."""
        connection = self._connection_of(actor, connection_id)
        require_in_room(room_id, connection.rooms)
        await self.live.load(room_id, self.room_view)
        left = UserLeftRoom(room_id, actor.user_id, connection_id, LEFT)
        event = left.new(self.origin(actor, connection_id, client_msg_id))
        outcome = await self.commit(event)
        connection.rooms.discard(room_id)
        self.hub.leave(connection_id, room_stream(room_id))  # done by the publish, unless a Duplicate
        if isinstance(outcome, Committed | Duplicate):
            envelope = Envelope(room_id, outcome.stream_version, outcome.recorded_at, client_msg_id)
            await self.reply(connection_id, room_left(room_id, envelope=envelope))
        await self._ack(connection_id, client_msg_id, room_id, outcome)

    # Volatile room events: persisted to the room's volatile twin, fanned out to the other members.

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
        """`cursor_moved` to the other members; a queued, unsent one of the same user is replaced."""
        authorize(actor, "cursor_move")
        require_member(room, self._joined(connection_id))
        moved = CursorMoved(room, actor.user_id, actor.username, x, y, cell)
        await self._volatile(moved.new(self.origin(actor, connection_id, client_msg_id)), room)

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
        """`user_typing_start`/`user_typing_stop` to the other members."""
        authorize(actor, "typing_start" if started else "typing_stop")
        require_member(room, self._joined(connection_id))
        fields = (room, actor.user_id, actor.username, cell_id, connection_id)
        typed = TypingStarted(*fields) if started else TypingStopped(*fields, STOPPED)
        await self._volatile(typed.new(self.origin(actor, connection_id, client_msg_id)), room)

    # Cells.

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
        """Append `CellUpdated`; `cell_updated` with the server's version goes to every member of the
        sheet's room, the sender included, and the sender gets its `ack`.

        The version rule and the sheet's room are decided by the writer inside the append, against
        the cell as of the head it commits on (engine/log/batch_plan.py), so two nodes can never both
        accept updates on one base version; a stale base raises VersionConflict with the current cell.
        Checks of this connection (role, membership) are made here, before anything is queued.
        """
        self._connection_of(actor, connection_id)
        authorize(actor, "cell_update")
        joined = self._joined(connection_id)
        sheet_room = await self.sheet_room(sheet_id)
        room_id = room_for_cell_update(sheet_id, room=room, sheet_room=sheet_room, joined_rooms=joined)
        require_member(room_id, joined)
        updated = CellUpdated(room_id, sheet_id, cell_id, value, formula, actor.user_id, actor.username)
        event = updated.new(
            self.origin(actor, connection_id, client_msg_id),
            cell=CellWrite(sheet_id, cell_id, room_id, version),
        )
        await self.live.load(room_id, self.room_view)
        outcome = await self.commit(event)
        await self._ack(connection_id, client_msg_id, room_id, outcome)

    # The user's own stream.

    async def set_status(
        self, actor: Actor, connection_id: str, status: str, *, client_msg_id: str | None = None
    ) -> None:
        """Append `UserStatusChanged`; `user_status_changed` goes to the user's other connections and to
        the members of every room the user is in (engine/fanout/live.py)."""
        self._connection_of(actor, connection_id)
        authorize(actor, "status_update")
        changed = UserStatusChanged(actor.user_id, status)
        event = changed.new(self.origin(actor, connection_id, client_msg_id))
        outcome = await self.commit(event)
        await self._ack(connection_id, client_msg_id, None, outcome)

    # Internals.

    async def _volatile(self, event: NewEvent, room: str) -> None:
        outcome = await self.commit(event)
        client_msg_id, connection_id = event.idempotency_key, event.metadata["connection_id"]
        if client_msg_id is not None and isinstance(outcome, Committed | Duplicate):
            await self.reply(connection_id, ack(client_msg_id, room_id=room))  # no place in a sequence

    async def _ack(
        self, connection_id: str, client_msg_id: str | None, room_id: str | None, outcome: AppendOutcome
    ) -> None:
        if client_msg_id is not None and isinstance(outcome, Committed | Duplicate):
            await self.reply(connection_id, ack(client_msg_id, room_id=room_id, seq=outcome.stream_version))

    def _joined(self, connection_id: str) -> set[str]:
        """The rooms whose events this connection receives: the ones it may act in."""
        topics = self._subscriber(connection_id).topics
        return {room_id_of(t) for t in topics if t.startswith(ROOM_STREAM_PREFIX)}

    async def _own_join(self, duplicate: Duplicate, event: NewEvent) -> bool:
        """Whether the event a repeated key points at is this connection's join of this room."""
        found = await self.store.read_all(after=duplicate.position - 1, limit=1)
        original = found[0] if found else None
        return (
            original is not None
            and original.type == USER_JOINED_ROOM
            and original.stream_id == event.stream_id
            and original.data.get("connection_id") == event.data["connection_id"]
        )

    async def _room_exists(self, room_id: str) -> bool:
        """Whether the room's stream has events: this node's view when it has one, else the log now.

        Read before the join's append, not inside it: with auto-creation off a join only ever adds to
        a stream that already has events, so two first joins of an unknown room racing each other are
        harmless (both are refused, neither creates anything), and a room, once it has events, never
        stops existing. Nothing is cached for a refused room.
        """
        cached = self.live.view(room_id, shown=False)
        if cached is not None and cached.seq > 0:
            return True
        return bool(await self.read_stream(room_stream(room_id), limit=1))

    async def _reloaded(self, room_id: str) -> RoomView:
        """The view after the cache dropped it (it fell behind the log): read it again."""
        return await self.live.load(room_id, self.room_view)
