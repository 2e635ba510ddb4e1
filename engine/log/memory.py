"""`MemoryEventStore`: the event log's interface over lists in memory, for tests of the parts above it.

It decides every batch with the same pure `plan` as the PostgreSQL writer (engine/log/batch_plan.py):
idempotency keys, expected versions, cell versions and a sheet's room give the same outcomes, and the
contract suite (tests/contract/) runs the same assertions against both stores. What it cannot show is
what only a database has: durability, concurrency between processes, and commit order across nodes.

Rows go through JSON on the way in, as they do into jsonb, so data that PostgreSQL could not hold is
refused here too (TypeError) and no caller shares a dict with the log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import orjson

from engine.log import jsonb
from engine.log.batch_plan import CellKey, IdempotencyKey, LogState, idempotency_key, plan
from engine.log.store import CURSOR_WINDOW
from engine.model.catalogue import CURSOR_MOVED, FILE_CLAIM_EVENTS, UPLOAD_EVENTS, USER_STATUS_CHANGED
from engine.model.events import AppendOutcome, Duplicate, NewEvent, RecordedEvent
from engine.model.streams import durable_stream, file_stream, room_stream, user_stream, volatile_stream
from engine.projections.cells import Cell, SheetAtHead
from engine.protocol import iso

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MemoryEventStore:
    def __init__(self, clock: Clock = _utc_now) -> None:
        self.events: list[RecordedEvent] = []
        self._clock = clock
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._keys: dict[IdempotencyKey, Duplicate] = {}
        self._cells: dict[CellKey, Cell] = {}
        self._sheets: dict[str, str] = {}
        self.paths = {"memory": 0}

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        """Decide and write a batch at once (nothing else runs in between: one event loop)."""
        if not items:
            return []
        cell_keys = {(w.sheet_id, w.cell_id) for i in items for w in i.cells}
        keys = {used for i in items if (used := idempotency_key(i)) is not None}
        state = LogState(
            head=len(self.events),
            versions={i.stream_id: len(self._streams.get(i.stream_id, ())) for i in items},
            used_keys={key: self._keys[key] for key in keys if key in self._keys},
            cells={key: self._cells.get(key) for key in cell_keys},
            sheets={sheet: self._sheets.get(sheet) for sheet, _ in cell_keys},
        )
        decided = plan(state, items)
        if not decided.rows:
            return decided.resolve(None)
        rows = orjson.loads(jsonb.encode(decided.rows))  # what jsonb would hold; TypeError if it cannot
        at = max(self._clock(), self.events[-1].recorded_at) if self.events else self._clock()
        for row in rows:
            event = RecordedEvent(
                row["p"], row["s"], row["v"], row["t"], row["d"], row["m"], at, row["u"], row["k"]
            )
            self.events.append(event)
            self._streams.setdefault(event.stream_id, []).append(event)
            if event.user_id and event.idempotency_key:
                used = (durable_stream(event.stream_id), event.user_id, event.idempotency_key)
                self._keys[used] = Duplicate(event.position, event.stream_version, at)
        for key, cell in decided.learned_cells(at).items():
            self._cells[key] = replace(cell, position=int(decided.cell_rows[key]["position"]))
        self._sheets.update({sheet: str(row["room_id"]) for sheet, row in decided.sheet_rows.items()})
        self.paths["memory"] += 1
        return decided.resolve(at)

    def writer(self, partition: int = 0, partitions: int = 1) -> MemoryEventStore:
        """The appender's writer: this store itself (there is no connection to hold)."""
        return self

    async def partitions(self) -> int:
        """One: a log in memory has no lock for partitions to spare."""
        return 1

    async def close(self) -> None:
        return None

    async def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        return self._streams.get(stream_id, [])[after_version : after_version + limit]

    async def read_all(self, after: int = 0, limit: int = 1000, partition: int = 0) -> list[RecordedEvent]:
        return self.events[after : after + limit] if partition == 0 else []

    async def head(self) -> int:
        return len(self.events)

    async def heads(self) -> dict[int, int]:
        return {0: len(self.events)}

    async def sheet_room(self, sheet_id: str) -> str | None:
        return self._sheets.get(sheet_id)

    async def sheet_at_head(self, sheet_id: str) -> SheetAtHead | None:
        room_id = self._sheets.get(sheet_id)
        if room_id is None:
            return None
        cells = {
            cell_id: {
                "value": cell.value,
                "formula": cell.formula,
                "version": cell.version,
                "user_id": cell.updated_by,
                "updated_at": iso(cell.updated_at),
            }
            for (sheet, cell_id), cell in self._cells.items()
            if sheet == sheet_id
        }
        seq = len(self._streams.get(room_stream(room_id), ()))
        return SheetAtHead(sheet_id, room_id, seq, cells)

    async def event_by_key(
        self, user_id: str, key: str, stream_id: str | None = None
    ) -> RecordedEvent | None:
        if stream_id is not None:
            found = self._keys.get((durable_stream(stream_id), user_id, key))
        else:
            same = [d for (_, u, k), d in self._keys.items() if u == user_id and k == key]
            found = max(same, key=lambda d: d.position) if same else None
        return self.events[found.position - 1] if found is not None else None

    async def latest_statuses(self, user_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for user_id in user_ids:
            declared = [
                e for e in self._streams.get(user_stream(user_id), ()) if e.type == USER_STATUS_CHANGED
            ]
            if declared:
                found[user_id] = str(declared[-1].data["status"])
        return found

    async def latest_cursors(self, room_id: str, user_ids: Sequence[str]) -> list[RecordedEvent]:
        recent = self._streams.get(volatile_stream(room_stream(room_id)), [])[-CURSOR_WINDOW:]
        wanted = set(user_ids)
        newest = {
            str(e.data["user_id"]): e
            for e in recent
            if e.type == CURSOR_MOVED and e.data["user_id"] in wanted
        }
        return sorted(newest.values(), key=lambda event: event.position)

    async def stream_version(self, stream_id: str) -> int:
        return len(self._streams.get(stream_id, []))

    async def file_claims(self, file_id: str) -> list[RecordedEvent]:
        claim = self._streams.get(file_stream(file_id))
        if not claim:
            return []
        owned = self._streams.get(user_stream(str(claim[0].data["user_id"])), [])
        return [e for e in owned if e.type in FILE_CLAIM_EVENTS and e.data.get("file_id") == file_id]

    async def upload_events(self, user_id: str, file_id: str) -> list[RecordedEvent]:
        streams = {user_stream(user_id), volatile_stream(user_stream(user_id))}
        return [
            e
            for e in self.events
            if e.stream_id in streams and e.type in UPLOAD_EVENTS and e.data.get("file_id") == file_id
        ]


__all__ = ["MemoryEventStore"]
