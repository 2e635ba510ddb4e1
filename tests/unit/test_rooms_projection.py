"""The rooms projection as given events -> expected view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.errors import UnknownEvent
from engine.events import USER_JOINED_ROOM, USER_LEFT_ROOM, RecordedEvent
from engine.projections.rooms import DISCONNECTED, LEFT, Member, RoomView, apply, project

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
        ROOM, members={"alice": member("alice", {"c1"}, at(5))}, seq=1, last_activity=at(5), messages_sent=1
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
    assert view == RoomView(ROOM, seq=3, last_activity=at(3), messages_sent=2)


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
