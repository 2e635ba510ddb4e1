"""Rooms: `join_room` and `leave_room`, and the room's view as this node keeps it.

A join appends `UserJoinedRoom`, sends the joiner its `room_state` (and, with `since`, every room event
after `since`, then `replay_complete`), then goes live; the other members get the join's `room_state`
and `user_joined` from the publish. The catch-up (engine/fanout/catch_up.py) is entered before the
append, so nothing committed after the view is lost or repeated between the replay and live events.

A join belongs to its connection: its idempotency key is the `client_msg_id` scoped to the connection
(`connection_key`, engine/model/events.py), as a notification subscription's is. A repeat on the
connection that joined finds its join: nothing is appended and the ack repeats that join's `seq`. The
same id from a new connection (the first one dropped before its ack) must still make the new one a
member, or it would receive the room's events unseen by the room: under its own key it is a join of
its own, and its repeats on that connection are in turn answered with its `seq`, appending nothing.
Both joins carry the id in their metadata, which is all that ties them together.

A connection that left the room after joining under an id, then sends that id again, is not a
member: the key is spent, so that join is appended keyless.

A leave's key is the plain `client_msg_id`. Its repeat on a connection that has left is answered
with the original `ack` before any check (engine/session.py). A connection still in the room whose
leave is a Duplicate either retries a leave whose answer was lost (the store committed it, the
connection never heard) or reuses the id of a leave that ended an earlier stay (it joined again
since) or another connection's. The log tells which: if the room's stream still has the connection
in the room, its leave is appended keyless (the key is spent), or the connection would stay in the
room for good. This node's view cannot tell: it may not have folded the lost leave yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

from engine.decisions.access import check_join, require_in_room
from engine.fanout.hub import Hub
from engine.fanout.live import Live
from engine.features.connections import Connections
from engine.features.ports import Commit, Reply, acknowledge
from engine.model.actors import Actor
from engine.model.catalogue import LEFT, UserJoinedRoom, UserLeftRoom
from engine.model.errors import ValidationFailed
from engine.model.events import Committed, Duplicate, Origin, RecordedEvent, connection_key
from engine.model.identifiers import identifier_problem
from engine.model.reading import ReadStream, read_through
from engine.model.streams import room_stream
from engine.projections.presence import ONLINE
from engine.projections.rooms import RoomView, project, project_with_stays, with_cursors, with_statuses
from engine.protocol import Envelope, room_left, room_state
from engine.protocol.rendering import ReplayRenderer, encode

ReadStatuses = Callable[[Sequence[str]], Awaitable[Mapping[str, str]]]  # user ids -> declared status
# (room id, user ids) -> each user's newest CursorMoved in the room, in position order
ReadCursors = Callable[[str, Sequence[str]], Awaitable[Sequence[RecordedEvent]]]


class Rooms:
    def __init__(
        self,
        *,
        node_id: str,
        connections: Connections,
        live: Live,
        hub: Hub,
        commit: Commit,
        reply: Reply,
        read_stream: ReadStream,
        read_statuses: ReadStatuses,
        read_cursors: ReadCursors,
        auto_create: bool = True,
        max_rooms_per_connection: int = 100,
    ) -> None:
        self._node_id = node_id
        self._connections = connections
        self._live = live
        self._hub = hub
        self._commit = commit
        self._reply = reply
        self._read_stream = read_stream
        self._read_statuses = read_statuses
        self._read_cursors = read_cursors
        self.auto_create = auto_create  # ROOM_AUTO_CREATE
        self.max_rooms_per_connection = max_rooms_per_connection  # MAX_ROOMS_PER_CONNECTION

    async def join(
        self,
        actor: Actor,
        room_id: str,
        connection_id: str,
        *,
        since: int | None = None,
        client_msg_id: str | None = None,
    ) -> RoomView:
        """Join, send the joiner `room_state` (and the replay), go live; returns the view sent.

        Raises ValidationFailed, PermissionDenied, RoomNotFound, StoreUnavailable (retryable),
        SubscriberClosed.
        """
        connection = self._connections.of(actor, connection_id)
        if (problem := identifier_problem(room_id)) is not None:
            raise ValidationFailed(f"room_id {problem}")
        connection.check_room_cap(room_id, self.max_rooms_per_connection)
        check_join(actor, room_id, room_exists=True)  # role and `rooms` patterns, before any read
        if not self.auto_create:
            check_join(actor, room_id, room_exists=await self.exists(room_id), auto_create=False)
        current = await self._live.load(room_id, self.view)
        # Declared statuses made before this node saw them (or elsewhere) show in `room_state` too.
        unknown = self._live.unknown_statuses([actor.user_id, *current.members])
        if unknown:
            declared = await self._read_statuses(unknown)
            self._live.restore_statuses({uid: declared.get(uid, ONLINE) for uid in unknown})
        if since is not None and since > current.seq:
            raise ValidationFailed(
                f"since {since} is beyond room {room_id!r}'s seq {current.seq}", seq=current.seq
            )
        was_in = connection.begin_join(room_id)  # before the append: see engine/features/connections.py
        status = self._live.declared_status(actor.user_id)  # read above if this node did not know it
        joined = UserJoinedRoom(room_id, actor.user_id, actor.username, actor.email, connection_id, status)
        origin = Origin.of(self._node_id, actor, connection_id, client_msg_id)
        event = joined.new(origin, key=connection_key(client_msg_id, connection_id))
        async with self._hub.catch_up(connection_id, room_stream(room_id)) as catch_up:
            outcome = await self._commit(event)
            if isinstance(outcome, Duplicate) and not was_in:
                # The key names this connection, so its join under this id is in the log: in (or
                # joining) the room, this is that join's repeat; out of it, it has left since and
                # needs a join again, keyless (the key is spent).
                outcome = await self._commit(replace(event, idempotency_key=None))
            # Taken together, before any await: the replay below starts exactly where this view ends.
            raw = self._live.view(room_id, shown=False) or await self._live.load(room_id, self.view)
            view = with_statuses(raw, self._live.statuses(raw))
            if since is None:
                # The room as it is, then the events committed after this view until live.
                await catch_up.send(encode([room_state(view)]))
                renderer = ReplayRenderer(raw, self._live.statuses)
                await catch_up.replay(self._read_stream, renderer, since=raw.seq)
            else:
                # A resume: the missed events, then the room as of the last of them, then live.
                events = await read_through(self._read_stream, room_stream(room_id), upto=since)
                renderer = ReplayRenderer(
                    project(events, room_id),
                    self._live.statuses,
                    with_state=False,
                    current=lambda: self._live.view(room_id, shown=False),
                )
                await catch_up.replay(self._read_stream, renderer, since=since, complete=renderer.completion)
                view = with_statuses(renderer.view, self._live.statuses(renderer.view))
        connection.joined(room_id)
        await acknowledge(self._reply, connection_id, client_msg_id, outcome, room_id=room_id)
        return view

    async def leave(
        self,
        actor: Actor,
        room_id: str,
        connection_id: str,
        *,
        client_msg_id: str | None = None,
        reason: str = LEFT,
    ) -> None:
        """Append `UserLeftRoom` (reason "left", or "revoked" when a refreshed token no longer allows
        the room); the leaver gets `room_left` with that reason, the remaining members `room_state` and
        `user_left`.
        ROOM_NOT_FOUND if this connection is not in the room."""
        connection = self._connections.of(actor, connection_id)
        require_in_room(room_id, connection.departures)
        await self._live.load(room_id, self.view)
        left = UserLeftRoom(room_id, actor.user_id, connection_id, reason)
        event = left.new(Origin.of(self._node_id, actor, connection_id, client_msg_id))
        outcome = await self._commit(event)
        if isinstance(outcome, Duplicate) and await self._in_log(room_id, actor.user_id, connection_id):
            outcome = await self._commit(replace(event, idempotency_key=None))  # see the module docstring
        connection.left(room_id)
        self._hub.leave(connection_id, room_stream(room_id))  # done by the publish, unless a Duplicate
        if isinstance(outcome, Committed | Duplicate):
            envelope = Envelope(room_id, outcome.stream_version, outcome.recorded_at, client_msg_id)
            await self._reply(connection_id, room_left(room_id, reason, envelope=envelope))
        await acknowledge(self._reply, connection_id, client_msg_id, outcome, room_id=room_id)

    async def _in_log(self, room_id: str, user_id: str, connection_id: str) -> bool:
        """Whether the room's stream, read now, has the connection in the room. The whole stream is
        read, but only for a leave's Duplicate while its connection is in the room: a rare path."""
        room = project(await read_through(self._read_stream, room_stream(room_id)), room_id)
        member = room.members.get(user_id)
        return member is not None and connection_id in member.connections

    async def view(self, room_id: str) -> RoomView:
        """The room projected from its whole stream (the live views start from this), with the cursors
        its members last moved during their stay: those are volatile events, not in the stream, and a
        live view folds them as they come, so a view read here must show them too."""
        view, began = project_with_stays(await read_through(self._read_stream, room_stream(room_id)), room_id)
        if not view.members:
            return view
        return with_cursors(view, began, await self._read_cursors(room_id, list(view.members)))

    async def exists(self, room_id: str) -> bool:
        """Whether the room's stream has events: this node's view when it has one, else the log now.

        Read before the join's append, not inside it: with auto-creation off a join only ever adds to
        a stream that already has events, so two first joins of an unknown room racing each other are
        harmless (both are refused, neither creates anything), and a room, once it has events, never
        stops existing. Nothing is cached for a refused room.
        """
        cached = self._live.view(room_id, shown=False)
        if cached is not None and cached.seq > 0:
            return True
        return bool(await self._read_stream(room_stream(room_id), limit=1))


__all__ = ["Rooms"]
