"""Rules every projection keeps: it decides about every catalogued event type, refuses unknown ones,
and folding in two parts gives what folding at once gives."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings

from engine.model.catalogue import CATALOGUE, CLAIM_EVENTS, CURSOR_MOVED
from engine.model.errors import UnknownEvent
from engine.model.events import RecordedEvent
from engine.model.streams import room_stream, volatile_stream
from engine.projections import (
    ai_requests,
    cells,
    declared_statuses,
    direct_messages,
    notifications,
    presence,
    rooms,
    typing_indicators,
    uploads,
)
from tests.unit.event_log import ROOMS, SHEETS, USERS, Log, sessions

PROJECTIONS = [
    rooms,
    cells,
    presence,
    declared_statuses,
    typing_indicators,
    notifications,
    uploads,
    ai_requests,
    direct_messages,
]
ids = [module.__name__.rsplit(".", 1)[1] for module in PROJECTIONS]


@pytest.mark.parametrize("module", PROJECTIONS, ids=ids)
def test_projections_handled_and_skipped_partition_the_catalogue(module: ModuleType) -> None:
    assert module.HANDLED | module.SKIPPED == CATALOGUE
    assert not module.HANDLED & module.SKIPPED


@pytest.mark.parametrize("module", PROJECTIONS, ids=ids)
def test_projections_key_of_refuses_an_event_type_outside_the_catalogue(module: ModuleType) -> None:
    log = Log()
    event = log.append("room:r1", "RoomRenamed", {"room_id": "r1", "user_id": "alice", "name": "x"})
    with pytest.raises(UnknownEvent, match="RoomRenamed") as caught:
        module.key_of(event)
    assert caught.value.details == {"type": "RoomRenamed"}


def test_projections_every_catalogued_type_is_handled_somewhere() -> None:
    # But a file id's claim: it only settles who may upload under the id (engine/features/files.py);
    # the owner's uploads, in their own stream, are what the uploads projection folds.
    assert set().union(*(module.HANDLED for module in PROJECTIONS)) == CATALOGUE - CLAIM_EVENTS


# Folding in two parts equals folding at once: what makes the live path and a rebuild agree.


def _views(events: list[RecordedEvent], split: int) -> list[tuple[Any, Any]]:
    """(folded at once, folded up to `split` then event by event) for every view of every projection."""
    pairs: list[tuple[Any, Any]] = []
    head, tail = events[:split], events[split:]

    for room_id in ROOMS:
        of_room = [e for e in events if rooms.key_of(e) == room_id]
        cut = len([e for e in head if rooms.key_of(e) == room_id])
        stepped = rooms.project(of_room[:cut], room_id)
        for event in of_room[cut:]:
            stepped = rooms.apply(stepped, event)
        pairs.append((rooms.project(of_room, room_id), stepped))
        typed = typing_indicators.project(head, room_id)
        for event in tail:
            if typing_indicators.key_of(event) == room_id:
                typed = typing_indicators.apply(typed, event)
        pairs.append((typing_indicators.project(events, room_id), typed))

    for sheet_id in SHEETS:
        sheet = cells.project(head, sheet_id)
        sheet = cells.apply_many(sheet, (e for e in tail if cells.key_of(e) == sheet_id))
        pairs.append((cells.project(events, sheet_id), sheet))

    for user_id in USERS:
        seen = presence.project(head, user_id)
        declared = declared_statuses.project(head, user_id)
        inbox = notifications.project(head, user_id)
        for event in tail:
            if presence.key_of(event) == user_id:
                seen = presence.apply(seen, event)
            if declared_statuses.key_of(event) == user_id:
                declared = declared_statuses.apply(declared, event)
            if notifications.key_of(event) == user_id:
                inbox = notifications.apply(inbox, event)
        pairs.append((presence.project(events, user_id), seen))
        pairs.append((declared_statuses.project(events, user_id), declared))
        pairs.append((notifications.project(events, user_id), inbox))
    return pairs


@settings(max_examples=150, deadline=None)
@given(events=sessions())
def test_projections_project_of_a_plus_b_is_apply_over_b_from_project_of_a(
    events: list[RecordedEvent],
) -> None:
    for split in sorted({0, len(events) // 3, len(events) // 2, len(events)}):
        for at_once, stepped in _views(events, split):
            assert at_once == stepped


@settings(max_examples=100, deadline=None)
@given(events=sessions())
def test_projections_ignore_events_of_other_concerns(events: list[RecordedEvent]) -> None:
    """A view folded from the whole log equals one folded from only the events of its key."""
    for user_id in USERS:
        mine = [e for e in events if presence.key_of(e) == user_id]
        assert presence.project(events, user_id) == presence.project(mine, user_id)
    for sheet_id in SHEETS:
        mine = [e for e in events if cells.key_of(e) == sheet_id]
        assert cells.project(events, sheet_id) == cells.project(mine, sheet_id)


@settings(max_examples=150, deadline=None)
@given(events=sessions())
def test_rooms_view_from_the_stream_and_newest_cursors_equals_the_view_of_every_event(
    events: list[RecordedEvent],
) -> None:
    """What a node reads for a room it has no view of (its durable stream, then each member's newest
    cursor move) shows the members and cursors of the view folded from every event as it came."""
    for room_id in ROOMS:
        live = rooms.project([e for e in events if rooms.key_of(e) == room_id], room_id)
        stream = [e for e in events if e.stream_id == room_stream(room_id)]
        newest = {
            str(e.data["user_id"]): e
            for e in events
            if e.type == CURSOR_MOVED and e.stream_id == volatile_stream(room_stream(room_id))
        }
        read = rooms.with_cursors(*rooms.project_with_stays(stream, room_id), newest.values())
        assert {u: (m.cursor, m.connections) for u, m in read.members.items()} == {
            u: (m.cursor, m.connections) for u, m in live.members.items()
        }
