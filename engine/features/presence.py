"""Presence: cursors, typing and declared status.

Cursors and typing are volatile room events: persisted to the room's volatile twin, fanned out to the
other members, never replayed, and their ack carries no `seq`. A queued, unsent cursor of the same user
is replaced by the newer one (engine/fanout/send_queue.py). A declared status is an event of the
user's own stream: it reaches the user's other connections and the members of every room the user is
in (engine/fanout/live.py). Typing nobody stopped is ended by the sweeper (typing_sweeper.py).
"""

from __future__ import annotations

from engine.decisions.access import authorize, require_member
from engine.features.connections import Connections
from engine.features.ports import Commit, Reply, acknowledge
from engine.model.actors import Actor
from engine.model.catalogue import STOPPED, CursorMoved, TypingStarted, TypingStopped, UserStatusChanged
from engine.model.events import NewEvent, Origin


class Presence:
    def __init__(self, *, node_id: str, connections: Connections, commit: Commit, reply: Reply) -> None:
        self._node_id = node_id
        self._connections = connections
        self._commit = commit
        self._reply = reply

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
        """`cursor_moved` to the other members."""
        authorize(actor, "cursor_move")
        require_member(room, self._connections.of(actor, connection_id).rooms)
        moved = CursorMoved(room, actor.user_id, actor.username, x, y, cell)
        await self._volatile(moved.new(Origin.of(self._node_id, actor, connection_id, client_msg_id)), room)

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
        require_member(room, self._connections.of(actor, connection_id).rooms)
        fields = (room, actor.user_id, actor.username, cell_id, connection_id)
        typed = TypingStarted(*fields) if started else TypingStopped(*fields, STOPPED)
        await self._volatile(typed.new(Origin.of(self._node_id, actor, connection_id, client_msg_id)), room)

    async def set_status(
        self, actor: Actor, connection_id: str, status: str, *, client_msg_id: str | None = None
    ) -> None:
        """Append `UserStatusChanged`; `user_status_changed` goes to the user's other connections and
        to the members of every room the user is in."""
        self._connections.of(actor, connection_id)
        authorize(actor, "status_update")
        changed = UserStatusChanged(actor.user_id, status)
        outcome = await self._commit(
            changed.new(Origin.of(self._node_id, actor, connection_id, client_msg_id))
        )
        await acknowledge(self._reply, connection_id, client_msg_id, outcome)

    async def _volatile(self, event: NewEvent, room: str) -> None:
        outcome = await self._commit(event)
        connection_id = str(event.metadata["connection_id"])
        await acknowledge(
            self._reply, connection_id, event.idempotency_key, outcome, room_id=room, volatile=True
        )


__all__ = ["Presence"]
