"""ai_request / ai_cancel between real clients on a real server and database: the builtin provider
analyses the cells the room wrote, streams its steps to the requester only, and every step is in the
requester's stream. Cancellation and shutdown use a real provider that waits on a gate between steps,
so where the cancel lands is decided by the test, not by timing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from websockets.asyncio.client import ClientConnection

from api.settings import Settings
from engine.fanout import send_queue
from engine.features.ai import AiJob, AiStep, BuiltinProvider, Complete, Progress, cell_values
from engine.log.store import EventStore, create_db_engine
from engine.model.catalogue import AI_CANCELLED, AI_COMPLETED, AI_FAILED, AI_PROGRESSED, AI_REQUEST_STARTED
from engine.model.streams import user_stream
from tests.api.conftest import Server, fresh_database, make_settings, request, serve, wait_for_events
from tests.api.live_helpers import Message, greet, join, of_type, pending, send, types, until


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def fill(ws: ClientConnection, sheet: str, room: str, cells: dict[str, Any]) -> None:
    """Write cells one by one, each confirmed by its ack."""
    for i, (cell_id, value) in enumerate(cells.items()):
        cmid = f"fill-{i}"
        message = {"type": "cell_update", "sheet_id": sheet, "cell_id": cell_id, "value": value}
        await send(ws, {**message, "room": room, "client_msg_id": cmid})
        await until(ws, of_type("ack", client_msg_id=cmid))


def ai_request(request_id: str, sheet: str, **extra: Any) -> dict[str, Any]:
    return {"type": "ai_request", "request_id": request_id, "query": "Analyse", "sheet_id": sheet, **extra}


async def test_ai_request_streams_a_real_analysis_to_the_requester_only(
    server: Server, store: EventStore
) -> None:
    room, sheet, alice_id, bob_id = uid("room"), uid("sheet"), uid("alice"), uid("bob")
    async with (
        server.connect(server.token(alice_id)) as alice,
        server.connect(server.token(alice_id)) as alice_tab,
        server.connect(server.token(bob_id)) as bob,
    ):
        for ws in (alice, alice_tab, bob):
            await greet(ws)
        await join(alice, room)
        await join(bob, room)
        # A header and a numeric column: 10, 20, 30, 40 (sum 100); a value outside the range too.
        cells = {"A1": "Sales", "A2": 10, "A3": 20, "A4": "30", "A5": 40, "C9": 1000}
        await fill(alice, sheet, room, cells)
        await pending(bob)

        await send(alice, ai_request("req_1", sheet, context={"table_range": "A1:B5"}, client_msg_id="ai-1"))
        seen = await until(alice, lambda m: m.get("event_type") in ("ai_complete", "ai_error"))
        ai = [m for m in seen if m["type"] == "ai_event"]
        assert "ack" in types(seen)
        kinds = [m["event_type"] for m in ai]
        assert kinds[0] == "ai_start" and kinds[-1] == "ai_complete", kinds
        assert set(kinds[1:-1]) == {"ai_progress"} and len(kinds) - 2 >= 2
        assert ai[0]["data"] == {"query": "Analyse", "sheet_id": sheet}
        assert all(m["request_id"] == "req_1" and m["user_id"] == alice_id for m in ai)
        progress = [m["data"]["progress"] for m in ai[1:-1]]
        assert progress == sorted(progress) and all(0 <= p <= 100 for p in progress)
        assert all(isinstance(m["data"]["status"], str) for m in ai[1:-1])
        seqs = [m["seq"] for m in ai]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # the user's own stream, in order
        done = ai[-1]["data"]
        assert "4 values, sum 100, mean 25, min 10, max 40" in done["result"]
        assert "1,000" not in done["result"]  # C9 lies outside the range
        assert done["processing_time"] >= 0
        assert done["details"]["columns"][0]["sum"] == 100

        # The requester's other tab hears it all; another member of the room hears none of it.
        tab = await until(alice_tab, lambda m: m.get("event_type") == "ai_complete")
        assert [m["event_type"] for m in tab if m["type"] == "ai_event"] == kinds
        assert "ai_event" not in types(await pending(bob))

    events = await store.read_stream(user_stream(alice_id))
    assert [e.type for e in events] == [
        AI_REQUEST_STARTED,
        *[AI_PROGRESSED] * (len(kinds) - 2),
        AI_COMPLETED,
    ]
    assert events[0].data["context"] == {"table_range": "A1:B5"}
    assert events[0].data["room_id"] == room
    assert events[0].idempotency_key == "ai:req_1"
    assert events[-1].data["result"] == done["result"]
    assert not await store.read_stream(user_stream(bob_id))


async def test_a_repeated_request_id_never_runs_twice(server: Server, store: EventStore) -> None:
    room, sheet, user = uid("room"), uid("sheet"), uid("carol")
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        await join(ws, room)
        await fill(ws, sheet, room, {"A1": 1, "A2": 2})
        await send(ws, ai_request("r", sheet, client_msg_id="first"))
        await until(ws, lambda m: m.get("event_type") == "ai_complete")
        started = [e for e in await store.read_stream(user_stream(user)) if e.type == AI_REQUEST_STARTED]

        retry = await request(ws, ai_request("r", sheet, client_msg_id="first"))
        assert (retry["type"], retry["seq"]) == ("ack", started[0].stream_version)
        again = await request(ws, ai_request("r", sheet))
        assert (again["type"], again["code"], again["request_id"]) == ("error", "VALIDATION_ERROR", "r")
        assert "ai_event" not in types(await pending(ws))
    after = await store.read_stream(user_stream(user))
    assert [e.type for e in after].count(AI_REQUEST_STARTED) == 1


async def test_refusals_persist_nothing(server: Server, store: EventStore) -> None:
    room, other_room, sheet, user, viewer = uid("room"), uid("room"), uid("sheet"), uid("dan"), uid("vic")
    async with (
        server.connect(server.token(user)) as ws,
        server.connect(server.token(viewer, roles=["viewer"])) as vws,
    ):
        await greet(ws)
        await greet(vws)
        await join(ws, room)
        await join(vws, room)
        await fill(ws, sheet, room, {"A1": 5})
        await pending(vws)

        denied = await request(vws, ai_request("v1", sheet))
        assert (denied["code"], denied["request_id"]) == ("PERMISSION_DENIED", "v1")
        unknown = await request(ws, ai_request("u1", uid("no-sheet")))
        assert unknown["code"] == "NOT_FOUND"
        await request(ws, {"type": "leave_room", "room_id": room})
        await join(ws, other_room)
        outsider = await request(ws, ai_request("o1", sheet))
        assert outsider["code"] == "PERMISSION_DENIED"
        cancel = await request(ws, {"type": "ai_cancel", "request_id": "never"})
        assert (cancel["code"], cancel["request_id"]) == ("NOT_FOUND", "never")
    assert not await store.read_stream(user_stream(viewer))
    assert not await store.read_stream(user_stream(user))


class GatedProvider:
    """A real provider whose steps wait for the test: progress 10, wait, progress 60, wait, answer.
    Records whether a cancel reached it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.reached: asyncio.Event = asyncio.Event()  # set once it waits at the gate
        self.cancelled = False

    async def analyse(self, job: AiJob) -> AsyncIterator[AiStep]:
        try:
            total = sum(v for v in cell_values(job.sheet).values() if isinstance(v, int))
            yield Progress(10, "Reading")
            self.reached.set()
            await self.gate.wait()
            yield Progress(60, "Adding")
            await self.gate.wait()
            yield Complete(f"total {total}", 0.01)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


@pytest.fixture
def gated() -> GatedProvider:
    return GatedProvider()


@pytest.fixture
async def gated_server(database_url: str, gated: GatedProvider) -> AsyncIterator[Server]:
    settings: Settings = make_settings(database_url)
    async with serve(settings, ai_provider=gated) as running:
        yield running


async def test_ai_cancel_stops_a_running_request(
    gated_server: Server, gated: GatedProvider, store: EventStore
) -> None:
    server = gated_server
    room, sheet, user = uid("room"), uid("sheet"), uid("erin")
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        await join(ws, room)
        await fill(ws, sheet, room, {"A1": 3, "A2": 4})
        await send(ws, ai_request("c1", sheet))
        first = await until(ws, lambda m: m.get("event_type") == "ai_progress")
        assert [m["event_type"] for m in first] == ["ai_start", "ai_progress"]
        await asyncio.wait_for(gated.reached.wait(), 5)

        await send(ws, {"type": "ai_cancel", "request_id": "c1", "client_msg_id": "stop"})
        seen = await until(ws, of_type("ack", client_msg_id="stop"))
        assert types(seen) == ["ai_event", "ack"]
        assert seen[0]["event_type"] == "ai_error"
        assert seen[0]["data"]["code"] == "CANCELLED"
        assert gated.cancelled
        gated.gate.set()  # nothing is left to wake: no more steps may come
        assert "ai_event" not in types(await pending(ws))
        again = await request(ws, {"type": "ai_cancel", "request_id": "c1"})
        assert again["code"] == "NOT_FOUND"
    events = await store.read_stream(user_stream(user))
    assert [e.type for e in events] == [AI_REQUEST_STARTED, AI_PROGRESSED, AI_CANCELLED]


async def test_a_request_running_at_shutdown_is_recorded_as_failed(
    database_url: str, gated: GatedProvider, store: EventStore
) -> None:
    room, sheet, user = uid("room"), uid("sheet"), uid("fay")
    async with serve(make_settings(database_url), ai_provider=gated) as server:
        async with server.connect(server.token(user)) as ws:
            await greet(ws)
            await join(ws, room)
            await fill(ws, sheet, room, {"A1": 1})
            await send(ws, ai_request("s1", sheet))
            await until(ws, lambda m: m.get("event_type") == "ai_progress")
            await asyncio.wait_for(gated.reached.wait(), 5)
        # The requester went away: the request keeps running until the server stops.
        assert (await store.read_stream(user_stream(user)))[-1].type == AI_PROGRESSED
    events = await wait_for_events(store, user_stream(user), 3)
    assert [e.type for e in events] == [AI_REQUEST_STARTED, AI_PROGRESSED, AI_FAILED]
    assert events[-1].data["error"] == "the server is shutting down"
    assert gated.cancelled


async def test_ai_cancel_through_another_node_stops_the_run_where_it_runs(
    server_url: str, gated: GatedProvider, store: EventStore
) -> None:
    """The user asked in a tab on the first node and cancels in a tab on the second: the run stops
    on the first, and both tabs get the cancellation once."""
    room, sheet, user = uid("room"), uid("sheet"), uid("gus")
    async with fresh_database(server_url) as url:
        settings = make_settings(url)
        async with (
            serve(settings, ai_provider=gated) as first,
            serve(settings, ai_provider=gated) as second,
            first.connect(first.token(user)) as asking,
            second.connect(second.token(user)) as cancelling,
        ):
            await greet(asking), await greet(cancelling)
            await join(asking, room)
            await fill(asking, sheet, room, {"A1": 3})
            await send(asking, ai_request("x1", sheet))
            await until(cancelling, lambda m: m.get("event_type") == "ai_progress")
            await asyncio.wait_for(gated.reached.wait(), 5)

            await send(cancelling, {"type": "ai_cancel", "request_id": "x1", "client_msg_id": "stop"})
            seen = await until(cancelling, of_type("ack", client_msg_id="stop"))
            assert [m["data"].get("code") for m in seen if m["type"] == "ai_event"] == ["CANCELLED"]
            assert gated.cancelled and first.engine.ai.running == frozenset()
            errors = await until(asking, lambda m: m.get("event_type") == "ai_error")
            assert errors[-1]["data"]["code"] == "CANCELLED"
            gated.gate.set()  # nothing is left to wake: no more steps may come
            assert "ai_event" not in types(await pending(asking))
            again = await request(cancelling, {"type": "ai_cancel", "request_id": "x1"})
            assert again["code"] == "NOT_FOUND"
            # A retry of the cancel (its answer was lost, say) is acked with the cancellation's seq.
            retried = await request(
                cancelling, {"type": "ai_cancel", "request_id": "x1", "client_msg_id": "stop"}
            )
            assert (retried["type"], retried["seq"]) == ("ack", seen[-1]["seq"])
            fresh = await request(
                cancelling, {"type": "ai_cancel", "request_id": "x1", "client_msg_id": "new"}
            )
            assert fresh["code"] == "NOT_FOUND"  # not a retry: the request is over
            db = second.engine.node.store
            kinds = [e.type for e in await db.read_stream(user_stream(user))]
            assert kinds == [AI_REQUEST_STARTED, AI_PROGRESSED, AI_CANCELLED]


async def test_ai_cancel_while_a_live_peer_does_not_answer_is_retryable_not_not_found(
    server_url: str,
) -> None:
    """A node that beats but does not answer on the control channel may be running the request: the
    cancel is answered as "try again", not as "no such request"."""
    async with fresh_database(server_url) as url:
        settings = make_settings(
            url, node_heartbeat_seconds=0.2, node_dead_after_seconds=30.0, append_timeout_seconds=1.0
        )
        db = create_db_engine(url)
        try:
            async with serve(settings) as node, node.connect(node.token(uid("hal"))) as ws:
                await greet(ws)
                async with db.begin() as conn:  # a peer that beats, and hears nothing
                    insert = (
                        "INSERT INTO nodes (node_id, started_at, heartbeat_at) VALUES ('mute', now(), now())"
                    )
                    await conn.execute(text(insert))
                async with asyncio.timeout(10):
                    while "mute" not in node.engine.node.nodes.peers:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                await send(ws, {"type": "ai_cancel", "request_id": "r9", "client_msg_id": "c"})
                reply = json.loads(await asyncio.wait_for(ws.recv(), 30))  # after the peers' wait, 5 s
                assert (reply["type"], reply["code"], reply.get("retryable")) == (
                    "error",
                    "INTERNAL_ERROR",
                    True,
                )
        finally:
            await db.dispose()


async def test_a_retried_request_from_a_new_tab_gets_the_original_ack(
    server: Server, store: EventStore
) -> None:
    """Idempotency first: the requester's socket dropped before the ack, and the retry comes from a
    new connection that has not joined the sheet's room yet. It is the same request: acked with the
    original's seq, not refused, and nothing runs again; the new connection gets its answer first."""
    room, sheet, user = uid("room"), uid("sheet"), uid("ivy")
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        await join(ws, room)
        await fill(ws, sheet, room, {"A1": 1, "A2": 2})
        await send(ws, ai_request("r", sheet, client_msg_id="ask"))
        seen = await until(ws, lambda m: m.get("event_type") == "ai_complete")
        acked = next(m for m in seen if m["type"] == "ack")
    async with server.connect(server.token(user)) as tab:
        await greet(tab)
        await send(tab, ai_request("r", sheet, client_msg_id="ask"))
        answered = await until(tab, of_type("ack"))
        assert [m.get("event_type") for m in answered] == ["ai_complete", None]  # what it missed, first
        assert answered[0] == seen[-1]
        retry = answered[-1]
        assert (retry["type"], retry["seq"], retry["client_msg_id"]) == ("ack", acked["seq"], "ask")
        assert "room_id" not in retry
        assert "ai_event" not in types(await pending(tab))
        # Not a retry: a request of its own, refused as before.
        fresh = await request(tab, ai_request("r2", sheet, client_msg_id="other"))
        assert (fresh["code"], fresh["request_id"]) == ("PERMISSION_DENIED", "r2")
    kinds = [e.type for e in await store.read_stream(user_stream(user))]
    assert kinds.count(AI_REQUEST_STARTED) == 1


class HeldBuiltin:
    """The builtin provider, held after its first step until the test opens the gate: a run that is
    still going when its requester's socket drops."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.reached = asyncio.Event()  # set once its first step is recorded

    async def analyse(self, job: AiJob) -> AsyncIterator[AiStep]:
        first = True
        async for step in BuiltinProvider().analyse(job):
            yield step
            if first:
                first = False
                self.reached.set()
                await self.gate.wait()


@pytest.fixture
async def held() -> AsyncIterator[HeldBuiltin]:
    provider = HeldBuiltin()
    yield provider
    provider.gate.set()


async def start_and_drop(server: Server, user: str, room: str, sheet: str, held: HeldBuiltin) -> Message:
    """Ask for an analysis, see its ack and first progress, then lose the socket mid-run; returns the
    ack."""
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        await join(ws, room)
        await fill(ws, sheet, room, {"A1": "Sales", "A2": 10, "A3": 20, "A4": 30})
        await send(ws, ai_request("r1", sheet, client_msg_id="ask"))
        seen = await until(ws, lambda m: m.get("event_type") == "ai_progress")
        await asyncio.wait_for(held.reached.wait(), 5)
    return next(m for m in seen if m["type"] == "ack")


async def test_a_requester_back_from_a_drop_mid_run_gets_the_rest_of_the_run(
    database_url: str, held: HeldBuiltin, store: EventStore
) -> None:
    """The socket dropped while the analysis ran; the client reconnects, rejoins the room and retries
    the request with its id: acked as the original, it gets the latest progress at once and the rest
    of the run live, up to the answer."""
    room, sheet, user = uid("room"), uid("sheet"), uid("lea")
    async with serve(make_settings(database_url), ai_provider=held) as server:
        asked = await start_and_drop(server, user, room, sheet, held)
        async with server.connect(server.token(user)) as ws:
            await greet(ws)
            await join(ws, room)
            await send(ws, ai_request("r1", sheet, client_msg_id="ask"))
            answered = await until(ws, of_type("ack"))
            assert [m.get("event_type") for m in answered] == ["ai_progress", None]
            assert answered[-1]["seq"] == asked["seq"]
            latest = answered[0]
            assert (latest["request_id"], latest["data"]["progress"]) == ("r1", 10)

            held.gate.set()
            rest = await until(ws, lambda m: m.get("event_type") in ("ai_complete", "ai_error"))
            steps = [latest, *(m for m in rest if m["type"] == "ai_event")]
            assert steps[-1]["event_type"] == "ai_complete"
            assert "3 values, sum 60, mean 20, min 10, max 30" in steps[-1]["data"]["result"]
            seqs = [m["seq"] for m in steps]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap, no repeat
            assert "ai_event" not in types(await pending(ws))
    recorded = await store.read_stream(user_stream(user))
    assert [e.type for e in recorded].count(AI_REQUEST_STARTED) == 1
    assert [e.stream_version for e in recorded if e.type != AI_REQUEST_STARTED][-len(seqs) :] == seqs


async def test_a_requester_back_on_another_node_gets_the_rest_of_the_run(
    server_url: str, held: HeldBuiltin
) -> None:
    """The reconnect lands on another node than the one running the analysis: the retry there gets
    the latest progress, and the steps the first node records after it arrive through the log."""
    room, sheet, user = uid("room"), uid("sheet"), uid("ned")
    async with fresh_database(server_url) as url:
        settings = make_settings(url)
        async with serve(settings, ai_provider=held) as first, serve(settings, ai_provider=held) as second:
            asked = await start_and_drop(first, user, room, sheet, held)
            async with second.connect(second.token(user)) as ws:
                await greet(ws)
                # The second node may publish the first one's steps after this socket opened: live,
                # then, and not again.
                await send(ws, {"type": "join_room", "room_id": room})
                await send(ws, ai_request("r1", sheet, client_msg_id="ask"))
                answered = await until(ws, of_type("ack", client_msg_id="ask"))
                assert answered[-1]["seq"] == asked["seq"]
                steps = [m for m in answered if m["type"] == "ai_event"]
                assert steps and (steps[-1]["event_type"], steps[-1]["data"]["progress"]) == (
                    "ai_progress",
                    10,
                )
                held.gate.set()
                rest = await until(ws, lambda m: m.get("event_type") in ("ai_complete", "ai_error"))
                steps += [m for m in rest if m["type"] == "ai_event"]
                assert steps[-1]["event_type"] == "ai_complete"
                seqs = [m["seq"] for m in steps]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
                assert first.engine.ai.running == frozenset() == second.engine.ai.running


async def test_a_requester_back_after_the_run_ended_gets_its_answer(
    database_url: str, held: HeldBuiltin, store: EventStore
) -> None:
    """The run ended while the requester had no socket open: its retry from the new one, before it
    has rejoined the room (the answer comes from the log), gets the answer as recorded, then the
    original ack; a second retry on that connection gets the ack only."""
    room, sheet, user = uid("room"), uid("sheet"), uid("max")
    async with serve(make_settings(database_url), ai_provider=held) as server:
        asked = await start_and_drop(server, user, room, sheet, held)
        held.gate.set()
        events = await wait_for_events(store, user_stream(user), 7)
        assert events[-1].type == AI_COMPLETED
        async with server.connect(server.token(user)) as ws:
            await greet(ws)
            await send(ws, ai_request("r1", sheet, client_msg_id="ask"))
            answered = await until(ws, of_type("ack"))
            assert [m.get("event_type") for m in answered] == ["ai_complete", None]
            done = answered[0]
            assert (done["seq"], done["user_id"]) == (events[-1].stream_version, user)
            assert done["data"]["result"] == events[-1].data["result"]
            assert "3 values, sum 60" in done["data"]["result"]
            assert answered[-1]["seq"] == asked["seq"]

            again = await request(ws, ai_request("r1", sheet, client_msg_id="ask"))
            assert (again["type"], again["seq"]) == ("ack", asked["seq"])
            assert "ai_event" not in types(await pending(ws))
    assert [e.type for e in await store.read_stream(user_stream(user))].count(AI_REQUEST_STARTED) == 1


async def test_a_retry_whose_run_cannot_be_read_costs_that_message_only(
    database_url: str, held: HeldBuiltin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bringing a retrying connection up to date fails on a statement the database refuses: the retry
    is answered INTERNAL_ERROR, from a tab in the room as from one not in it ("Idempotency first"),
    and both connections go on."""
    room, sheet, user = uid("room"), uid("sheet"), uid("uma")
    async with serve(make_settings(database_url), ai_provider=held) as server:
        await start_and_drop(server, user, room, sheet, held)
        store = server.engine.node.store
        read_stream = store.read_stream

        async def refused(stream_id: str, *args: Any, **kwargs: Any) -> Any:
            if stream_id == user_stream(user):
                raise DBAPIError("SELECT", {}, Exception("the statement was refused"))
            return await read_stream(stream_id, *args, **kwargs)

        monkeypatch.setattr(store, "read_stream", refused)
        async with server.connect(server.token(user)) as member, server.connect(server.token(user)) as tab:
            await greet(member)
            await greet(tab)
            await join(member, room)
            for ws in (member, tab):
                await send(ws, ai_request("r1", sheet, client_msg_id="ask"))
                answer = await until(ws, of_type("error"))
                assert (answer[-1]["code"], answer[-1]["client_msg_id"]) == ("INTERNAL_ERROR", "ask")
                assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_a_connection_brought_up_to_date_on_many_requests_gets_none_of_the_latest_twice(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection remembers the latest `MAX_APART` events it was sent apart (here 2): a retry of a
    request among those gets the ack only, even once more requests have been brought up to date."""
    monkeypatch.setattr(send_queue, "MAX_APART", 2)
    room, sheet, user = uid("room"), uid("sheet"), uid("ona")
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        await join(ws, room)
        await fill(ws, sheet, room, {"A1": "Sales", "A2": 10, "A3": 20})
        for request_id in ("r1", "r2", "r3"):
            await send(ws, ai_request(request_id, sheet, client_msg_id=f"ask-{request_id}"))
            await until(ws, of_type("ai_event", event_type="ai_complete", request_id=request_id))
    async with server.connect(server.token(user)) as tab:
        await greet(tab)
        for request_id in ("r1", "r2", "r3"):  # each answer missed, sent apart
            await send(tab, ai_request(request_id, sheet, client_msg_id=f"ask-{request_id}"))
            answered = await until(tab, of_type("ack"))
            assert [(m.get("event_type"), m.get("request_id")) for m in answered] == [
                ("ai_complete", request_id),
                (None, None),
            ]
        for request_id in ("r3", "r2"):  # the latest two: never twice
            await send(tab, ai_request(request_id, sheet, client_msg_id=f"ask-{request_id}"))
            answered = await until(tab, of_type("ack"))
            assert [(m["type"], m.get("client_msg_id")) for m in answered] == [("ack", f"ask-{request_id}")]
        assert "ai_event" not in types(await pending(tab))


async def test_retries_of_a_request_and_its_cancel_past_a_rate_limit_get_their_acks(
    database_url: str, gated: GatedProvider, store: EventStore
) -> None:
    """A retry past the rate limit is answered with the original ack, for `ai_request` and
    `ai_cancel` as for any other message."""
    room, sheet, user = uid("room"), uid("sheet"), uid("jay")
    settings = make_settings(database_url, websocket_requests_per_minute=4, websocket_requests_per_hour=1000)
    async with serve(settings, ai_provider=gated) as server, server.connect(server.token(user)) as ws:
        await greet(ws)
        await join(ws, room)  # 1
        await fill(ws, sheet, room, {"A1": 3})  # 2
        await send(ws, ai_request("c1", sheet, client_msg_id="ask"))  # 3
        started = await until(ws, lambda m: m.get("event_type") == "ai_progress")
        asked = next(m for m in started if m["type"] == "ack")
        await asyncio.wait_for(gated.reached.wait(), 5)
        await send(ws, {"type": "ai_cancel", "request_id": "c1", "client_msg_id": "stop"})  # 4
        stopped = (await until(ws, of_type("ack", client_msg_id="stop")))[-1]

        refused = await request(ws, {"type": "status_update", "status": "away", "client_msg_id": "s"})
        assert refused["code"] == "RATE_LIMIT_EXCEEDED"
        retry = await request(ws, ai_request("c1", sheet, client_msg_id="ask"))
        assert (retry["type"], retry["seq"]) == ("ack", asked["seq"])
        cancel_retry = await request(ws, {"type": "ai_cancel", "request_id": "c1", "client_msg_id": "stop"})
        assert (cancel_retry["type"], cancel_retry["seq"]) == ("ack", stopped["seq"])
        assert "ai_event" not in types(await pending(ws))
    kinds = [e.type for e in await store.read_stream(user_stream(user))]
    assert kinds == [AI_REQUEST_STARTED, AI_PROGRESSED, AI_CANCELLED]


async def test_numbers_near_the_largest_float_are_analysed_not_a_provider_failure(
    server: Server, store: EventStore
) -> None:
    """Sums of such numbers exceed the largest float: the analysis still answers, stating the figures
    that are numbers (count, mean, min, max, trend, outliers) and the sum as out of range, instead of
    failing "unexpectedly"."""
    room, sheet, user = uid("room"), uid("sheet"), uid("kim")
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        await join(ws, room)
        cells = {"A1": 1e308, "A2": 1e308, "A3": 1.5e308, "B1": -1.7e308, "B2": 0, "B3": 1.7e308}
        await fill(ws, sheet, room, cells)
        await send(ws, ai_request("big", sheet))
        seen = await until(ws, lambda m: m.get("event_type") in ("ai_complete", "ai_error"))
    assert seen[-1]["event_type"] == "ai_complete", seen[-1]["data"]
    done = seen[-1]["data"]
    a, b = done["details"]["columns"]
    assert (a["count"], a["sum"], a["min"], a["max"]) == (3, None, 1e308, 1.5e308)
    assert a["mean"] == pytest.approx(3.5 / 3 * 1e308) and a["trend"] == "increasing"
    assert (b["sum"], b["mean"], b["trend"], b["slope"]) == (0.0, 0.0, "increasing", 1.7e308)
    assert "Column A: 3 values, sum out of range, mean " in done["result"]
    events = await store.read_stream(user_stream(user))
    assert events[-1].type == AI_COMPLETED and events[-1].data["details"] == done["details"]
