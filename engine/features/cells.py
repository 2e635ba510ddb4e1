"""Cells: `cell_update`, and which room each sheet belongs to.

A sheet belongs to the room it was claimed for before its first edit (`SheetClaimed`, the first event
of `sheet:{sheet_id}`: engine/features/claims.py), so two rooms racing for a new sheet, on any nodes,
cannot both have it. The version rule and the sheet's room are decided by the writer inside the
append, against the cell as of the head it commits on (engine/log/batch_plan.py), so two nodes can
never both accept updates on one base version; a stale base raises VersionConflict with the current
cell. What depends only on the sending connection (role, membership, which room the update names)
is checked here, before anything is queued.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from functools import partial
from typing import Any

from cachetools import FIFOCache

from engine.decisions.access import authorize, require_member
from engine.decisions.cells import (
    check_cell_count,
    check_sheet_room,
    next_cell_version,
    room_for_cell_update,
)
from engine.fanout.live import Live, LoadRoom
from engine.features.claims import claim
from engine.features.connections import Connections
from engine.features.ports import Commit, Reply, Submit, Submitted, acknowledge
from engine.model.actors import Actor
from engine.model.catalogue import CellsUpdated, CellUpdated, SheetClaimed
from engine.model.events import Origin
from engine.model.reading import ReadStream
from engine.projections.cells import SheetAtHead
from engine.protocol import sheet_state
from engine.protocol.inbound import CellChange


class SheetRooms:
    """The room each sheet was claimed for, read from the `sheets` table the writer keeps from the
    claims, and cached once known: a sheet's room never changes, so the cache can never be stale. It
    keeps the `max_known` sheets learned last (a long-running node sees ever more sheets); one
    dropped is read again when asked for."""

    def __init__(self, read: Callable[[str], Awaitable[str | None]], *, max_known: int = 100_000) -> None:
        self._read = read
        self._known: FIFOCache[str, str] = FIFOCache(max_known)

    async def room_of(self, sheet_id: str) -> str | None:
        """None: the sheet was never claimed."""
        room = self._known.get(sheet_id)
        if room is None:
            room = await self._read(sheet_id)
            if room is not None:
                self.learn(sheet_id, room)
        return room

    def known(self, sheet_id: str) -> str | None:
        """The sheet's room if this node knows it, without reading."""
        return self._known.get(sheet_id)

    def learn(self, sheet_id: str, room_id: str) -> None:
        self._known[sheet_id] = room_id


ReadSheet = Callable[[str], Awaitable[SheetAtHead | None]]


class Cells:
    def __init__(
        self,
        *,
        node_id: str,
        connections: Connections,
        live: Live,
        load_room: LoadRoom,
        sheet_rooms: SheetRooms,
        read_sheet: ReadSheet,
        read_stream: ReadStream,
        commit: Commit,
        submit: Submit,
        reply: Reply,
        max_cells: int = 1000,
    ) -> None:
        self._node_id = node_id
        self.max_cells = max_cells  # MAX_CELLS_PER_UPDATE
        self._connections = connections
        self._live = live
        self._load_room = load_room
        self._sheet_rooms = sheet_rooms
        self._read_sheet = read_sheet
        self._read_stream = read_stream
        self._commit = commit
        self._submit = submit
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
        room_id = self._room_of_update(sheet_id, room, sheet_room, connection.rooms, "cell_update")
        origin = Origin.of(self._node_id, actor, connection_id, client_msg_id)
        if sheet_room is None:
            await self._claim(sheet_id, room_id, origin, (version,))
        updated = CellUpdated(room_id, sheet_id, cell_id, value, formula, actor.user_id, actor.username)
        event = updated.new(origin, cells=updated.writes(version))
        await self._live.load(room_id, self._load_room)
        outcome = await self._commit(event)
        await acknowledge(self._reply, connection_id, client_msg_id, outcome, room_id=room_id)

    def submit_update(
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
    ) -> Submitted | None:
        """`update` without waiting, so that a connection's next message can be read before this one
        commits: when everything it checks is known here (the sheet's room, the room's view), its
        event is queued at once, behind the connection's earlier ones. None when `update` must do it
        (it would read first, or claim the sheet); the same checks raise the same errors."""
        connection = self._connections.of(actor, connection_id)
        authorize(actor, "cell_update")
        sheet_room = self._sheet_rooms.known(sheet_id)
        if sheet_room is None:
            return None
        room_id = self._room_of_update(sheet_id, room, sheet_room, connection.rooms, "cell_update")
        if self._live.view(room_id, shown=False) is None:
            return None
        origin = Origin.of(self._node_id, actor, connection_id, client_msg_id)
        updated = CellUpdated(room_id, sheet_id, cell_id, value, formula, actor.user_id, actor.username)
        settled = self._submit(updated.new(origin, cells=updated.writes(version)))
        if settled is None:
            return None
        answer = partial(acknowledge, self._reply, connection_id, client_msg_id, room_id=room_id)
        return Submitted(settled, answer)

    @staticmethod
    def _room_of_update(
        sheet_id: str,
        room: str | None,
        sheet_room: str | None,
        joined: Collection[str],
        message_type: str,
    ) -> str:
        room_id = room_for_cell_update(
            sheet_id, room=room, sheet_room=sheet_room, joined_rooms=joined, message_type=message_type
        )
        require_member(room_id, joined)
        return room_id

    async def load(self, actor: Actor, connection_id: str, sheet_id: str) -> None:
        """Answer `load_sheet` with `sheet_state`: the sheet as of its room's seq. A read: nothing is
        appended. PERMISSION_DENIED unless the connection is in the sheet's room."""
        connection = self._connections.of(actor, connection_id)
        sheet = await self._read_sheet(sheet_id)
        if sheet is None:
            await self._reply(connection_id, sheet_state(sheet_id, None, 0, {}))
            return
        require_member(sheet.room_id, connection.rooms)
        await self._reply(connection_id, sheet_state(sheet_id, sheet.room_id, sheet.seq, sheet.cells))

    async def update_range(
        self,
        actor: Actor,
        connection_id: str,
        sheet_id: str,
        changes: Sequence[CellChange],
        *,
        room: str | None = None,
        client_msg_id: str | None = None,
    ) -> None:
        """Append one `CellsUpdated` for a range: every cell follows the `cell_update` version rule,
        and if any is stale nothing is applied (VERSION_CONFLICT with each stale cell). Every member,
        the sender included, gets one `cells_updated`."""
        connection = self._connections.of(actor, connection_id)
        authorize(actor, "cells_update")
        check_cell_count(len(changes), self.max_cells)
        sheet_room = await self._sheet_rooms.room_of(sheet_id)
        room_id = self._room_of_update(sheet_id, room, sheet_room, connection.rooms, "cells_update")
        cells = tuple({"cell_id": c.cell_id, "value": c.value, "formula": c.formula} for c in changes)
        origin = Origin.of(self._node_id, actor, connection_id, client_msg_id)
        if sheet_room is None:
            await self._claim(sheet_id, room_id, origin, [c.version for c in changes])
        updated = CellsUpdated(room_id, sheet_id, actor.user_id, actor.username, cells)
        event = updated.new(origin, cells=updated.writes({c.cell_id: c.version for c in changes}))
        await self._live.load(room_id, self._load_room)
        outcome = await self._commit(event)
        await acknowledge(self._reply, connection_id, client_msg_id, outcome, room_id=room_id)

    async def _claim(
        self, sheet_id: str, room_id: str, origin: Origin, versions: Iterable[int | None]
    ) -> None:
        """Claim the sheet for `room_id` before its first edit, based on `versions`
        (engine/features/claims.py); ValidationFailed when another room's claim came first. An edit
        the writer would refuse for its versions claims nothing."""
        for version in versions:
            next_cell_version(None, version)
        claimed = await claim(self._commit, self._read_stream, SheetClaimed(sheet_id, room_id), origin)
        sheet_room = str(claimed["room_id"])
        self._sheet_rooms.learn(sheet_id, sheet_room)
        check_sheet_room(sheet_id, room_id, sheet_room)


__all__ = ["Cells", "SheetRooms"]
