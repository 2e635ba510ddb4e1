"""The presence projection as given events -> expected view."""

from __future__ import annotations

import pytest

from engine.model.catalogue import USER_STATUS_CHANGED
from engine.projections.presence import OFFLINE, Presence, apply, key_of, project, statuses
from tests.unit.event_log import Log, at


def test_presence_projection_of_no_events_is_offline() -> None:
    view = project([], "alice")
    assert view == Presence("alice")
    assert (view.online, view.shown_status, view.connection_count) == (False, OFFLINE, 0)


def test_presence_projection_two_tabs_stay_online_until_both_leave() -> None:
    log = Log()
    log.joined("r1", "alice", "tab1", 1)
    log.joined("r1", "alice", "tab2", 2)
    log.left("r1", "alice", "tab1", 3)
    view = project(log.events, "alice")
    assert (view.online, view.connection_count, view.shown_status) == (True, 1, "online")
    assert view.connections == {"tab2": frozenset({"r1"})}
    assert view.last_seen == at(3)

    log.left("r1", "alice", "tab2", 4)
    view = project(log.events, "alice")
    assert (view.online, view.connection_count, view.shown_status, view.last_seen) == (
        False,
        0,
        OFFLINE,
        at(4),
    )


def test_presence_projection_a_connection_in_two_rooms_counts_once() -> None:
    log = Log()
    log.joined("r1", "alice", "c1", 1)
    log.joined("r2", "alice", "c1", 2)
    assert project(log.events, "alice").connection_count == 1
    log.left("r1", "alice", "c1", 3)
    view = project(log.events, "alice")
    assert (view.connection_count, view.rooms) == (1, frozenset({"r2"}))


def test_presence_projection_leave_without_connection_leaves_the_room_from_every_tab() -> None:
    log = Log()
    log.joined("r1", "alice", "tab1", 1)
    log.joined("r1", "alice", "tab2", 2)
    log.joined("r2", "alice", "tab2", 3)
    log.left("r1", "alice", None, 4)
    assert project(log.events, "alice").connections == {"tab2": frozenset({"r2"})}


def test_presence_projection_declared_status_is_the_users_until_changed() -> None:
    log = Log()
    log.user("alice", USER_STATUS_CHANGED, 0, status="busy")  # before any room: kept
    log.joined("r1", "alice", "c1", 1)
    assert project(log.events, "alice").shown_status == "busy"
    log.user("alice", USER_STATUS_CHANGED, 2, status="away")
    assert project(log.events, "alice").shown_status == "away"
    log.left("r1", "alice", "c1", 3)
    ended = project(log.events, "alice")
    assert (ended.shown_status, ended.status) == (OFFLINE, "away")
    log.joined("r1", "alice", "c2", 4)  # a reconnect: what she declared still holds
    assert project(log.events, "alice").shown_status == "away"


def test_presence_projection_cursor_is_the_latest_anywhere() -> None:
    log = Log()
    log.joined("r1", "alice", "c1", 1)
    log.joined("r2", "alice", "c2", 2)
    log.cursor("r1", "alice", 10, 20, "A1", 3)
    log.cursor("r2", "alice", 30, 40, None, 4)
    view = project(log.events, "alice")
    assert view.cursor == {"room_id": "r2", "x": 30, "y": 40, "cell": None}
    assert view.last_seen == at(4)
    log.left("r1", "alice", "c1", 5)
    log.left("r2", "alice", "c2", 6)
    assert project(log.events, "alice").cursor is None  # no session, no cursor


def test_presence_projection_cell_updates_count_as_activity() -> None:
    log = Log()
    log.joined("r1", "alice", "c1", 1)
    log.cell("r1", "alice", "s1", "A1", 1, 1, 90)
    assert project(log.events, "alice").last_seen == at(90)


def test_presence_projection_takes_name_and_email_from_the_newest_join() -> None:
    log = Log()
    log.joined("r1", "alice", "c1", 1)
    view = project(log.events, "alice")
    assert (view.username, view.email) == ("Alice", "alice@example.com")


def test_presence_projection_skips_other_users_and_other_concerns() -> None:
    log = Log()
    log.joined("r1", "alice", "c1", 1)
    log.joined("r1", "bob", "c2", 2)
    log.typing("r1", "alice", "A1", "c1", 3)
    alice = project(log.events, "alice")
    assert alice == project(log.events[:1], "alice")
    assert key_of(log.events[1]) == "bob" and key_of(log.events[2]) is None
    assert apply(alice, log.events[2]) == alice
    with pytest.raises(ValueError, match="bob"):
        apply(alice, log.events[1])


def test_presence_projection_as_of_a_position_is_project_of_the_log_up_to_it() -> None:
    log = Log()
    log.joined("r1", "alice", "c1", 1)
    log.joined("r1", "alice", "c2", 2)
    log.left("r1", "alice", "c1", 3)
    log.left("r1", "alice", "c2", 4)
    counts = [project(log.events[:n], "alice").connection_count for n in range(5)]
    assert counts == [0, 1, 2, 1, 0]


def test_presence_projection_statuses_give_what_others_see() -> None:
    log = Log()
    log.joined("r1", "alice", "c1", 1)
    log.user("alice", USER_STATUS_CHANGED, 2, status="busy")
    views = [project(log.events, "alice"), project(log.events, "bob")]
    assert statuses(views) == {"alice": "busy", "bob": OFFLINE}
