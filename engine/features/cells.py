"""Cells: `cell_update`, and which room each sheet belongs to.

The version rule and the sheet's room are decided by the writer inside the append, against the cell
as of the head it commits on (engine/log/batch_plan.py), so two nodes can never both accept updates on
one base version; a stale base raises VersionConflict with the current cell. What depends only on
the sending connection (role, membership, which room the update names) is checked here, before
anything is queued.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.decisions.access import authorize, require_member
from engine.decisions.cells import room_for_cell_update
from engine.fanout.live import Live, LoadRoom
from engine.features.connections import Connections
from engine.features.ports import Commit, Reply, acknowledge
from engine.model.actors import Actor
from engine.model.catalogue import CellUpdated
from engine.model.events import CellWrite, Origin


class SheetRooms:
    """The room of each sheet's first edit, read from the `sheets` table the writer keeps, and cached
    once known: a sheet's room never changes, so the cache can never be stale."""

    def __init__(self, read: Callable[[str], Awaitable[str | None]]) -> None:
        self._read = read
        self._known: dict[str, str] = {}

    async def room_of(self, sheet_id: str) -> str | None:
        """None: the sheet was never edited."""
        room = self._known.get(sheet_id)
        if room is None:
            room = await self._read(sheet_id)
            if room is not None:
                self._known[sheet_id] = room
        return room


class Cells:
    def __init__(
        self,
        *,
        node_id: str,
        connections: Connections,
        live: Live,
        load_room: LoadRoom,
        sheet_rooms: SheetRooms,
        commit: Commit,
        reply: Reply,
    ) -> None:
        self._node_id = node_id
        self._connections = connections
        self._live = live
        self._load_room = load_room
        self._sheet_rooms = sheet_rooms
        self._commit = commit
        self._reply = reply

    async def update(
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
        sheet's room, the sender included, and the sender gets its `ack`."""
        connection = self._connections.of(actor, connection_id)
        authorize(actor, "cell_update")
        sheet_room = await self._sheet_rooms.room_of(sheet_id)
        room_id = room_for_cell_update(
            sheet_id, room=room, sheet_room=sheet_room, joined_rooms=connection.rooms
        )
        require_member(room_id, connection.rooms)
        updated = CellUpdated(room_id, sheet_id, cell_id, value, formula, actor.user_id, actor.username)
        event = updated.new(
            Origin.of(self._node_id, actor, connection_id, client_msg_id),
            cell=CellWrite(sheet_id, cell_id, room_id, version),
        )
        await self._live.load(room_id, self._load_room)
        outcome = await self._commit(event)
        await acknowledge(self._reply, connection_id, client_msg_id, outcome, room_id=room_id)


__all__ = ["Cells", "SheetRooms"]
