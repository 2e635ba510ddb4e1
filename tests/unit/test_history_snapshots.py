"""Room snapshots: a view encoded as JSON and decoded again folds on exactly like the original, so a
room "as of" a point is the same from a snapshot as from the start of its streams."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.model import catalogue as cat
from engine.model.events import RecordedEvent
from engine.projections.rooms import RoomView, apply_many, project
from engine.readmodels.snapshots import FORMAT, decode_view, encode_view
from tests.unit.event_log import Log


def _through_jsonb(view: RoomView) -> RoomView:
    """What a snapshot row gives back: the encoding through JSON text, as JSONB stores it."""
    return decode_view(orjson.loads(orjson.dumps(encode_view(view))))


def test_history_snapshot_round_trips_every_field() -> None:
    log = Log()
    log.joined("r", "alice", "c1", 0)
    log.joined("r", "alice", "c2", 5)
    log.joined("r", "bob", "c3", 3700)
    log.cursor("r", "bob", 10, 20, "B2", 3701)
    log.cell("r", "alice", "s1", "A1", 42, 1, 7300)
    log.left("r", "alice", "c1", 7400)
    view = project(log.of_room("r"), "r")

    decoded = _through_jsonb(view)

    assert decoded == view
    assert list(decoded.members) == list(view.members)  # arrival order kept for room_state.users
    assert decoded.members["alice"].connections == frozenset({"c2"})
    assert decoded.members["bob"].cursor == {"x": 10, "y": 20, "cell": "B2"}
    assert decoded.attendance == view.attendance
    assert decoded.last_activity == view.last_activity


def test_history_snapshot_of_an_empty_room_round_trips() -> None:
    assert _through_jsonb(RoomView("r")) == RoomView("r")


def test_history_snapshot_of_another_format_is_refused() -> None:
    state = {**encode_view(RoomView("r")), "format": FORMAT + 1}
    with pytest.raises(ValueError, match="format"):
        decode_view(state)


_USERS = st.sampled_from(("alice", "bob", "carol"))
_CONNECTIONS = st.sampled_from(("c1", "c2", "c3"))
_STEPS = st.one_of(
    st.tuples(st.just("join"), _USERS, _CONNECTIONS),
    st.tuples(
        st.just("leave"),
        _USERS,
        st.none() | _CONNECTIONS,
        st.sampled_from((cat.LEFT, cat.DISCONNECTED)),
    ),
    st.tuples(st.just("cursor"), _USERS, st.integers(0, 500), st.none() | st.sampled_from(("A1", "B2"))),
    st.tuples(st.just("cell"), _USERS, st.sampled_from(("s1", "s2")), st.integers(1, 100)),
    st.tuples(st.just("typing"), _USERS, _CONNECTIONS),
    st.tuples(
        st.just("broadcast"),
    ),
)


@st.composite
def room_logs(draw: st.DrawFn) -> list[RecordedEvent]:
    """One room's busy log: members come and go on several connections, move cursors, edit, type,
    across hours (attendance), so every field of the view changes along the way."""
    log, clock = Log(), 0.0
    for step in draw(st.lists(_STEPS, min_size=1, max_size=60)):
        clock += draw(st.sampled_from((0, 1, 59, 3600, 7300)))
        kind, *args = step
        if kind == "join":
            log.joined("r", args[0], args[1], clock)
        elif kind == "leave":
            log.left("r", args[0], args[1], clock, reason=args[2])
        elif kind == "cursor":
            log.cursor("r", args[0], args[1], args[1] // 3, args[2], clock)
        elif kind == "cell":
            log.cell("r", args[0], args[1], "A1", f"v{clock}", args[2], clock)
        elif kind == "typing":
            log.typing("r", args[0], "A1", args[1], clock)
        else:
            log.room("r", cat.ROOM_MESSAGE_BROADCAST, clock, user_id="root", message={"m": 1})
    return log.events


@settings(max_examples=300, deadline=None)
@given(room_logs(), st.data())
def test_history_fold_from_a_snapshot_equals_fold_from_the_start(
    room_events: list[RecordedEvent], data: st.DataObject
) -> None:
    split = data.draw(st.integers(0, len(room_events)), label="snapshot point")
    snapshot = _through_jsonb(project(room_events[:split], "r"))

    assert apply_many(snapshot, room_events[split:]) == project(room_events, "r")
