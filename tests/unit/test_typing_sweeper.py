"""The typing sweeper's decisions, driven by hand: `observe` committed events, set the time, `sweep`.
The commit is a plain function that records what it is given (the real one is exercised by the API
test in tests/api/test_websocket_rate_limits.py)."""

from __future__ import annotations

from dataclasses import replace

from engine.features.typing_sweeper import TypingSweeper
from engine.model.catalogue import EXPIRED, TYPING_STOPPED
from engine.model.events import Committed, Duplicate, NewEvent
from tests.unit.event_log import Log, at

ROOM = "room-1"
NODE = "node-1"


class Harness:
    def __init__(self) -> None:
        self.log = Log()
        self.now = at(0)
        self.appended: list[NewEvent] = []
        self.sweeper = TypingSweeper(self.commit, 5, NODE, now=lambda: self.now)

    async def commit(self, event: NewEvent) -> Committed:
        self.appended.append(event)
        data = {k: v for k, v in event.data.items() if k != "room_id"}
        recorded = self.log.room(ROOM, event.type, (self.now - at(0)).total_seconds(), **data)
        self.sweeper.observe(recorded)
        return Committed(recorded.position, recorded.stream_version, recorded.recorded_at)

    async def sweep_at(self, seconds: float) -> list[NewEvent]:
        self.now = at(seconds)
        before = len(self.appended)
        await self.sweeper.sweep()
        return self.appended[before:]


async def test_typing_without_a_stop_expires_after_the_timeout() -> None:
    h = Harness()
    h.sweeper.observe(h.log.typing(ROOM, "alice", "A1", "c1", 1))
    assert h.sweeper.active_rooms == {ROOM}
    assert await h.sweep_at(5.9) == []
    (stop,) = await h.sweep_at(6)
    assert (stop.type, stop.data["reason"], stop.data["user_id"]) == (TYPING_STOPPED, EXPIRED, "alice")
    assert stop.idempotency_key == "typing-expired:v1"
    assert h.sweeper.active_rooms == frozenset()
    assert await h.sweep_at(20) == []


async def test_a_stop_cancels_and_a_new_start_resets_the_timer() -> None:
    h = Harness()
    h.sweeper.observe(h.log.typing(ROOM, "alice", "A1", "c1", 1))
    h.sweeper.observe(h.log.typing(ROOM, "bob", "B1", "c2", 1))
    h.sweeper.observe(h.log.typing_stopped(ROOM, "bob", "B1", 2))
    h.sweeper.observe(h.log.typing(ROOM, "alice", "A1", "c1", 4))  # refreshed
    assert await h.sweep_at(8) == []
    (stop,) = await h.sweep_at(9)
    assert stop.data["user_id"] == "alice"


async def test_leaving_the_room_ends_the_typing_without_an_expiry() -> None:
    h = Harness()
    h.sweeper.observe(h.log.typing(ROOM, "alice", "A1", "c1", 1))
    h.sweeper.observe(h.log.left(ROOM, "alice", "c1", 2))
    assert h.sweeper.active_rooms == frozenset()
    assert await h.sweep_at(30) == []


async def test_a_duplicate_stop_is_not_appended_again() -> None:
    h = Harness()
    h.sweeper.observe(h.log.typing(ROOM, "alice", "A1", "c1", 1))
    seen: list[NewEvent] = []

    async def duplicate(event: NewEvent) -> Duplicate:  # another node appended it: nothing published
        seen.append(event)
        return Duplicate(1, 1, at(0))

    h.sweeper._commit = duplicate
    h.now = at(7)
    await h.sweeper.sweep()
    await h.sweeper.sweep()
    assert len(seen) == 1
    assert h.sweeper.active_rooms == frozenset()


async def test_a_start_through_another_node_hands_the_typist_over_to_that_node() -> None:
    """Its sweeper ends the typing on the refreshed timer; this one must not end it on the old one."""
    h = Harness()
    h.sweeper.observe(h.log.typing(ROOM, "alice", "A1", "c1", 1))
    refreshed = h.log.typing(ROOM, "alice", "A1", "c2", 4)
    h.sweeper.observe(replace(refreshed, metadata={"node": "node-2"}))
    assert h.sweeper.active_rooms == frozenset()
    assert await h.sweep_at(30) == []


async def test_a_stop_or_a_leave_through_another_node_ends_the_timer_here() -> None:
    h = Harness()
    h.sweeper.observe(h.log.typing(ROOM, "alice", "A1", "c1", 1))
    h.sweeper.observe(h.log.typing(ROOM, "bob", "B1", "c2", 1))
    elsewhere = {"node": "node-2"}
    h.sweeper.observe(replace(h.log.typing_stopped(ROOM, "alice", "A1", 2), metadata=elsewhere))
    h.sweeper.observe(replace(h.log.left(ROOM, "bob", "c2", 2), metadata=elsewhere))
    assert h.sweeper.active_rooms == frozenset()
    assert await h.sweep_at(30) == []


async def test_a_stop_that_expires_while_another_commits_is_not_sent_once_the_typing_was_refreshed() -> None:
    """The sweep works from the views as they were when it began; a start refreshed while an earlier
    stop was being committed must not be ended by that sweep's stale stop."""
    h = Harness()
    h.sweeper.observe(h.log.typing(ROOM, "alice", "A1", "c1", 1))
    h.sweeper.observe(h.log.typing(ROOM, "bob", "B1", "c2", 1))
    plain = h.commit

    async def refreshing_meanwhile(event: NewEvent) -> Committed:
        committed = await plain(event)
        if event.data["user_id"] == "alice":  # bob starts again while alice's stop commits
            h.sweeper.observe(h.log.typing(ROOM, "bob", "B1", "c2", 6))
        return committed

    h.sweeper._commit = refreshing_meanwhile
    stops = await h.sweep_at(6)
    assert [stop.data["user_id"] for stop in stops] == ["alice"]
    assert h.sweeper.active_rooms == {ROOM}  # bob, until his refreshed start expires


async def test_an_expiry_that_commits_after_a_refresh_of_the_same_typing_does_not_end_it() -> None:
    """The refresh commits between the sweep's check and its stop's commit: the stop, which names the
    first start, changes nothing, and the refreshed typing expires on its own timer."""
    h = Harness()
    h.sweeper.observe(h.log.typing(ROOM, "alice", "A1", "c1", 1))
    plain = h.commit
    refreshes = []

    async def refreshed_first(event: NewEvent) -> Committed:
        refreshes.append(h.log.typing(ROOM, "alice", "A1", "c1", 6))
        h.sweeper.observe(refreshes[-1])
        return await plain(event)

    h.sweeper._commit = refreshed_first
    (stale,) = await h.sweep_at(6)
    assert stale.data["start_version"] == 1
    assert h.sweeper.active_rooms == {ROOM}
    h.sweeper._commit = plain
    assert await h.sweep_at(10.9) == []
    (stop,) = await h.sweep_at(11)
    assert stop.idempotency_key == f"typing-expired:v{refreshes[0].stream_version}"
    assert h.sweeper.active_rooms == frozenset()
