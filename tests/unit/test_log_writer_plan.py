"""`plan`: how a batch is decided against a state of the log, as a pure function."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.log.batch_plan import LogState, plan
from engine.model.catalogue import SheetClaimed
from engine.model.errors import ValidationFailed, VersionConflict
from engine.model.events import CellWrite, Committed, Conflict, Duplicate, NewEvent, Origin, Refused
from engine.projections.cells import Cell

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def ev(stream: str, **kw: object) -> NewEvent:
    return NewEvent(stream_id=stream, type="Happened", data={}, **kw)  # type: ignore[arg-type]


def test_plan_assigns_positions_after_the_head_and_versions_per_stream() -> None:
    p = plan(LogState(head=10, versions={"a": 3}, used_keys={}), [ev("a"), ev("b"), ev("a")])
    assert p.base == 10 and p.new_head == 13
    assert p.resolve(AT) == [Committed(11, 4, AT), Committed(12, 1, AT), Committed(13, 5, AT)]
    assert p.versions == {"a": 5, "b": 1}
    assert [(r["p"], r["s"], r["v"]) for r in p.rows] == [(11, "a", 4), (12, "b", 1), (13, "a", 5)]


def test_plan_conflict_takes_no_position_and_later_items_see_earlier_ones() -> None:
    items = [ev("a", expected_version=2), ev("a", expected_version=3), ev("a", expected_version=4)]
    p = plan(LogState(head=0, versions={"a": 3}, used_keys={}), items)
    assert p.resolve(AT) == [Conflict(2, 3), Committed(1, 4, AT), Committed(2, 5, AT)]


def test_plan_used_key_is_a_duplicate_of_the_original() -> None:
    original = Duplicate(5, 2, AT)
    p = plan(
        LogState(head=9, versions={}, used_keys={("a", "u", "k"): original}),
        [ev("a", user_id="u", idempotency_key="k"), ev("a", user_id="v", idempotency_key="k")],
    )
    assert p.resolve(AT) == [original, Committed(10, 1, AT)]


def test_plan_a_key_is_unique_per_user_and_stream() -> None:
    """The same user's key in another stream is another message (PROTOCOL: ids scoped per stream)."""
    original = Duplicate(5, 2, AT)
    p = plan(
        LogState(head=9, versions={}, used_keys={("a", "u", "k"): original}),
        [ev("b", user_id="u", idempotency_key="k"), ev("a", user_id="u", idempotency_key="k")],
    )
    assert p.resolve(AT) == [Committed(10, 1, AT), original]


def test_plan_key_repeated_in_one_batch_points_at_its_first_item() -> None:
    later = datetime(2026, 11, 26, 12, 1, tzinfo=UTC)
    items = [ev("a", user_id="u", idempotency_key="k"), ev("a", user_id="u", idempotency_key="k")]
    p = plan(LogState(head=0, versions={}, used_keys={}), items)
    assert len(p.rows) == 1
    assert p.resolve(later) == [Committed(1, 1, later), Duplicate(1, 1, later)]


def test_plan_does_not_change_the_state_it_was_given() -> None:
    versions = {"a": 1}
    plan(LogState(head=0, versions=versions, used_keys={}), [ev("a"), ev("c")])
    assert versions == {"a": 1}


def test_plan_with_nothing_to_write_keeps_the_head() -> None:
    p = plan(LogState(head=4, versions={"a": 1}, used_keys={}), [ev("a", expected_version=0)])
    assert p.rows == [] and p.new_head == 4
    assert p.resolve(None) == [Conflict(0, 1)]


# Cell writes: decided against the cell as of the head, and against earlier items of the batch.


def cell_ev(cell: str = "A1", version: int | None = None, room: str = "r1", sheet: str = "s1") -> NewEvent:
    return NewEvent(
        stream_id=f"room:{room}",
        type="CellUpdated",
        data={"sheet_id": sheet, "cell_id": cell, "value": "v", "formula": None},
        user_id="u1",
        cells=(CellWrite(sheet, cell, room, version, "v"),),
    )


CLAIMED = LogState(head=0, versions={"sheet:s1": 1}, used_keys={}, sheets={"s1": "r1"})


def test_plan_cell_write_gets_the_seed_version_on_a_new_cell() -> None:
    p = plan(CLAIMED, [cell_ev(version=1642161000000)])
    (outcome,) = p.resolve(AT)
    assert isinstance(outcome, Committed) and outcome.data is not None
    assert outcome.data["version"] == 1642161000001
    assert p.cell_rows[("s1", "A1")]["version"] == 1642161000001
    assert p.sheet_rows == {}  # the claim wrote the sheet's row


def test_plan_a_sheet_claim_writes_its_row_and_the_edits_after_it_in_the_batch_rely_on_it() -> None:
    claim = SheetClaimed("s1", "r1").claim(Origin("n", "u1"))
    late = SheetClaimed("s1", "r2").claim(Origin("n", "u2"))
    p = plan(LogState(head=0, versions={}, used_keys={}), [claim, cell_ev(), late, cell_ev(room="r2")])
    claimed, edited, lost, refused = p.resolve(AT)
    assert isinstance(claimed, Committed) and isinstance(edited, Committed)
    assert lost == Conflict(0, 1)
    assert isinstance(refused, Refused) and refused.error.details["room"] == "r1"
    assert p.sheet_rows == {"s1": {"sheet_id": "s1", "room_id": "r1", "position": 1}}


def test_plan_only_the_first_event_of_a_sheets_stream_writes_its_row() -> None:
    second = SheetClaimed("s1", "r2").new(Origin("n", "u2"))  # no expected version: appended after one
    state = LogState(0, {"sheet:s1": 1}, {}, sheets={"s1": "r1"})
    p = plan(state, [second])
    (outcome,) = p.resolve(AT)
    assert isinstance(outcome, Committed) and outcome.stream_version == 2
    assert p.sheet_rows == {}


def test_plan_an_edit_of_a_sheet_nobody_claimed_is_refused() -> None:
    state = LogState(0, {}, {}, cells={("s1", "A1"): None}, sheets={"s1": None})
    p = plan(state, [cell_ev()])
    (outcome,) = p.resolve(AT)
    assert isinstance(outcome, Refused) and isinstance(outcome.error, ValidationFailed)
    assert "claim comes first" in str(outcome.error)
    assert p.rows == [] and p.sheet_rows == {}


def test_plan_second_write_on_the_same_base_version_in_one_batch_is_refused() -> None:
    p = plan(CLAIMED, [cell_ev(version=5), cell_ev(version=5)])
    first, second = p.resolve(AT)
    assert isinstance(first, Committed) and first.data["version"] == 6  # type: ignore[index]
    assert isinstance(second, Refused) and isinstance(second.error, VersionConflict)
    assert second.error.details["current"]["version"] == 6
    assert len(p.rows) == 1


def test_plan_stale_base_against_the_stored_cell_is_refused_with_the_current_cell() -> None:
    stored = Cell("A1", "old", "=1", 10, "u9", AT, 3)
    state = LogState(0, {"room:r1": 3}, {}, cells={("s1", "A1"): stored}, sheets={"s1": "r1"})
    (outcome,) = plan(state, [cell_ev(version=9)]).resolve(AT)
    assert isinstance(outcome, Refused)
    assert outcome.error.details["current"] == {
        "value": "old",
        "formula": "=1",
        "version": 10,
        "user_id": "u9",
    }


def test_plan_cell_of_a_sheet_owned_by_another_room_is_refused() -> None:
    state = LogState(0, {}, {}, cells={("s1", "A1"): None}, sheets={"s1": "r2"})
    (outcome,) = plan(state, [cell_ev(room="r1")]).resolve(AT)
    assert isinstance(outcome, Refused) and isinstance(outcome.error, ValidationFailed)


def test_plan_without_a_version_increments_the_current_one() -> None:
    stored = Cell("A1", "old", None, 41, "u9", AT, 3)
    state = LogState(0, {"room:r1": 3}, {}, cells={("s1", "A1"): stored}, sheets={"s1": "r1"})
    (outcome,) = plan(state, [cell_ev(version=None)]).resolve(AT)
    assert isinstance(outcome, Committed) and outcome.data["version"] == 42  # type: ignore[index]
