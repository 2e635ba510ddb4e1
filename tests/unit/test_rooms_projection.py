"""The rooms projection as given events -> expected view."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.model.catalogue import (
    ROOM_MESSAGE_BROADCAST,
    USER_JOINED_ROOM,
    USER_LEFT_ROOM,
    USER_STATUS_CHANGED,
)
from engine.model.errors import UnknownEvent
from engine.model.events import RecordedEvent
from engine.projections import rooms
from engine.projections.rooms import (
    DISCONNECTED,
    LEFT,
    Attendance,
    Member,
    RoomView,
    apply,
    cursors_from,
    project,
    project_with_stays,
    with_statuses,
)
from tests.unit.event_log import Log as EventLog

T0 = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
ROOM = "workspace_123"


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Log:
    """Builds a room's stream the way the store records it: contiguous versions, one clock."""

    def __init__(self, room_id: str = ROOM) -> None:
        self.room_id = room_id
        self.events: list[RecordedEvent] = []

    def add(self, type_: str, data: dict[str, Any], seconds: int) -> RecordedEvent:
        version = len(self.events) + 1
        event = RecordedEvent(
            position=100 + version,
            stream_id=f"room:{self.room_id}",
            stream_version=version,
            type=type_,
            data={"room_id": self.room_id, **data},
            metadata={},
            recorded_at=at(seconds),
        )
        self.events.append(event)
        return event

    def joined(self, user: str, connection: str, seconds: int = 0, **data: Any) -> RecordedEvent:
        fields = {"username": user.title(), "email": f"{user}@example.com", **data}
        return self.add(USER_JOINED_ROOM, {"user_id": user, "connection_id": connection, **fields}, seconds)

    def left(
        self, user: str, connection: str | None, seconds: int = 0, reason: str = DISCONNECTED
    ) -> RecordedEvent:
        data: dict[str, Any] = {"user_id": user, "reason": reason}
        if connection is not None:
            data["connection_id"] = connection
        return self.add(USER_LEFT_ROOM, data, seconds)


def member(user: str, connections: set[str], last_seen: datetime) -> Member:
    return Member(
        user_id=user,
        username=user.title(),
        email=f"{user}@example.com",
        status="online",
        cursor=None,
        last_seen=last_seen,
        connections=frozenset(connections),
    )


def test_rooms_projection_of_no_events_is_an_empty_room() -> None:
    assert project([], ROOM) == RoomView(ROOM)
    assert RoomView(ROOM).total_users == 0


def test_rooms_projection_without_events_or_room_id_is_refused() -> None:
    with pytest.raises(ValueError, match="room_id"):
        project([])


def test_rooms_projection_join_adds_an_online_member() -> None:
    log = Log()
    log.joined("alice", "c1", seconds=5)
    view = project(log.events)
    assert view == RoomView(
        ROOM,
        members={"alice": member("alice", {"c1"}, at(5))},
        seq=1,
        last_activity=at(5),
        messages_sent=1,
        attendance=Attendance(T0.replace(minute=0), frozenset({"alice"})),
    )
    assert view.total_users == 1


def test_rooms_projection_lists_members_in_order_of_arrival() -> None:
    log = Log()
    log.joined("bob", "c1", 1)
    log.joined("alice", "c2", 2)
    log.joined("bob", "c3", 3)
    assert list(project(log.events).members) == ["bob", "alice"]


def test_rooms_projection_user_with_two_connections_stays_until_both_left() -> None:
    log = Log()
    log.joined("alice", "tab1", 1)
    log.joined("alice", "tab2", 2)
    log.left("alice", "tab1", 3)
    view = project(log.events)
    assert view.members == {"alice": member("alice", {"tab2"}, at(3))}
    assert (view.seq, view.last_activity) == (3, at(3))

    log.left("alice", "tab2", 4)
    view = project(log.events)
    assert view.members == {}
    assert (view.seq, view.last_activity, view.total_users) == (4, at(4), 0)


def test_rooms_projection_leave_without_connection_removes_the_user_everywhere() -> None:
    log = Log()
    log.joined("alice", "tab1", 1)
    log.joined("alice", "tab2", 2)
    log.joined("bob", "c9", 3)
    log.left("alice", None, 4, reason=LEFT)
    assert project(log.events).members == {"bob": member("bob", {"c9"}, at(3))}


def test_rooms_projection_leave_of_an_absent_user_only_advances_seq() -> None:
    log = Log()
    log.joined("alice", "c1", 1)
    log.left("alice", "c1", 2, reason=LEFT)
    log.left("alice", "c1", 3)  # the socket closed after the explicit leave
    view = project(log.events)
    attendance = Attendance(T0.replace(minute=0), frozenset({"alice"}))
    assert view == RoomView(ROOM, seq=3, last_activity=at(3), messages_sent=2, attendance=attendance)


def test_rooms_projection_counts_only_messages_clients_sent() -> None:
    log = Log()
    log.joined("alice", "c1", 1)
    log.joined("bob", "c2", 2)
    log.left("alice", "c1", 3, reason=LEFT)
    log.left("bob", "c2", 4, reason=DISCONNECTED)
    assert project(log.events).messages_sent == 3


def test_rooms_projection_rejoin_keeps_status_and_takes_newest_name() -> None:
    log = Log()
    log.joined("alice", "c1", 1)
    log.joined("alice", "c2", 2, username="Alice B.", email="ab@example.com")
    alice = project(log.events).members["alice"]
    assert (alice.username, alice.email, alice.status) == ("Alice B.", "ab@example.com", "online")
    assert alice.connections == {"c1", "c2"}
    assert alice.last_seen == at(2)


def test_rooms_projection_takes_time_from_events_not_the_clock() -> None:
    log = Log()
    log.joined("alice", "c1", seconds=-86400 * 365)
    view = project(log.events)
    assert view.last_activity == at(-86400 * 365)
    assert view.members["alice"].last_seen == at(-86400 * 365)


def test_rooms_projection_apply_is_incremental_and_pure() -> None:
    log = Log()
    first = log.joined("alice", "c1", 1)
    second = log.joined("bob", "c2", 2)
    before = apply(RoomView(ROOM), first)
    after = apply(before, second)
    assert after == project(log.events)
    assert list(before.members) == ["alice"]  # the earlier view was not changed
    with pytest.raises(TypeError):
        before.members["mallory"] = member("mallory", {"x"}, at(0))  # type: ignore[index]


def test_rooms_projection_raises_on_an_unknown_event_type() -> None:
    log = Log()
    log.add("RoomRenamed", {"name": "x"}, 1)
    with pytest.raises(UnknownEvent, match="RoomRenamed"):
        project(log.events)


def test_rooms_projection_refuses_a_gap_or_repeat_in_seq() -> None:
    log = Log()
    first = log.joined("alice", "c1", 1)
    log.joined("bob", "c2", 2)
    third = log.joined("carol", "c3", 3)
    view = apply(RoomView(ROOM), first)
    with pytest.raises(ValueError, match="gap or repeat"):
        apply(view, third)
    with pytest.raises(ValueError, match="gap or repeat"):
        apply(view, first)


def test_rooms_projection_refuses_another_rooms_event() -> None:
    other = Log("elsewhere")
    with pytest.raises(ValueError, match="elsewhere"):
        apply(RoomView(ROOM), other.joined("alice", "c1"))


def test_rooms_projection_names_the_room_from_its_stream() -> None:
    log = Log("team-7")
    log.joined("alice", "c1")
    assert project(log.events).room_id == "team-7"


# Cells, broadcasts, cursors and typing in the room's streams (tests.unit.event_log builds these).


def test_rooms_projection_cell_updates_list_active_sheets_in_order_of_first_edit() -> None:
    log = EventLog()
    log.joined(ROOM, "alice", "c1", 1)
    log.cell(ROOM, "alice", "sheet_2", "A1", "x", 1, 2)
    log.cell(ROOM, "alice", "sheet_1", "A1", "y", 1, 3)
    log.cell(ROOM, "alice", "sheet_2", "B2", "z", 1, 4)
    view = project(log.events)
    assert view.active_sheets == ("sheet_2", "sheet_1")
    assert (view.seq, view.messages_sent, view.last_activity) == (4, 4, at(4))
    assert view.members["alice"].last_seen == at(4)


def test_rooms_projection_counts_an_admin_broadcast_as_a_message() -> None:
    log = EventLog()
    log.room(ROOM, ROOM_MESSAGE_BROADCAST, 7, user_id="admin", message={"type": "system_announcement"})
    view = project(log.events)
    assert (view.seq, view.messages_sent, view.last_activity, view.members) == (1, 1, at(7), {})


def test_rooms_projection_cursor_moves_show_in_the_members_entry_without_taking_a_seq() -> None:
    log = EventLog()
    log.joined(ROOM, "alice", "c1", 1)
    log.cursor(ROOM, "alice", 150, 300, "B2", 2)
    log.cursor(ROOM, "alice", 160, 310, "C3", 3)
    view = project(log.of_room(ROOM))
    assert view.members["alice"].cursor == {"x": 160, "y": 310, "cell": "C3"}
    assert view.members["alice"].last_seen == at(3)
    assert (view.seq, view.messages_sent, view.last_activity) == (1, 1, at(3))


def test_rooms_projection_ignores_the_cursor_of_a_user_not_in_the_room() -> None:
    log = EventLog()
    log.joined(ROOM, "alice", "c1", 1)
    before = project(log.events)
    log.cursor(ROOM, "mallory", 1, 2, "A1", 2)
    after = project(log.of_room(ROOM))
    assert after.members == before.members
    assert after.seq == 1


def test_rooms_projection_skips_typing_events() -> None:
    log = EventLog()
    log.joined(ROOM, "alice", "c1", 1)
    log.typing(ROOM, "alice", "A1", "c1", 2)
    log.typing_stopped(ROOM, "alice", "A1", 3)
    assert project(log.of_room(ROOM)) == project(log.events[:1])
    assert rooms.key_of(log.events[1]) is None
    assert rooms.key_of(log.events[0]) == ROOM


def test_rooms_projection_key_of_is_none_for_user_stream_events() -> None:
    log = EventLog()
    status = log.user("alice", USER_STATUS_CHANGED, 1, status="busy")
    assert rooms.key_of(status) is None
    with pytest.raises(ValueError, match="user:alice"):
        apply(RoomView(ROOM), status)


def test_rooms_projection_refuses_another_rooms_volatile_event() -> None:
    log = EventLog()
    with pytest.raises(ValueError, match="elsewhere"):
        apply(RoomView(ROOM), log.cursor("elsewhere", "alice", 1, 2, "A1"))


def test_rooms_projection_as_of_seq_n_is_project_of_the_first_n_events() -> None:
    log = EventLog()
    log.joined(ROOM, "alice", "c1", 1)
    log.joined(ROOM, "bob", "c2", 2)
    log.cell(ROOM, "bob", "sheet_1", "A1", 1, 1, 3)
    log.left(ROOM, "alice", "c1", 4, reason=LEFT)
    durable = log.stream(f"room:{ROOM}")
    as_of_2 = project(durable[:2])
    assert (as_of_2.seq, list(as_of_2.members), as_of_2.active_sheets) == (2, ["alice", "bob"], ())
    as_of_4 = project(durable[:4])
    assert (as_of_4.seq, list(as_of_4.members), as_of_4.active_sheets) == (4, ["bob"], ("sheet_1",))
    assert as_of_4.messages_sent == 4


def test_rooms_projection_with_statuses_shows_declared_statuses() -> None:
    log = EventLog()
    log.joined(ROOM, "alice", "c1", 1)
    log.joined(ROOM, "bob", "c2", 2)
    view = with_statuses(project(log.events), {"alice": "busy", "carol": "away"})
    assert {m.user_id: m.status for m in view.members.values()} == {"alice": "busy", "bob": "online"}


# avg_users_per_hour: distinct users present per UTC hour, over the hours since the room's first event.


def test_rooms_projection_average_users_per_hour_counts_each_user_once_per_hour() -> None:
    log = EventLog()  # T0 is 10:30
    log.joined(ROOM, "alice", "c1", 0)  # hour 10: alice
    log.joined(ROOM, "alice", "c9", 60)  # a second tab is not a second user
    log.joined(ROOM, "bob", "c2", 40 * 60)  # 11:10; hour 11: alice, bob
    log.left(ROOM, "alice", None, 95 * 60, reason=LEFT)  # 12:05; hour 12: alice (until 12:05), bob
    log.joined(ROOM, "carol", "c3", 170 * 60)  # 13:20; hour 13: bob, carol
    view = project(log.events)
    assert view.avg_users_per_hour() == pytest.approx((1 + 2 + 2 + 2) / 4)
    # Up to 15:45 (hours 14 and 15 with bob and carol present).
    assert view.avg_users_per_hour(now=at(315 * 60)) == pytest.approx((7 + 2 + 2) / 6)
    # A `now` within the newest event's hour adds nothing.
    assert view.avg_users_per_hour(now=at(175 * 60)) == view.avg_users_per_hour()


def test_rooms_projection_average_users_per_hour_counts_quiet_hours_with_those_present() -> None:
    log = EventLog()
    log.joined(ROOM, "alice", "c1", 0)  # 10:30
    log.joined(ROOM, "bob", "c2", 1)
    log.left(ROOM, "bob", "c2", 5 * 3600)  # 15:30: hours 11-14 had alice and bob, no events
    view = project(log.events)
    assert view.avg_users_per_hour() == pytest.approx(2.0)
    log.left(ROOM, "alice", "c1", 8 * 3600)  # 18:30: hours 16-17 had alice only
    assert project(log.events).avg_users_per_hour() == pytest.approx((2 * 6 + 1 + 1 + 1) / 9)


def test_rooms_projection_average_users_per_hour_of_an_empty_room_is_zero() -> None:
    assert RoomView(ROOM).avg_users_per_hour() == 0.0
    assert RoomView(ROOM).avg_users_per_hour(now=at(86400)) == 0.0


def test_rooms_projection_average_users_per_hour_ignores_volatile_events() -> None:
    log = EventLog()
    log.joined(ROOM, "alice", "c1", 0)
    log.cursor(ROOM, "alice", 1, 1, "A1", 7200)
    assert project(log.of_room(ROOM)).avg_users_per_hour() == 1.0
    assert project(log.of_room(ROOM)).attendance == project(log.events[:1]).attendance


def test_rooms_projection_an_edit_moves_only_its_writers_last_seen() -> None:
    """Every field of the member as it was, compared whole: the fold rebuilds the member by position,
    so fields swapped there would show here."""
    log = EventLog()
    log.joined(ROOM, "alice", "c1", 1)
    log.joined(ROOM, "bob", "c2", 2)
    log.cursor(ROOM, "alice", 150, 300, "B2", 3)
    before = project(log.of_room(ROOM))
    log.cell(ROOM, "alice", "sheet-1", "A1", 42, 1, 4)
    after = project(log.of_room(ROOM))
    assert after.members["alice"] == Member(
        user_id="alice",
        username="Alice",
        email="alice@example.com",
        status="online",
        cursor={"x": 150, "y": 300, "cell": "B2"},
        last_seen=at(4),
        connections=frozenset({"c1"}),
    )
    assert after.members["bob"] == before.members["bob"]
    assert list(after.members) == ["alice", "bob"]
    assert (after.seq, after.messages_sent, after.active_sheets) == (3, 3, ("sheet-1",))


def test_stays_begin_at_the_join_that_made_each_current_member() -> None:
    log = Log()
    first = log.joined("alice", "c1", 0)
    log.joined("alice", "c2", 1)  # a second tab: the same stay
    log.left("alice", "c1", 2)
    log.joined("bob", "c3", 3)
    log.left("bob", None, 4)  # without a connection: every tab leaves
    again = log.joined("bob", "c4", 5)
    log.joined("cy", "c5", 6)
    log.left("cy", "c5", 7)
    view, began = project_with_stays(log.events, ROOM)
    assert view == project(log.events)
    assert began == {"alice": first.position, "bob": again.position}


def test_cursors_from_a_newer_view_are_taken_only_during_the_same_stay() -> None:
    log = Log()
    log.joined("alice", "c1", 0)
    log.joined("bob", "c2", 1)
    replayed = project(log.events)
    log.left("bob", "c2", 2)
    log.joined("bob", "c3", 3)  # a new stay: the cursor of the old one is not his now
    moved = {"x": 1, "y": 2, "cell": None}
    current = project(log.events)
    current = replace(current, members={u: replace(m, cursor=moved) for u, m in current.members.items()})
    shown = cursors_from(replayed, current)
    assert {u: m.cursor for u, m in shown.members.items()} == {"alice": moved, "bob": None}
