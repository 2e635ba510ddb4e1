"""Rooms, cells and presence through engine sessions on the memory log: what each member receives,
what the sender is answered, and what the log holds."""

from __future__ import annotations

from collections.abc import Sequence

from engine.features.limits import RateLimits
from engine.log.memory import MemoryEventStore
from engine.model.catalogue import CELL_UPDATED, USER_JOINED_ROOM, USER_LEFT_ROOM
from engine.model.events import AppendOutcome, NewEvent
from engine.model.streams import room_stream, volatile_stream
from engine.service import Engine
from tests.engine.memory_engine import connect, memory_engine


async def joined(engine: Engine, room: str, *users: str) -> list:
    clients = []
    for user in users:
        client = await connect(engine, user)
        await client.send({"type": "join_room", "room_id": room})
        clients.append(client)
    for client in clients:
        client.take()
    return clients


async def test_engine_join_sends_room_state_to_the_joiner_and_user_joined_to_the_others() -> None:
    async with memory_engine() as engine:
        (ann,) = await joined(engine, "r", "ann")
        bob = await connect(engine, "bob")
        await bob.send({"type": "join_room", "room_id": "r", "client_msg_id": "j1"})
        answer = bob.take()
        assert [m["type"] for m in answer] == ["room_state", "ack"]
        assert [u["user_id"] for u in answer[0]["users"]] == ["ann", "bob"] and answer[0]["seq"] == 2
        assert answer[1] == {"type": "ack", "client_msg_id": "j1", "room_id": "r", "seq": 2}
        assert [m["type"] for m in ann.take()] == ["room_state", "user_joined"]
        log = await engine.store.read_stream(room_stream("r"))
        assert [(e.type, e.data["user_id"]) for e in log] == [
            (USER_JOINED_ROOM, "ann"),
            (USER_JOINED_ROOM, "bob"),
        ]


async def test_engine_cell_update_reaches_every_member_with_the_servers_version() -> None:
    async with memory_engine() as engine:
        ann, bob = await joined(engine, "r", "ann", "bob")
        update = {
            "type": "cell_update",
            "sheet_id": "s",
            "cell_id": "A1",
            "value": "Hi",
            "version": 1642161000000,
        }
        await ann.send({**update, "client_msg_id": "c1"})
        sent = ann.take()
        assert [m["type"] for m in sent] == ["cell_updated", "ack"]
        assert sent[0]["version"] == 1642161000001 and sent[0]["client_msg_id"] == "c1"
        assert [(m["type"], m["version"]) for m in bob.take()] == [("cell_updated", 1642161000001)]
        assert await engine.sheet_room("s") == "r"


async def test_engine_a_stale_cell_update_is_a_conflict_and_changes_nothing() -> None:
    async with memory_engine() as engine:
        ann, bob = await joined(engine, "r", "ann", "bob")
        await ann.send({"type": "cell_update", "sheet_id": "s", "cell_id": "A1", "value": 1})
        await ann.send({"type": "cell_update", "sheet_id": "s", "cell_id": "A1", "value": 2})
        ann.take(), bob.take()
        await bob.send({"type": "cell_update", "sheet_id": "s", "cell_id": "A1", "value": 9, "version": 1})
        [refusal] = bob.take()
        assert refusal["code"] == "VERSION_CONFLICT"
        assert refusal["current"] == {"value": 2, "formula": None, "version": 2, "user_id": "ann"}
        assert ann.take() == []
        updates = [e for e in await engine.store.read_stream(room_stream("r")) if e.type == CELL_UPDATED]
        assert [e.data["value"] for e in updates] == [1, 2]


async def test_engine_acting_in_a_room_needs_membership_and_editing_needs_a_role() -> None:
    async with memory_engine() as engine:
        (ann,) = await joined(engine, "r", "ann")
        outsider = await connect(engine, "eve")
        viewer = await connect(engine, "vic", "viewer")
        await viewer.send({"type": "join_room", "room_id": "r"})
        viewer.take()
        await outsider.send({"type": "cursor_move", "room": "r", "x": 1, "y": 2, "client_msg_id": "m"})
        assert [(m["code"], m["client_msg_id"]) for m in outsider.take()] == [("PERMISSION_DENIED", "m")]
        await viewer.send({"type": "cell_update", "sheet_id": "s", "cell_id": "A1", "value": 1, "room": "r"})
        assert [m["code"] for m in viewer.take()] == ["PERMISSION_DENIED"]
        await outsider.send({"type": "leave_room", "room_id": "r"})
        assert [m["code"] for m in outsider.take()] == ["ROOM_NOT_FOUND"]
        assert [m["type"] for m in ann.take()] == ["room_state", "user_joined"]  # the viewer's join only


async def test_engine_cursor_goes_to_the_others_and_its_ack_has_no_seq() -> None:
    async with memory_engine() as engine:
        ann, bob = await joined(engine, "r", "ann", "bob")
        await ann.send(
            {"type": "cursor_move", "room": "r", "x": 10, "y": 20, "cell": "B2", "client_msg_id": "k"}
        )
        assert ann.take() == [{"type": "ack", "client_msg_id": "k", "room_id": "r"}]
        [moved] = bob.take()
        assert moved["type"] == "cursor_moved" and moved["cursor"] == {"x": 10, "y": 20, "cell": "B2"}
        assert len(await engine.store.read_stream(volatile_stream(room_stream("r")))) == 1


async def test_engine_leave_answers_room_left_and_tells_the_others() -> None:
    async with memory_engine() as engine:
        ann, bob = await joined(engine, "r", "ann", "bob")
        await bob.send({"type": "leave_room", "room_id": "r"})
        assert [m["type"] for m in bob.take()] == ["room_left"]
        assert [m["type"] for m in ann.take()] == ["room_state", "user_left"]
        await bob.send({"type": "cursor_move", "room": "r", "x": 1, "y": 1})
        assert [m["code"] for m in bob.take()] == ["PERMISSION_DENIED"]


async def test_engine_a_closed_connection_leaves_its_rooms() -> None:
    async with memory_engine() as engine:
        ann, bob = await joined(engine, "r", "ann", "bob")
        await bob.session.end()
        await ann.send({"type": "ping"})
        assert [m["type"] for m in ann.take()] == ["room_state", "user_left", "pong"]
        last = (await engine.store.read_stream(room_stream("r")))[-1]
        assert (last.type, last.data["user_id"], last.data["reason"]) == (
            USER_LEFT_ROOM,
            "bob",
            "disconnected",
        )


async def test_engine_status_reaches_the_users_other_tab_and_their_rooms() -> None:
    async with memory_engine() as engine:
        ann, bob = await joined(engine, "r", "ann", "bob")
        ann_tab = await connect(engine, "ann")
        await ann.send({"type": "status_update", "status": "busy"})
        assert [m["status"] for m in ann_tab.take()] == ["busy"]
        assert [(m["type"], m["user_id"]) for m in bob.take()] == [("user_status_changed", "ann")]


async def test_engine_a_room_nobody_here_is_in_is_dropped_from_memory_and_read_again_on_its_next_join() -> (
    None
):
    """Once its last member here left and two sweeps passed, the room's view is gone from the node's
    memory, and so is a user with no connection left; the next join reads the room from the log and
    shows what it holds."""
    async with memory_engine() as engine:
        live = engine.node.live
        ann, bob = await joined(engine, "r", "ann", "bob")
        await ann.send({"type": "cell_update", "sheet_id": "s", "cell_id": "A1", "value": 7})
        await ann.send({"type": "leave_room", "room_id": "r"})
        await engine.disconnect(bob.connection_id)
        live.evict_idle()
        assert live.view("r") is not None  # loaded since the sweep before: a message may be appending
        live.evict_idle()
        assert live.view("r") is None and live.cached == (0, 1, 0)  # ann is still connected
        carl = await connect(engine, "carl")
        await carl.send({"type": "join_room", "room_id": "r"})  # its room_state, read again
        [state] = [m for m in carl.take() if m["type"] == "room_state"]
        assert (state["seq"], state["total_users"]) == (6, 1)  # 2 joins, an edit, 2 leaves, carl
        assert [u["user_id"] for u in state["users"]] == ["carl"]


async def test_engine_a_view_read_from_the_log_has_the_cursors_of_the_live_one() -> None:
    """Cursors moved during each member's current stay, not before it; the other tab's leave does not
    end a stay."""
    async with memory_engine() as engine:
        ann, bob, cy = await joined(engine, "r", "ann", "bob", "cy")
        bob_tab = await connect(engine, "bob")
        await bob_tab.send({"type": "join_room", "room_id": "r"})
        for client, x in ((ann, 1), (bob, 2), (cy, 3)):
            await client.send({"type": "cursor_move", "room": "r", "x": x, "y": x})
        await bob_tab.send({"type": "leave_room", "room_id": "r"})
        await cy.send({"type": "leave_room", "room_id": "r"})
        await cy.send({"type": "join_room", "room_id": "r"})
        live = engine.node.live.view("r", shown=False)
        read = await engine.room_view("r")
        assert live is not None
        assert {u: m.cursor for u, m in read.members.items()} == {
            u: m.cursor for u, m in live.members.items()
        }
        assert {u: m.cursor for u, m in read.members.items()} == {
            "ann": {"x": 1, "y": 1, "cell": None},
            "bob": {"x": 2, "y": 2, "cell": None},
            "cy": None,
        }


async def test_engine_a_resumed_join_s_room_state_shows_the_members_cursors() -> None:
    async with memory_engine() as engine:
        (ann,) = await joined(engine, "r", "ann")
        await ann.send({"type": "cursor_move", "room": "r", "x": 7, "y": 8})
        bob = await connect(engine, "bob")
        await bob.send({"type": "join_room", "room_id": "r", "since": 1})
        (state,) = [m for m in bob.take() if m["type"] == "room_state"]
        assert {u["user_id"]: u["cursor"] for u in state["users"]} == {
            "ann": {"x": 7, "y": 8, "cell": None},
            "bob": None,
        }


async def test_engine_past_a_limit_a_join_retried_on_its_connection_is_acked_and_on_another_refused() -> None:
    """A retried join from a new tab is that tab's own join: acked without one, the tab would think
    itself in the room and hear nothing from it."""
    async with memory_engine(rate_limits=RateLimits(per_minute=1, per_hour=100, block_seconds=60)) as engine:
        tab = await connect(engine, "ann")
        await tab.send({"type": "join_room", "room_id": "r", "client_msg_id": "j1"})
        ack = tab.take()[-1]
        await tab.send({"type": "join_room", "room_id": "r", "client_msg_id": "j1"})
        assert tab.take() == [ack]
        other = await connect(engine, "ann")
        await other.send({"type": "join_room", "room_id": "r", "client_msg_id": "j1"})
        assert [(m["type"], m.get("code")) for m in other.take()] == [("error", "RATE_LIMIT_EXCEEDED")]


async def test_engine_past_a_limit_a_new_tab_s_applied_join_retried_again_is_acked() -> None:
    """The new tab's retry joined it (a join of its own); its next retry, refused by the limit, finds
    it in the room and is acked with that join's seq, not the first tab's."""
    async with memory_engine(rate_limits=RateLimits(per_minute=2, per_hour=100, block_seconds=60)) as engine:
        tab = await connect(engine, "ann")
        await tab.send({"type": "join_room", "room_id": "r", "client_msg_id": "j1"})
        other = await connect(engine, "ann")
        await other.send({"type": "join_room", "room_id": "r", "client_msg_id": "j1"})
        state, ack = other.take()
        assert (state["type"], ack["seq"]) == ("room_state", 2)
        await other.send({"type": "join_room", "room_id": "r", "client_msg_id": "j1"})
        assert other.take() == [ack]


JOIN_J1 = {"type": "join_room", "room_id": "r", "client_msg_id": "j1"}


async def joins_of(engine: Engine, room: str) -> list[tuple[str, str | None]]:
    """The room's joins as (connection id, idempotency key), in log order."""
    log = await engine.store.read_stream(room_stream(room))
    joins = [e for e in log if e.type == USER_JOINED_ROOM]
    assert all(e.metadata["client_msg_id"] == "j1" and "retry_of" not in e.metadata for e in joins)
    return [(e.data["connection_id"], e.idempotency_key) for e in joins]


async def test_engine_a_join_retried_from_a_new_tab_and_repeated_there_appends_one_join_for_it() -> None:
    """The first tab dropped before its ack. The new tab's retry is a join of its own, keyed by its
    connection: each repeat of it there (its ack lost too, say) gets that join's ack again."""
    async with memory_engine() as engine:
        first = await connect(engine, "ann")
        await first.send(JOIN_J1)
        await first.session.end()  # its leave is seq 2
        tab = await connect(engine, "ann")
        await tab.send(JOIN_J1)
        state, ack = tab.take()
        assert (state["type"], ack) == ("room_state", {**JOIN_J1, "type": "ack", "seq": 3})
        for _ in range(3):
            await tab.send(JOIN_J1)
            assert [m for m in tab.take() if m["type"] != "room_state"] == [ack]
        assert await joins_of(engine, "r") == [
            (first.connection_id, f"j1@{first.connection_id}"),
            (tab.connection_id, f"j1@{tab.connection_id}"),
        ]
        assert (await engine.room_view("r")).seq == 3


async def test_engine_a_join_repeated_on_the_first_tab_and_on_a_new_one_gets_each_tab_s_own_seq() -> None:
    async with memory_engine() as engine:
        first = await connect(engine, "ann")
        await first.send(JOIN_J1)
        tab = await connect(engine, "ann")
        await tab.send(JOIN_J1)
        seqs = {first.connection_id: first.take()[-1]["seq"], tab.connection_id: tab.take()[-1]["seq"]}
        assert list(seqs.values()) == [1, 2]
        for _ in range(3):
            for client in (first, tab):
                await client.send(JOIN_J1)
                assert client.take()[-1]["seq"] == seqs[client.connection_id]
        assert [cid for cid, _ in await joins_of(engine, "r")] == list(seqs)


async def test_engine_past_a_limit_a_new_tab_s_join_repeated_there_gets_its_ack_each_time() -> None:
    """Refused by the limit, each repeat is a retry of the tab's own join: its ack, nothing appended.
    A third tab that never joined is refused."""
    async with memory_engine(rate_limits=RateLimits(per_minute=2, per_hour=100, block_seconds=60)) as engine:
        first = await connect(engine, "ann")
        await first.send(JOIN_J1)
        await first.session.end()
        tab = await connect(engine, "ann")
        await tab.send(JOIN_J1)
        ack = tab.take()[-1]
        assert ack["seq"] == 3
        for _ in range(3):
            await tab.send(JOIN_J1)
            assert tab.take() == [ack]
        assert [cid for cid, _ in await joins_of(engine, "r")] == [first.connection_id, tab.connection_id]
        third = await connect(engine, "ann")
        await third.send(JOIN_J1)
        assert [(m["type"], m.get("code")) for m in third.take()] == [("error", "RATE_LIMIT_EXCEEDED")]


class LosesTheAnswer(MemoryEventStore):
    """The batch holding the `kind` event (a join or a leave) of connection `of` is written, then fails
    on its way back, as when the connection breaks during COMMIT: the connection hears of an outage
    (a joiner is then still `joining`)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.of: str | None = None

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        outcomes = await super().append(items)
        if any(i.type == self.kind and i.data["connection_id"] == self.of for i in items):
            self.of = None
            raise ConnectionResetError("the connection broke during COMMIT")
        return outcomes


async def test_engine_a_new_tab_s_join_retried_before_it_is_in_the_room_is_not_appended_again() -> None:
    log = LosesTheAnswer(USER_JOINED_ROOM)
    async with memory_engine(log) as engine:
        first = await connect(engine, "ann")
        await first.send(JOIN_J1)
        await first.session.end()
        tab = await connect(engine, "ann")
        log.of = tab.connection_id
        await tab.send(JOIN_J1)
        [error] = tab.take()
        assert (error["type"], error.get("retryable")) == ("error", True)
        for _ in range(3):
            await tab.send(JOIN_J1)
            assert tab.take()[-1] == {**JOIN_J1, "type": "ack", "seq": 3}  # the join whose answer was lost
        assert [cid for cid, _ in await joins_of(engine, "r")] == [first.connection_id, tab.connection_id]


async def test_engine_a_leave_retried_after_its_answer_was_lost_is_not_appended_again() -> None:
    """The retry finds its leave in the log (a Duplicate) while the connection, never told, is still in
    the room here: answered with that leave's seq, and nothing appended."""
    log = LosesTheAnswer(USER_LEFT_ROOM)
    async with memory_engine(log) as engine:
        _, bob = await joined(engine, "r", "ann", "bob")
        log.of = bob.connection_id
        leave = {"type": "leave_room", "room_id": "r", "client_msg_id": "l1"}
        await bob.send(leave)
        [error] = bob.take()
        assert (error["code"], error.get("retryable")) == ("INTERNAL_ERROR", True)
        await bob.send(leave)
        assert [(m["type"], m.get("reason"), m.get("seq")) for m in bob.take()] == [
            ("room_left", "left", 3),
            ("ack", None, 3),
        ]
        leaves = [e for e in await engine.store.read_stream(room_stream("r")) if e.type == USER_LEFT_ROOM]
        assert [(e.stream_version, e.idempotency_key) for e in leaves] == [(3, "l1")]


async def test_engine_a_tab_that_left_and_sends_its_join_s_id_again_joins_again() -> None:
    """Not a retry: the tab is no longer a member, so it is a join again (keyless, the key is spent);
    past a limit it is refused, not acked."""
    async with memory_engine(rate_limits=RateLimits(per_minute=3, per_hour=100, block_seconds=60)) as engine:
        tab = await connect(engine, "ann")
        await tab.send(JOIN_J1)
        await tab.send({"type": "leave_room", "room_id": "r"})
        tab.take()
        await tab.send(JOIN_J1)
        assert [(m["type"], m.get("seq")) for m in tab.take()] == [("room_state", 3), ("ack", 3)]
        assert await joins_of(engine, "r") == [
            (tab.connection_id, f"j1@{tab.connection_id}"),
            (tab.connection_id, None),
        ]
        await tab.send({"type": "leave_room", "room_id": "r"})  # refused by the limit: still in
        await tab.send({"type": "join_room", "room_id": "r", "client_msg_id": "j1"})
        assert [m["type"] for m in tab.take()] == ["error", "ack"]
