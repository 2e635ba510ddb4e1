"""What an event page may be filtered by: known types, zoned times, a range that is not reversed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.model.catalogue import CELL_UPDATED, CURSOR_MOVED
from engine.model.errors import ValidationFailed
from engine.readmodels.history import EventFilter

T0 = datetime(2026, 11, 26, 10, tzinfo=UTC)


def test_history_filter_accepts_known_types_and_a_zoned_range() -> None:
    where = EventFilter(types=frozenset({CELL_UPDATED, CURSOR_MOVED}), since=T0, until=T0)
    assert len(where.clauses()) == 3


def test_history_filter_without_criteria_has_no_clauses() -> None:
    assert EventFilter().clauses() == []


def test_history_filter_refuses_an_unknown_type() -> None:
    with pytest.raises(ValidationFailed, match="NoSuchEvent") as raised:
        EventFilter(types=frozenset({CELL_UPDATED, "NoSuchEvent"}))
    assert raised.value.details["types"] == ["NoSuchEvent"]


def test_history_filter_refuses_a_time_without_zone() -> None:
    with pytest.raises(ValidationFailed, match="time zone"):
        EventFilter(since=datetime(2026, 11, 26, 10))


def test_history_filter_refuses_since_after_until() -> None:
    with pytest.raises(ValidationFailed, match="since is after until"):
        EventFilter(since=T0 + timedelta(seconds=1), until=T0)
