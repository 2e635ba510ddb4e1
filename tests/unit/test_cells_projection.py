"""The cells projection as given events -> expected sheet."""

from __future__ import annotations

import pytest

from engine.model.errors import UnknownEvent
from engine.projections.cells import Cell, Sheet, apply, apply_cell, attach, key_of, project, sheet_rooms
from tests.unit.event_log import Log, at

ROOM = "workspace_123"


def test_cells_projection_of_no_events_is_an_empty_sheet() -> None:
    assert project([], "sheet_123") == Sheet("sheet_123")
    assert Sheet("sheet_123").room_id is None


def test_cells_projection_seed_example_keeps_the_server_assigned_version() -> None:
    log = Log()
    log.joined(ROOM, "user_2", "c1", 0)
    log.cell(ROOM, "user_2", "sheet_123", "A1", "Hello World", 1642161000001, 5)
    sheet = project(log.events, "sheet_123")
    assert sheet == Sheet(
        "sheet_123",
        room_id=ROOM,
        cells={"A1": Cell("A1", "Hello World", None, 1642161000001, "user_2", at(5), seq=2)},
        seq=2,
        updated_at=at(5),
    )


def test_cells_projection_later_update_replaces_value_formula_and_author() -> None:
    log = Log()
    log.cell(ROOM, "alice", "s1", "A1", 1, 1, 1)
    log.room(
        ROOM,
        "CellUpdated",
        2,
        sheet_id="s1",
        cell_id="A1",
        value=3,
        formula="=1+2",
        version=2,
        user_id="bob",
        username="Bob",
    )
    log.cell(ROOM, "alice", "s1", "B2", "x", 1, 3)
    sheet = project(log.events, "s1")
    assert sheet.cells["A1"] == Cell("A1", 3, "=1+2", 2, "bob", at(2), seq=2)
    assert list(sheet.cells) == ["A1", "B2"]
    assert sheet.cells["A1"].current() == {"value": 3, "formula": "=1+2", "version": 2, "user_id": "bob"}
    assert (sheet.seq, sheet.updated_at) == (3, at(3))


def test_cells_projection_skips_other_sheets_and_other_concerns() -> None:
    log = Log()
    log.joined(ROOM, "alice", "c1", 0)
    log.cell(ROOM, "alice", "s1", "A1", "mine", 1, 1)
    log.cell(ROOM, "alice", "s2", "A1", "other sheet", 1, 2)
    log.cursor(ROOM, "alice", 1, 2, "A1", 3)
    sheet = project(log.events, "s1")
    assert {cell_id: cell.value for cell_id, cell in sheet.cells.items()} == {"A1": "mine"}
    assert key_of(log.events[0]) is None and key_of(log.events[3]) is None
    assert apply(sheet, log.events[0]) == sheet


def test_cells_projection_apply_refuses_an_update_of_another_sheet() -> None:
    log = Log()
    other = log.cell(ROOM, "alice", "s2", "A1", 1, 1)
    with pytest.raises(ValueError, match="s2"):
        apply(Sheet("s1"), other)


def test_cells_projection_raises_on_an_unknown_event_type() -> None:
    log = Log()
    event = log.append(f"room:{ROOM}", "CellDeleted", {"sheet_id": "s1", "cell_id": "A1"})
    with pytest.raises(UnknownEvent, match="CellDeleted"):
        project([event], "s1")


def test_cells_projection_sheet_as_of_seq_n() -> None:
    log = Log()
    log.joined(ROOM, "alice", "c1", 0)
    log.cell(ROOM, "alice", "s1", "A1", "first", 1, 1)
    log.joined(ROOM, "bob", "c2", 2)
    log.cell(ROOM, "bob", "s1", "A1", "second", 2, 3)
    room_events = log.stream(f"room:{ROOM}")
    assert project(room_events[:1], "s1") == Sheet("s1")
    assert project(room_events[:3], "s1").cells["A1"].value == "first"
    assert project(room_events[:4], "s1").cells["A1"] == Cell("A1", "second", None, 2, "bob", at(3), seq=4)


def test_cells_projection_sheet_stays_in_the_room_of_its_first_edit() -> None:
    log = Log()
    log.cell("r1", "alice", "s1", "A1", 1, 1, 1)
    log.cell("r2", "alice", "s1", "A1", 2, 2, 2)  # never decided so; the first room still holds
    log.cell("r2", "alice", "s2", "A1", 2, 1, 3)
    assert project(log.events, "s1").room_id == "r1"
    assert sheet_rooms(log.events) == {"s1": "r1", "s2": "r2"}


def test_cells_projection_attach_indexes_new_sheets_only() -> None:
    log = Log()
    first = log.cell("r1", "alice", "s1", "A1", 1, 1)
    again = log.cell("r1", "alice", "s1", "B2", 1, 1)
    join = log.joined("r1", "bob", "c1")
    index = attach({}, first)
    assert index == {"s1": "r1"}
    assert attach(index, again) is index
    assert attach(index, join) is index


def test_cells_projection_apply_cell_is_the_row_fold() -> None:
    log = Log()
    first = log.cell(ROOM, "alice", "s1", "A1", "a", 1, 1)
    second = log.cell(ROOM, "bob", "s1", "A1", "b", 5, 2)
    cell = apply_cell(apply_cell(None, first), second)
    assert cell == project(log.events, "s1").cells["A1"]
    with pytest.raises(ValueError, match="B2"):
        apply_cell(cell, log.cell(ROOM, "bob", "s1", "B2", "b", 1, 3))


def test_cells_projection_apply_does_not_change_the_earlier_view() -> None:
    log = Log()
    first = apply(Sheet("s1"), log.cell(ROOM, "alice", "s1", "A1", "a", 1, 1))
    second = apply(first, log.cell(ROOM, "alice", "s1", "B2", "b", 1, 2))
    assert list(first.cells) == ["A1"] and list(second.cells) == ["A1", "B2"]
    with pytest.raises(TypeError):
        first.cells["Z9"] = second.cells["B2"]  # type: ignore[index]


def test_cells_projection_carries_the_positions_the_tables_keep() -> None:
    """A cell keeps the position of the update that wrote it (the cells table stores it); it takes no
    part in equality. A sheet's position is its claim's, which this fold does not see."""
    log = Log()
    log.joined(ROOM, "alice", "c1", 0)
    log.cell(ROOM, "alice", "s1", "A1", "a", 1, 1)
    log.cell(ROOM, "alice", "s1", "B1", "b", 1, 2)
    last = log.cell(ROOM, "bob", "s1", "A1", "c", 2, 3)
    sheet = project(log.events, "s1")
    assert sheet.cells["A1"].position == last.position
    assert sheet.cells["A1"] == Cell("A1", "c", None, 2, "bob", at(3), seq=4)


def test_cells_projection_author_is_the_appending_user_as_the_writer_records_it() -> None:
    """The writer stores the event's user, else the user its data names (engine/log/batch_plan.py)."""
    from dataclasses import replace

    log = Log()
    event = log.cell(ROOM, "alice", "s1", "A1", "a", 1, 1)
    assert apply_cell(None, event).updated_by == "alice"
    assert apply_cell(None, replace(event, user_id="carol")).updated_by == "carol"
    without = replace(event, data={k: v for k, v in event.data.items() if k != "user_id"}, user_id="u1")
    assert apply_cell(None, without).updated_by == "u1"
