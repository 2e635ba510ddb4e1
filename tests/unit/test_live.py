"""The live side without a database: `render` (shared by live publishes and replay), `Live` folding
commits into the room view in seq order, and `Subscriber.flush`."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from engine.fanout.hub import Hub
from engine.fanout.live import Live
from engine.model.catalogue import (
    CURSOR_MOVED,
    EXPIRED,
    TYPING_STARTED,
    TYPING_STOPPED,
    USER_JOINED_ROOM,
    USER_LEFT_ROOM,
    USER_STATUS_CHANGED,
)
from engine.model.events import RecordedEvent
from engine.model.streams import room_stream, user_stream, volatile_stream
from engine.projections.rooms import RoomView, project
from engine.protocol.rendering import ReplayRenderer, render
from tests.unit.test_fanout import Client, connect, running_hub, settle

ROOM = "r"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_position = iter(range(1, 10_000))


def event(stream_id: str, version: int, kind: str, **data: Any) -> RecordedEvent:
    metadata = {"connection_id": data.get("connection_id", "c-" + str(data.get("user_id")))}
    return RecordedEvent(next(_position), stream_id, version, kind, data, metadata, T0)


def joined(version: int, user_id: str, connection_id: str | None = None) -> RecordedEvent:
    cid = connection_id or f"c-{user_id}"
    data = {"room_id": ROOM, "user_id": user_id, "username": user_id, "email": None, "connection_id": cid}
    return event(room_stream(ROOM), version, USER_JOINED_ROOM, **data)


def left(version: int, user_id: str, connection_id: str | None = None) -> RecordedEvent:
    cid = connection_id or f"c-{user_id}"
    data = {"room_id": ROOM, "user_id": user_id, "connection_id": cid, "reason": "left"}
    return event(room_stream(ROOM), version, USER_LEFT_ROOM, **data)


def test_render_join_is_room_state_then_user_joined_with_the_event_seq() -> None:
    first, second = joined(1, "a"), joined(2, "b")
    view = project([first, second])
    state, user_joined = render(second, view)
    assert (state["type"], state["seq"], state["total_users"]) == ("room_state", 2, 2)
    assert (user_joined["type"], user_joined["seq"], user_joined["user"]["user_id"]) == (
        "user_joined",
        2,
        "b",
    )


def test_render_another_tab_coming_or_going_shows_nothing_to_the_others() -> None:
    events = [joined(1, "a", "tab1"), joined(2, "a", "tab2")]
    assert render(events[-1], project(events)) == []  # the user was in the room already
    events.append(left(3, "a", "tab1"))
    assert render(events[-1], project(events)) == []  # and still is, through tab2
    events.append(left(4, "a", "tab2"))
    assert [m["type"] for m in render(events[-1], project(events))] == ["room_state", "user_left"]


def test_render_a_replay_shows_joins_and_leaves_without_room_state() -> None:
    events = [joined(1, "a"), left(2, "a")]
    assert [m["type"] for m in render(events[0], project(events[:1]), with_state=False)] == ["user_joined"]
    assert [m["type"] for m in render(events[1], project(events), with_state=False)] == ["user_left"]


def test_render_without_a_view_leaves_room_state_out_rather_than_wrong() -> None:
    assert [m["type"] for m in render(joined(5, "a"), None)] == ["user_joined"]


def test_render_without_a_view_shows_the_joiner_with_the_status_its_join_recorded() -> None:
    join = joined(5, "a")
    declared = replace(join, data={**join.data, "status": "busy"})
    assert render(declared, None)[0]["user"]["status"] == "busy"
    assert render(join, None)[0]["user"]["status"] == "online"  # a join recorded before statuses were kept


def test_replay_renderer_builds_what_live_sent() -> None:
    events = [joined(1, "a"), joined(2, "b"), left(3, "a")]
    live = [render(e, project(events[: i + 1])) for i, e in enumerate(events)]
    replay = ReplayRenderer(RoomView(ROOM), lambda view: {})
    assert [replay(e) for e in events] == [tuple(orjson.dumps(m).decode() for m in msgs) for msgs in live]


def test_render_a_join_that_changes_a_member_s_name_or_email_is_news_to_the_others() -> None:
    """The room shows the name and email of the user's newest join: one that changes them, from the
    connection already in the room (after a token refresh) or from another tab, is shown as a first
    join is; one that changes neither is no news."""
    first = joined(1, "a", "tab1")
    before = project([first])
    for connection_id in ("tab1", "tab2"):
        again = joined(2, "a", connection_id)
        assert render(again, project([first, again]), before=before) == []
        for change in ({"username": "Ann"}, {"email": "ann@example.com"}):
            changed = replace(again, data={**again.data, **change})
            state, user_joined = render(changed, project([first, changed]), before=before)
            assert state["type"] == "room_state" and state["users"] == [user_joined["user"]]
            assert {k: user_joined["user"][k] for k in change} == change


def test_replay_renderer_in_a_resume_shows_each_joiner_with_the_status_its_join_recorded() -> None:
    """A resume replays history: a join shows the status it recorded, not the one declared since
    ("online" for a join recorded before statuses were kept), and its completion shows the statuses
    of now. A catch-up after a plain join renders what just committed with the statuses of now."""
    join = joined(1, "a")
    declared = replace(join, data={**join.data, "status": "away"})

    def now(view: RoomView) -> dict[str, str]:
        return {"a": "busy"}

    for recorded, shown in ((declared, "away"), (join, "online")):
        resume = ReplayRenderer(RoomView(ROOM), now, with_state=False)
        frames = resume(recorded)
        assert frames is not None and orjson.loads(frames[0])["user"]["status"] == shown
        state, _ = resume.completion(1)
        assert orjson.loads(state)["users"][0]["status"] == "busy"
    frames = ReplayRenderer(RoomView(ROOM), now)(declared)
    assert frames is not None
    state, user_joined = (orjson.loads(frame) for frame in frames)
    assert (state["users"][0]["status"], user_joined["user"]["status"]) == ("busy", "busy")


async def test_live_publishes_in_seq_order_with_the_view_of_each_event() -> None:
    async with running_hub() as hub:
        member = Client()
        connect(hub, "c-a", member, room_stream(ROOM))
        live = Live(hub)

        async def load(room_id: str) -> RoomView:
            return RoomView(room_id)

        await live.load(ROOM, load)
        live.publish(joined(1, "a"))
        live.publish(joined(2, "b"))
        live.publish(event(volatile_stream(room_stream(ROOM)), 1, CURSOR_MOVED, room_id=ROOM, user_id="b",
                           username="b", x=1, y=2, cell=None, connection_id="c-b"))  # fmt: skip
        frames = [orjson.loads(f) for f in await member.received(5)]
        assert [(f["type"], f.get("seq")) for f in frames] == [
            ("room_state", 1),
            ("user_joined", 1),
            ("room_state", 2),
            ("user_joined", 2),
            ("cursor_moved", None),
        ]
        view = live.view(ROOM)
        assert view is not None and view.members["b"].cursor == {"x": 1, "y": 2, "cell": None}


async def test_live_status_reaches_other_tabs_and_rooms_and_shows_in_room_state() -> None:
    async with running_hub() as hub:
        tab1, tab2, other = Client(), Client(), Client()
        connect(hub, "c-a", tab1, user_stream("a"), room_stream(ROOM))
        connect(hub, "tab2", tab2, user_stream("a"))
        connect(hub, "c-b", other, room_stream(ROOM))
        live = Live(hub)

        async def load(room_id: str) -> RoomView:
            return RoomView(room_id)

        await live.load(ROOM, load)
        live.publish(joined(1, "a"))
        status = event(
            user_stream("a"), 1, USER_STATUS_CHANGED, user_id="a", status="busy", connection_id="tab2"
        )
        live.publish(status)
        await other.received(3)
        await settle()
        assert orjson.loads(other.frames[-1])["status"] == "busy"
        # Once, though tab1 hears of the user's stream and of the room.
        assert [orjson.loads(f)["type"] for f in tab1.frames].count("user_status_changed") == 1
        assert tab2.frames == []  # the sender
        view = live.view(ROOM)
        assert view is not None and view.members["a"].status == "busy"


async def test_live_drops_a_view_that_fell_behind_the_log() -> None:
    live = Live(Hub())

    async def load(room_id: str) -> RoomView:
        return RoomView(room_id)

    await live.load(ROOM, load)
    live.publish(joined(2, "a"))  # seq 1 was appended elsewhere
    assert live.view(ROOM) is None
    await live.hub.aclose()


async def test_live_shows_a_join_published_without_a_view_with_the_joiner_s_declared_status() -> None:
    async with running_hub() as hub:
        member = Client()
        connect(hub, "c-m", member, room_stream(ROOM))
        live = Live(hub)

        async def load(room_id: str) -> RoomView:
            return RoomView(room_id)

        await live.load(ROOM, load)
        live.publish(joined(2, "m", "c-m"))  # seq 1 was appended elsewhere: the view is dropped
        assert live.view(ROOM) is None
        join = joined(3, "a")
        live.publish(replace(join, data={**join.data, "status": "away"}))  # through a node that knew it
        frames = [orjson.loads(f) for f in await member.received(2)]
        assert [f["type"] for f in frames] == ["user_joined", "user_joined"]  # no room_state: no view
        assert (frames[1]["user"]["user_id"], frames[1]["user"]["status"]) == ("a", "away")


async def test_flush_waits_until_queued_frames_are_sent() -> None:
    async with running_hub() as hub:
        client = Client(allow=0)
        subscriber = hub.subscribe("c", client.send_text, client.close)
        await subscriber.send("one")
        flushed = asyncio.create_task(subscriber.flush())
        await settle()
        assert not flushed.done()
        client.open()
        await flushed
        assert client.frames == ["one"]


async def test_live_presence_keeps_a_status_through_a_leave_of_the_connections_it_folded() -> None:
    """A node that started after a user joined folded only some of their connections: the leave of one
    of those must not lose the status it read for them, while they are still in a room through another."""
    live = Live(Hub())
    live.restore_statuses({"a": "busy"})  # read at a join here: "a" is in the room since before
    live.publish(joined(1, "a", "a-tab2"))
    live.publish(left(2, "a", "a-tab2"))
    assert live.declared_status("a") == "busy"
    await live.hub.aclose()


async def test_live_presence_takes_an_unknown_joiner_s_status_from_the_join() -> None:
    live = Live(Hub())

    async def load(room_id: str) -> RoomView:
        return RoomView(room_id)

    await live.load(ROOM, load)
    join = joined(1, "a")
    live.publish(replace(join, data={**join.data, "status": "busy"}))  # through a node that knew it
    view = live.view(ROOM)
    assert view is not None and view.members["a"].status == "busy"
    await live.hub.aclose()


async def test_live_presence_is_not_made_known_by_an_edit_or_a_cursor_nor_lost_by_a_status() -> None:
    """A cursor of a user whose join this node never folded leaves them unknown, so a join here reads
    their declared status; a status folded for a user with no connection here is kept, so that a
    join's read of statuses, begun before it, does not put an older one back."""
    live = Live(Hub())
    live.publish(event(volatile_stream(room_stream(ROOM)), 1, CURSOR_MOVED, room_id=ROOM, user_id="d",
                       username="d", x=1, y=2, cell=None, connection_id="c-d"))  # fmt: skip
    assert live.unknown_statuses(["d"]) == ["d"]
    live.publish(event(user_stream("e"), 1, USER_STATUS_CHANGED, user_id="e", status="online"))
    live.restore_statuses({"e": "busy"})  # read from the log before that change was folded
    assert live.declared_status("e") == "online"
    await live.hub.aclose()


async def test_live_forgets_a_user_gone_from_this_node_only_once_no_room_view_here_lists_them() -> None:
    """ "a" is in the room since before this node started (its view lists them) and had one tab here:
    the end of that tab must not lose their status while the view still lists them."""
    live = Live(Hub())

    async def load(room_id: str) -> RoomView:
        return project([joined(1, "a", "a-tab1")])

    await live.load(ROOM, load)
    live.restore_statuses({"a": "busy"})
    live.publish(joined(2, "a", "a-tab2"))
    live.publish(left(3, "a", "a-tab2"))
    live.forget_user("a")  # its last connection on this node is gone
    view = live.view(ROOM)
    assert view is not None and view.members["a"].status == "busy"
    live.publish(left(4, "a", "a-tab1"))  # gone from the room through the other node too
    live.forget_user("a")
    assert live.unknown_statuses(["a"]) == ["a"]
    await live.hub.aclose()


async def test_live_evicts_the_views_of_empty_rooms_and_users_nobody_here_sees() -> None:
    """A room's view stays while anybody is in the room (here or through another node, whose events
    keep it current), and while a message loaded it since the sweep before last (it may be about to
    append); then it goes, and with it the users only it listed. A user with a connection here stays.
    A view dropped is read again by the next load."""
    live = Live(Hub())
    reads: list[str] = []

    async def load(room_id: str) -> RoomView:
        reads.append(room_id)
        return project([joined(1, "a", "a-tab"), joined(2, "b", "b-tab")])

    live.hub.subscribe("z-tab", Client().send_text, Client().close)
    live.hub.join("z-tab", user_stream("z"))  # connected here, in no room
    live.restore_statuses({"a": "busy", "b": "away", "z": "busy"})
    await live.load(ROOM, load)
    live.evict_idle()
    live.evict_idle()
    assert live.view(ROOM) is not None and live.cached == (1, 3, 0)  # "a" and "b" are in it elsewhere
    live.publish(left(3, "a", "a-tab"))
    live.publish(left(4, "b", "b-tab"))
    live.evict_idle()
    assert live.view(ROOM) is None and live.cached == (0, 1, 0)
    assert live.unknown_statuses(["a", "b", "z"]) == ["a", "b"]
    await live.load(ROOM, load)
    assert reads == [ROOM, ROOM]
    live.publish(left(3, "a", "a-tab"))
    live.publish(left(4, "b", "b-tab"))
    live.hub.subscribe("c-tab", Client().send_text, Client().close)
    live.hub.join("c-tab", room_stream(ROOM))  # joining here: subscribed before its join commits
    live.evict_idle()
    live.evict_idle()
    assert live.view(ROOM) is not None
    await live.hub.aclose()


async def test_live_a_leave_of_a_user_it_does_not_know_leaves_them_unknown() -> None:
    """Folded, it would make them known as "online", and a join listing them would not read the
    status they declared."""
    live = Live(Hub())
    live.publish(left(1, "a", "a-tab"))
    assert live.unknown_statuses(["a"]) == ["a"]
    await live.hub.aclose()


def typing(version: int, kind: str, **data: Any) -> RecordedEvent:
    fields = {"room_id": ROOM, "user_id": "a", "username": "a", "cell_id": "A1", "connection_id": "c-a"}
    return event(volatile_stream(room_stream(ROOM)), version, kind, **fields, **data)


async def test_live_does_not_send_an_expiry_of_typing_refreshed_before_it_committed() -> None:
    async with running_hub() as hub:
        other = Client()
        connect(hub, "c-b", other, room_stream(ROOM))
        live = Live(hub)
        first = typing(1, TYPING_STARTED)
        refresh = typing(2, TYPING_STARTED)
        for published in (
            first,
            refresh,
            typing(3, TYPING_STOPPED, reason=EXPIRED, start_version=first.stream_version),
        ):
            live.publish(published)
        await other.received(2)
        await settle()
        assert [orjson.loads(f)["type"] for f in other.frames] == ["user_typing_start"] * 2
        live.publish(typing(4, TYPING_STOPPED, reason=EXPIRED, start_version=refresh.stream_version))
        live.publish(typing(5, TYPING_STARTED))
        live.publish(typing(6, TYPING_STOPPED, reason="stopped"))  # a client's stop ends any typing
        live.publish(typing(7, TYPING_STOPPED, reason=EXPIRED, start_version=99))  # a start not seen here
        await other.received(6)
        await settle()
        assert [orjson.loads(f)["type"] for f in other.frames[2:]] == [
            "user_typing_stop",
            "user_typing_start",
            "user_typing_stop",
            "user_typing_stop",
        ]


async def test_live_forgets_typing_a_minute_past_its_timeout_whose_end_never_came() -> None:
    live = Live(Hub(), typing_timeout=120)
    live.publish(typing(1, TYPING_STARTED))  # its node died before its stop or leave
    live.evict_idle(now=T0 + timedelta(seconds=179))  # typing lasts, refreshed or not, up to 120 s
    assert live.cached == (0, 0, 1)
    live.evict_idle(now=T0 + timedelta(seconds=181))
    assert live.cached == (0, 0, 0)
    await live.hub.aclose()
