"""History and time travel (docs/protocol.md, "History and time travel"): a room's events, its state
and its sheets' cells as of any seq or time, a cell's versions, the global stream, and NDJSON export.

Reads only; the queries and folds live in engine/readmodels/history.py. A room's history is open to auditors,
admins and whoever may join the room (api/rest_auth.py `may_read_room`), checked before the room is
looked up, so a 403 says nothing about whether the room exists. The global stream needs auditor/admin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, Field

from api.attachments import content_disposition
from api.deps import EngineDep, SettingsDep
from api.params import IdPath, count_query
from api.rest_auth import ActorDep, AdminDep, AuditorDep, may_read_room, require_room_reader
from engine.model.actors import Actor
from engine.model.errors import NotFound
from engine.model.events import RecordedEvent
from engine.model.streams import is_volatile_stream
from engine.projections.cells import Cell
from engine.projections.rooms import RoomView
from engine.protocol import iso, room_state
from engine.readmodels.history import MAX_PAGE, EventFilter, History

router = APIRouter(tags=["history"])


async def get_history(engine: EngineDep, settings: SettingsDep) -> History:
    return engine.history(snapshot_every=settings.history_snapshot_interval)


HistoryDep = Annotated[History, Depends(get_history)]
Id = IdPath
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="events in a page")]
Types = Annotated[
    list[str] | None,
    Query(description="event types to keep (repeat the parameter or separate with commas); default all"),
]
Since = Annotated[AwareDatetime | None, Query(description="recorded at or after this time")]
Until = Annotated[AwareDatetime | None, Query(description="recorded at or before this time")]
AsOfSeq = Annotated[int | None, count_query("as of this seq of the room")]
AsOfTime = Annotated[AwareDatetime | None, Query(description="as of this time (ISO-8601 with zone)")]


class ErrorOut(BaseModel):
    """Every REST error (api/http_errors.py); a 422 adds `details`."""

    error: str
    code: str


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """What a route may answer besides 200, for /docs and clients generated from the schema."""
    return {status: {"model": ErrorOut, "description": _ERROR_TEXT[status]} for status in statuses}


_ERROR_TEXT = {
    401: "no token, or a bad one (AUTHENTICATION_FAILED)",
    403: "the token's roles or `rooms` do not allow this (PERMISSION_DENIED)",
    404: "no such room, sheet or cell (NOT_FOUND)",
    422: "a parameter is invalid (VALIDATION_ERROR)",
    503: "the engine is stopping or the log is unreachable (INTERNAL_ERROR)",
}
_ROOM_ERRORS = _errors(401, 403, 404, 422, 503)


class EventOut(BaseModel):
    """One event of the log as an auditor sees it."""

    position: int = Field(description="place in its partition of the log (gapless within it)")
    partition: int = Field(description="the log partition of its stream; always 0 in a log of one")
    stream_id: str
    seq: int | None = Field(description="place in its stream (a room's seq); null for volatile events")
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    user_id: str | None
    ts: str = Field(description="when it was recorded, ISO-8601 UTC")
    volatile: bool


class EventPage(BaseModel):
    events: list[EventOut]
    next_cursor: int | None = Field(
        description="pass as `cursor` (`after_position` for /events); null: no more now"
    )


class RoomUser(BaseModel):
    user_id: str
    username: str
    email: str | None
    room: str
    status: str
    cursor: dict[str, Any] | None
    last_seen: str


class RoomStateOut(BaseModel):
    """The room as `room_state` showed it at that point, each member with the status they had
    declared by then, plus the count of messages sent in it."""

    room_id: str
    seq: int
    ts: str | None = Field(description="time of the newest event folded")
    users: list[RoomUser]
    active_sheets: list[str]
    total_users: int
    messages_sent: int


class CellOut(BaseModel):
    cell_id: str
    value: Any
    formula: str | None
    version: int
    user_id: str | None
    ts: str
    seq: int = Field(description="the room seq of the update that wrote this version")


class SheetCellsOut(BaseModel):
    sheet_id: str
    room_id: str
    seq: int = Field(description="the seq of the sheet's room at that point")
    cells: dict[str, CellOut]


class CellHistoryOut(BaseModel):
    sheet_id: str
    cell_id: str
    room_id: str
    versions: list[CellOut]
    next_cursor: int | None = Field(description="pass as `after_seq` for the next page; null: no more")


class SnapshotOut(BaseModel):
    room_id: str
    seq: int
    position: int


@router.get("/rooms/{room_id:id}/events", response_model=EventPage, responses=_ROOM_ERRORS)
async def room_events(
    room_id: Id,
    actor: ActorDep,
    history: HistoryDep,
    after_seq: Annotated[int | None, count_query("start after this room seq")] = None,
    cursor: Annotated[int | None, count_query("a previous page's next_cursor")] = None,
    limit: Limit = 100,
    types: Types = None,
    since: Since = None,
    until: Until = None,
    include_volatile: bool = False,
) -> EventPage:
    """The room's events in order; volatile ones (cursor, typing) only with `include_volatile`."""
    require_room_reader(actor, room_id)
    page = await history.room_events(
        room_id,
        after_seq=after_seq,
        cursor=cursor,
        limit=limit,
        where=_filter(types, since, until),
        include_volatile=include_volatile,
    )
    return EventPage(events=[event_out(e) for e in page.events], next_cursor=page.next_cursor)


@router.get("/events", response_model=EventPage, responses=_errors(401, 403, 422, 503))
async def all_events(
    reader: AuditorDep,
    history: HistoryDep,
    after_position: Annotated[int, count_query("start after this position of the partition")] = 0,
    limit: Limit = 100,
    types: Types = None,
    since: Since = None,
    until: Until = None,
    partition: Annotated[int, count_query("the log partition to read (0 in a log of one)")] = 0,
) -> EventPage:
    """One partition of the log in position order, every stream in it (the whole log, in a log of
    one partition); no event is ever skipped between pages. A `rooms` claim (an auditor's) narrows it
    to the streams of the rooms it admits."""
    rooms = None if reader.has_role("admin") or reader.rooms is None else list(reader.rooms)
    where = _filter(types, since, until, rooms)
    page = await history.all_events(
        after_position=after_position, limit=limit, where=where, partition=partition
    )
    return EventPage(events=[event_out(e) for e in page.events], next_cursor=page.next_cursor)


@router.get("/rooms/{room_id:id}/state", response_model=RoomStateOut, responses=_ROOM_ERRORS)
async def room_state_as_of(
    room_id: Id, actor: ActorDep, history: HistoryDep, seq: AsOfSeq = None, at: AsOfTime = None
) -> RoomStateOut:
    """The room as of `seq` or `at` (at most one; with neither, as it is now), folded by the live
    path's projector, with each member's status declared by then."""
    require_room_reader(actor, room_id)
    return room_state_out(await history.room_state(room_id, seq=seq, at=at))


@router.post("/rooms/{room_id:id}/snapshots", response_model=SnapshotOut, responses=_ROOM_ERRORS)
async def snapshot_room(room_id: Id, _: AdminDep, history: HistoryDep) -> SnapshotOut:
    """Store a snapshot of the room at its current seq (a cache for "as of" reads; no event)."""
    snapshot = await history.snapshot(room_id)
    return SnapshotOut(room_id=room_id, seq=snapshot.seq, position=snapshot.position)


async def readable_sheet_room(history: History, actor: Actor, sheet_id: str) -> str:
    """The sheet's room if the caller may read it. A sheet in a room the caller may not read answers
    404 like a sheet never edited: unlike room ids, sheet ids are not in the caller's token, and a 403
    would confirm that a guessed id exists."""
    room_id = await history.sheet_room(sheet_id)
    if not may_read_room(actor, room_id):
        raise NotFound(f"sheet {sheet_id!r} was never edited")
    return room_id


@router.get("/sheets/{sheet_id:id}/cells", response_model=SheetCellsOut, responses=_ROOM_ERRORS)
async def sheet_cells_as_of(
    sheet_id: Id, actor: ActorDep, history: HistoryDep, seq: AsOfSeq = None, at: AsOfTime = None
) -> SheetCellsOut:
    """The sheet's cells as of `seq` of its room or as of `at` (at most one; with neither, as it is now)."""
    room_id = await readable_sheet_room(history, actor, sheet_id)
    found = await history.sheet_cells(sheet_id, seq=seq, at=at)
    cells = {cell_id: cell_out(cell) for cell_id, cell in found.sheet.cells.items()}
    return SheetCellsOut(sheet_id=sheet_id, room_id=room_id, seq=found.room_seq, cells=cells)


@router.get(
    "/sheets/{sheet_id:id}/cells/{cell_id:id}/history", response_model=CellHistoryOut, responses=_ROOM_ERRORS
)
async def cell_history(
    sheet_id: Id,
    cell_id: Id,
    actor: ActorDep,
    history: HistoryDep,
    after_seq: Annotated[int, count_query("versions written after this room seq")] = 0,
    limit: Limit = 100,
) -> CellHistoryOut:
    """Every version of the cell, oldest first: value, formula, version, who and when."""
    room_id = await readable_sheet_room(history, actor, sheet_id)
    versions, next_cursor = await history.cell_history(sheet_id, cell_id, after_seq=after_seq, limit=limit)
    return CellHistoryOut(
        sheet_id=sheet_id,
        cell_id=cell_id,
        room_id=room_id,
        versions=[cell_out(v) for v in versions],
        next_cursor=next_cursor,
    )


@router.get(
    "/rooms/{room_id:id}/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}}, "description": "one EventOut per line"},
        **_ROOM_ERRORS,
    },
)
async def export_room(
    room_id: Id, actor: ActorDep, history: HistoryDep, include_volatile: bool = False
) -> StreamingResponse:
    """The room's history as NDJSON, one event a line, read and sent a page at a time."""
    require_room_reader(actor, room_id)
    pages = await history.export_room(room_id, include_volatile=include_volatile)
    headers = {"Content-Disposition": content_disposition(f"{room_id}.ndjson")}
    return StreamingResponse(_ndjson(pages), media_type="application/x-ndjson", headers=headers)


def event_out(event: RecordedEvent) -> EventOut:
    volatile = is_volatile_stream(event.stream_id)
    return EventOut(
        position=event.position,
        partition=event.partition,
        stream_id=event.stream_id,
        seq=None if volatile else event.stream_version,
        type=event.type,
        data=event.data,
        metadata=event.metadata,
        user_id=event.user_id,
        ts=iso(event.recorded_at),
        volatile=volatile,
    )


def room_state_out(view: RoomView) -> RoomStateOut:
    shown = room_state(view)  # the live path's rendering, so both say the same
    del shown["type"]
    return RoomStateOut(**shown, messages_sent=view.messages_sent)


def cell_out(cell: Cell) -> CellOut:
    return CellOut(
        cell_id=cell.cell_id,
        value=cell.value,
        formula=cell.formula,
        version=cell.version,
        user_id=cell.updated_by,
        ts=iso(cell.updated_at),
        seq=cell.seq,
    )


def _filter(
    types: list[str] | None,
    since: AwareDatetime | None,
    until: AwareDatetime | None,
    rooms: list[str] | None = None,
) -> EventFilter:
    wanted = (
        None if types is None else frozenset(t.strip() for raw in types for t in raw.split(",") if t.strip())
    )
    patterns = None if rooms is None else tuple(rooms)
    return EventFilter(types=wanted or None, since=since, until=until, rooms=patterns)


async def _ndjson(pages: AsyncIterator[list[RecordedEvent]]) -> AsyncIterator[bytes]:
    async for page in pages:
        yield b"".join(orjson.dumps(event_out(e).model_dump()) + b"\n" for e in page)
