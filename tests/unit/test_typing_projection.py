"""The typing projection and its expiry as given events -> expected view and events to append."""

from __future__ import annotations

import pytest

from engine.log.writer import LogState, plan
from engine.model.catalogue import EXPIRED, TYPING_STOPPED
from engine.model.events import NewEvent
from engine.projections.typing_indicators import (
    TypingView,
    Typist,
    apply,
    expired,
    key_of,
    next_expiry,
    project,
)
from tests.unit.event_log import Log, at

ROOM = "workspace_123"


def typist(user: str, cell: str, connection: str | None, started: float, position: int) -> Typist:
    """A typist of a log of typing events only: each start's version in the stream is its position."""
    return Typist(user, user.title(), cell, connection, at(started), position, position)


def test_typing_projection_start_and_stop() -> None:
    log = Log()
    log.typing(ROOM, "alice", "A1", "c1", 1)
    log.typing(ROOM, "bob", "A1", "c2", 2)
    view = project(log.events, ROOM)
    assert view.typing == {
        ("alice", "A1"): typist("alice", "A1", "c1", 1, 1),
        ("bob", "A1"): typist("bob", "A1", "c2", 2, 2),
    }
    assert [t.user_id for t in view.in_cell("A1")] == ["alice", "bob"]
    log.typing_stopped(ROOM, "alice", "A1", 3)
    assert list(project(log.events, ROOM).typing) == [("bob", "A1")]


def test_typing_projection_repeated_start_refreshes_the_start_time() -> None:
    log = Log()
    log.typing(ROOM, "alice", "A1", "c1", 1)
    log.typing(ROOM, "bob", "B2", "c2", 2)
    log.typing(ROOM, "alice", "A1", "c1", 4)
    view = project(log.events, ROOM)
    assert view.typing[("alice", "A1")] == typist("alice", "A1", "c1", 4, 3)
    assert list(view.typing) == [("bob", "B2"), ("alice", "A1")]


def test_typing_projection_a_stop_without_a_start_changes_nothing() -> None:
    log = Log()
    log.typing_stopped(ROOM, "alice", "A1", 1)
    assert project(log.events, ROOM) == TypingView(ROOM)


def test_typing_projection_leaving_stops_that_connections_typing() -> None:
    log = Log()
    log.typing(ROOM, "alice", "A1", "tab1", 1)
    log.typing(ROOM, "alice", "B2", "tab2", 2)
    log.typing(ROOM, "bob", "C3", "c3", 3)
    log.left(ROOM, "alice", "tab1", 4)
    assert list(project(log.events, ROOM).typing) == [("alice", "B2"), ("bob", "C3")]
    log.left(ROOM, "alice", None, 5)  # leave from everywhere
    assert list(project(log.events, ROOM).typing) == [("bob", "C3")]


def test_typing_projection_skips_other_rooms_and_concerns() -> None:
    log = Log()
    log.typing(ROOM, "alice", "A1", "c1", 1)
    log.typing("elsewhere", "bob", "A1", "c2", 2)
    log.joined(ROOM, "carol", "c3", 3)
    log.cursor(ROOM, "carol", 1, 2, "A1", 4)
    view = project(log.events, ROOM)
    assert list(view.typing) == [("alice", "A1")]
    assert key_of(log.events[1]) == "elsewhere" and key_of(log.events[2]) is None
    assert apply(view, log.events[3]) == view
    with pytest.raises(ValueError, match="elsewhere"):
        apply(view, log.events[1])


def test_typing_projection_expired_stops_starts_older_than_the_timeout() -> None:
    log = Log()
    log.typing(ROOM, "alice", "A1", "c1", 0)
    log.typing(ROOM, "bob", "B2", "c2", 3)
    view = project(log.events, ROOM)
    assert expired(view, at(4.9), 5) == []
    assert next_expiry(view, 5) == at(5)
    (stop,) = expired(view, at(5), 5)  # exactly at the timeout: expired
    assert stop == NewEvent(
        stream_id=f"volatile:room:{ROOM}",
        type=TYPING_STOPPED,
        data={
            "room_id": ROOM,
            "user_id": "alice",
            "username": "Alice",
            "cell_id": "A1",
            "connection_id": "c1",
            "reason": EXPIRED,
            "start_version": 1,
        },
        metadata={"user_id": "alice", "reason": EXPIRED},
        idempotency_key="typing-expired:v1",
        user_id="alice",
    )
    assert [e.data["user_id"] for e in expired(view, at(60), 5)] == ["alice", "bob"]


def test_typing_projection_appending_the_expiry_clears_the_view() -> None:
    log = Log()
    log.typing(ROOM, "alice", "A1", "c1", 0)
    for stop in expired(project(log.events, ROOM), at(10), 5):
        log.append(stop.stream_id, stop.type, stop.data, 10)
    view = project(log.events, ROOM)
    assert view.typing == {}
    assert expired(view, at(100), 5) == [] and next_expiry(view, 5) is None


def test_typing_projection_refreshed_start_postpones_expiry() -> None:
    log = Log()
    log.typing(ROOM, "alice", "A1", "c1", 0)
    log.typing(ROOM, "alice", "A1", "c1", 4)
    assert expired(project(log.events, ROOM), at(6), 5) == []


def test_typing_projection_two_sweepers_append_one_stop() -> None:
    """The idempotency key makes the second node's expiry a duplicate of the first's."""
    log = Log()
    log.typing(ROOM, "alice", "A1", "c1", 0)
    view = project(log.events, ROOM)
    first, second = expired(view, at(6), 5), expired(view, at(7), 5)
    outcome = plan(LogState(head=1, versions={}, used_keys={}), [*first, *second])
    assert len(outcome.rows) == 1


def test_typing_projection_an_expiry_committed_after_a_refresh_leaves_the_refreshed_typing() -> None:
    """The sweep decided the stop from the first start; the refresh committed before the stop did."""
    log = Log()
    log.typing(ROOM, "alice", "A1", "c1", 0)
    (stop,) = expired(project(log.events, ROOM), at(5), 5)
    refresh = log.typing(ROOM, "alice", "A1", "c1", 5)
    log.append(stop.stream_id, stop.type, stop.data, 5)
    view = project(log.events, ROOM)
    assert [(t.user_id, t.position) for t in view.typing.values()] == [("alice", refresh.position)]
    (later,) = expired(view, at(10), 5)
    assert later.idempotency_key == f"typing-expired:v{refresh.stream_version}"
    log.append(later.stream_id, later.type, later.data, 10)
    assert project(log.events, ROOM).typing == {}


def test_typing_projection_a_client_s_stop_ends_the_typing_whatever_started_it() -> None:
    log = Log()
    log.typing(ROOM, "alice", "A1", "c1", 0)
    log.typing(ROOM, "alice", "A1", "c1", 2)
    stopped = log.typing_stopped(ROOM, "alice", "A1", 3)
    assert "start_version" not in stopped.data
    assert project(log.events, ROOM).typing == {}
