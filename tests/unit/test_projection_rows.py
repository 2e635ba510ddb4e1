"""Views as rows and back (engine/readmodels/rows/): the property the projector runner and the
rebuild rely on. Folding a log in one go gives the same rows as folding part of it, storing the views
as rows, loading them back and folding the rest: so a runner resuming from its tables writes what a
rebuild from zero writes."""

from __future__ import annotations

from dataclasses import fields

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.log import schema
from engine.model import catalogue as cat
from engine.model.errors import UnknownEvent
from engine.model.events import RecordedEvent
from engine.readmodels import runner
from engine.readmodels.rows import MODELS, ReadModel, Rows, TableSpec, Views, fold_all, route, rows_of
from tests.unit.event_log import Log, at, sessions


def _stored(model: ReadModel, rows: Rows) -> Rows:
    """Rows as PostgreSQL gives them back: JSON columns decoded from their text."""
    jsonb = {table.name: {name for name, kind in table.columns if kind == "jsonb"} for table in model.tables}
    return {
        table: [
            {k: orjson.loads(orjson.dumps(v)) if k in jsonb[table] else v for k, v in row.items()}
            for row in rows_
        ]
        for table, rows_ in rows.items()
    }


def _all_rows(views: Views) -> dict[str, Rows]:
    return {model.name: rows_of(model, views.get(model.name, {}).values()) for model in MODELS}


def _resumed(events: list[RecordedEvent], split: int) -> dict[str, Rows]:
    """Fold events[:split], round-trip every view through its rows, fold the rest."""
    first: Views = {}
    fold_all(MODELS, events[:split], first)
    restored: Views = {}
    for model in MODELS:
        for key, view in first.get(model.name, {}).items():
            per_table: Rows = {table.name: [] for table in model.tables}
            for table, rows in _stored(model, model.to_rows(view)).items():
                per_table[table].extend(rows)
            restored.setdefault(model.name, {})[key] = model.from_rows(key, per_table)
    fold_all(MODELS, events[split:], restored)
    return _all_rows(restored)


def _from_zero(events: list[RecordedEvent]) -> dict[str, Rows]:
    views: Views = {}
    fold_all(MODELS, events, views)
    return _all_rows(views)


@settings(max_examples=200, deadline=None)
@given(events=sessions(), cut=st.floats(0, 1))
def test_rows_of_a_resumed_fold_equal_a_fold_from_zero(events: list[RecordedEvent], cut: float) -> None:
    split = int(len(events) * cut)
    assert _resumed(events, split) == _from_zero(events)


def _uploads_and_ai() -> list[RecordedEvent]:
    log = Log()
    log.joined("r", "ann", "c1")
    log.user(
        "ann",
        cat.FILE_UPLOAD_STARTED,
        1,
        file_id="f",
        filename="a.csv",
        file_size=10,
        mime_type="text/csv",
    )
    log.user("ann", cat.FILE_UPLOAD_PROGRESSED, 2, file_id="f", bytes_uploaded=4, total_bytes=10)
    log.user("ann", cat.FILE_UPLOAD_COMPLETED, 3, file_id="f", url="/f", size=10, sha256="ab")
    # A failed attempt and the next one of the same id: the row must resume as a new attempt.
    log.user("ann", cat.FILE_UPLOAD_STARTED, 3, file_id="g", filename="b.csv", file_size=99, mime_type="")
    log.user("ann", cat.FILE_UPLOAD_PROGRESSED, 3, file_id="g", bytes_uploaded=40, total_bytes=99)
    log.user("ann", cat.FILE_UPLOAD_FAILED, 3, file_id="g", reason=cat.TOO_LARGE, bytes_uploaded=50)
    log.user("ann", cat.FILE_UPLOAD_STARTED, 4, file_id="g", filename="c.csv", file_size=9, mime_type="")
    log.user(
        "ann",
        cat.AI_REQUEST_STARTED,
        4,
        request_id="q",
        query="sum",
        sheet_id="s",
        context={"r": [1, 2]},
    )
    log.user("ann", cat.AI_PROGRESSED, 5, request_id="q", progress=40, status="reading")
    log.user("ann", cat.AI_COMPLETED, 6, request_id="q", result={"sum": 3}, processing_time=0.5)
    log.user("bob", cat.AI_REQUEST_STARTED, 7, request_id="q", query="avg", sheet_id="s", context=None)
    log.user("bob", cat.AI_CANCELLED, 8, request_id="q", reason="user")
    return log.events


def _crowded() -> list[RecordedEvent]:
    """Several members, typists and notifications at once: their order must survive the rows."""
    log = Log()
    for n, user in enumerate(("cy", "ann", "bob")):
        log.joined("r", user, f"c{n}", n)
    log.joined("r", "ann", "c9", 4)
    log.cursor("r", "bob", 3, 4, "A1", 5)
    log.typing("r", "cy", "B2", "c0", 6)
    log.typing("r", "ann", "A1", "c1", 7)
    log.typing("r", "cy", "B2", "c0", 8)  # a refreshed start moves to the end
    for nid in ("n3", "n1", "n2"):
        log.user("bob", cat.NOTIFICATION_CREATED, 9, notification={"id": nid, "title": nid})
    log.user("bob", cat.NOTIFICATION_READ, 10, notification_id="n1")
    log.user("ann", cat.USER_STATUS_CHANGED, 11, status="away")
    log.left("r", "ann", "c1", 12)
    log.left("r", "cy", None, 13)
    log.joined("r", "cy", "c5", 14)
    return log.events


@pytest.mark.parametrize("events", [_uploads_and_ai(), _crowded()], ids=["uploads-ai", "crowded"])
def test_every_split_resumes_to_the_rows_of_a_fold_from_zero(events: list[RecordedEvent]) -> None:
    for split in range(len(events) + 1):
        assert _resumed(events, split) == _from_zero(events), f"split at {split}"


def test_rows_say_what_the_views_hold() -> None:
    rows = _from_zero(_uploads_and_ai())
    upload, again = sorted(rows["uploads"]["uploads"], key=lambda row: row["file_id"])
    assert (upload["status"], upload["percentage"], upload["completed_at"]) == ("complete", 100.0, at(3))
    assert (again["status"], again["filename"], again["bytes_uploaded"], again["started_at"]) == (
        "started",
        "c.csv",
        0,
        at(4),
    )
    requests = {(r["user_id"], r["request_id"]): r for r in rows["ai_requests"]["ai_requests"]}
    assert requests[("ann", "q")]["result"] == {"sum": 3} and requests[("ann", "q")]["context"] == {
        "r": [1, 2]
    }
    assert requests[("bob", "q")]["status"] == "cancelled"
    [room] = rows["rooms"]["rooms"]
    assert (room["room_id"], room["user_count"], room["seq"], room["attendance_users"]) == (
        "r",
        1,
        1,
        ["ann"],
    )
    [member] = rows["rooms"]["room_members"]
    assert (member["user_id"], member["ordinal"], member["connections"]) == ("ann", 0, ["c1"])


def test_route_skips_streams_of_no_read_model_and_refuses_unknown_types() -> None:
    log = Log()
    log.append("tool:probe", "Probed", {"n": 1})
    joined = log.joined("r", "ann", "c1")
    declared = log.user("ann", cat.USER_STATUS_CHANGED, status="busy")
    routed = route(MODELS, log.events)
    assert routed["rooms"] == {"r": [joined]} and routed["declared_statuses"] == {"ann": [declared]}
    assert all(not routed[name] for name in ("typing", "notifications", "uploads", "ai_requests"))
    log.append("room:r", "SomethingNew", {"room_id": "r"})
    with pytest.raises(UnknownEvent):
        route(MODELS, log.events)


def test_every_table_key_is_among_its_columns() -> None:
    for model in MODELS:
        for table in model.tables:
            assert set(table.key) <= set(table.column_names) and set(model.owner) <= set(table.key)


@pytest.mark.parametrize("table", [t for model in MODELS for t in model.tables], ids=lambda t: t.name)
def test_a_tables_key_and_partition_are_its_primary_key(table: TableSpec) -> None:
    """The runner replaces a changed row in place, `ON CONFLICT` on the key and the partition: a key
    that were not the table's primary key would make that statement fail, or match the wrong rows."""
    primary = {column.name for column in schema.metadata.tables[table.name].primary_key.columns}
    assert primary == {"partition", *table.key}
    assert len(table.key) + 1 == len(primary)


def test_the_runners_page_read_selects_the_columns_in_a_recorded_events_order() -> None:
    """The runner builds each event from its row by position."""
    selected = runner._READ_EVENTS.split("SELECT", 1)[1].split("FROM", 1)[0]
    assert [column.strip() for column in selected.split(",")] == [f.name for f in fields(RecordedEvent)]
