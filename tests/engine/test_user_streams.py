"""Notifications, uploads, admin actions and AI runs through the engine on the memory log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.features import files as files_feature
from engine.features import uploads as uploads_feature
from engine.features.ai import runner
from engine.features.files import SharedFile, file_url
from engine.features.storage import LocalFileStorage
from engine.features.upload_sweeper import SWEEP_PAGE, UploadSweeper
from engine.log.memory import MemoryEventStore
from engine.model.actors import Actor
from engine.model.catalogue import (
    AI_CANCELLED,
    AI_COMPLETED,
    AI_FAILED,
    AI_PROGRESSED,
    AI_REQUEST_STARTED,
    FILE_UPLOAD_COMPLETED,
    FILE_UPLOAD_FAILED,
    FILE_UPLOAD_STARTED,
    IDLE_TIMEOUT,
    USER_LEFT_ROOM,
    FileUploadCompleted,
    FileUploadFailed,
    FileUploadStarted,
)
from engine.model.errors import ValidationFailed
from engine.model.events import AppendOutcome, NewEvent, Origin, RecordedEvent
from engine.model.streams import room_stream, user_stream
from engine.projections.uploads import IdleOrder, Upload
from engine.protocol.close_codes import CloseCode
from engine.service import Engine
from tests.api.test_websocket_ai import GatedProvider
from tests.engine.memory_engine import Client, connect, memory_engine, settle
from tests.unit.event_log import T0

ADMIN = Actor("root", "root", roles=("admin",))
ASK = {"type": "ai_request", "request_id": "q1", "query": "sum", "sheet_id": "s"}


async def test_engine_notifications_reach_only_matching_subscriptions_and_wait_unread() -> None:
    async with memory_engine() as engine:
        await engine.create_notification(
            "ann", {"id": "n0", "title": "before", "category": "tasks"}, created_by="root"
        )
        ann = await connect(engine, "ann")
        other_tab = await connect(engine, "ann")
        await ann.send({"type": "subscribe_notifications", "categories": ["tasks"]})
        [subscribed] = ann.take()
        assert subscribed["type"] == "notifications_subscribed"
        assert [n["id"] for n in subscribed["unread"]] == ["n0"]
        await engine.create_notification(
            "ann", {"id": "n1", "title": "t", "category": "tasks"}, created_by="root"
        )
        await engine.create_notification(
            "ann", {"id": "n2", "title": "t", "category": "chat"}, created_by="root"
        )
        await settle(engine)
        assert [m["notification"]["id"] for m in ann.take()] == ["n1"]
        assert other_tab.take() == []  # never subscribed
        await ann.send({"type": "notification_read", "notification_id": "n1"})
        assert [m["event_type"] for m in other_tab.take()] == ["notification_read"]
        await ann.send({"type": "notification_read", "notification_id": "nope"})
        assert [m["code"] for m in ann.take() if m["type"] == "error"] == ["NOT_FOUND"]


async def test_engine_upload_progress_goes_to_the_users_other_tabs_only_for_their_own_files() -> None:
    async with memory_engine() as engine:
        ann, tab = await connect(engine, "ann"), await connect(engine, "ann")
        start = {"type": "file_upload_start", "file_id": "f1", "filename": "a.csv", "file_size": 10}
        await ann.send(start)
        await ann.send({**start, "client_msg_id": "again"})
        await ann.send(
            {
                "type": "file_upload_progress",
                "file_id": "f1",
                "bytes_uploaded": 5,
                "total_bytes": 10,
                "percentage": 50.0,
            }
        )
        assert [m["type"] for m in tab.take()] == ["file_upload_started", "file_upload_progress"]
        assert [m.get("code") for m in ann.take()] == ["VALIDATION_ERROR"]  # the id is in use
        bob = await connect(engine, "bob")
        await bob.send(
            {
                "type": "file_upload_progress",
                "file_id": "f1",
                "bytes_uploaded": 5,
                "total_bytes": 10,
                "percentage": 50.0,
            }
        )
        assert [m["code"] for m in bob.take()] == ["NOT_FOUND"]


async def test_engine_admin_broadcast_reaches_members_and_a_removed_connection_is_closed_4410() -> None:
    async with memory_engine() as engine:
        ann = await connect(engine, "ann")
        await ann.send({"type": "join_room", "room_id": "r"})
        ann.take()
        delivery = await engine.broadcast_to_room(ADMIN, "r", {"type": "system_announcement", "title": "t"})
        await settle(engine)
        assert delivery.delivered_to == 1 and delivery.seq == 2
        assert [(m["type"], m["seq"]) for m in ann.take()] == [("system_announcement", 2)]
        removal = await engine.remove_connection(ann.connection_id, grace=1)
        await asyncio.sleep(0)  # the close runs in a task of its own
        await asyncio.sleep(0.01)
        assert removal.rooms_left == ("r",) and ann.closed is not None and ann.closed[0] == CloseCode.REMOVED
        assert [m["code"] for m in ann.take()] == ["CONNECTION_REMOVED"]
        notified = await engine.notify_user(ADMIN, "offline-user", {"type": "direct_message", "text": "hi"})
        assert notified.delivered_to == 0
        assert len(await engine.store.read_stream(user_stream("offline-user"))) == 1


async def test_engine_ai_request_streams_its_events_to_the_requester() -> None:
    async with memory_engine() as engine:
        ann = await connect(engine, "ann")
        await ann.send({"type": "join_room", "room_id": "r"})
        for row, value in enumerate((3, 5, 8), start=1):
            await ann.send({"type": "cell_update", "sheet_id": "s", "cell_id": f"A{row}", "value": value})
        ann.take()
        await ann.send(ASK)
        await ann.until(lambda m: m.get("event_type") in ("ai_complete", "ai_error"))
        kinds = [m["event_type"] for m in ann.take() if m["type"] == "ai_event"]
        assert kinds[0] == "ai_start" and kinds[-1] == "ai_complete" and kinds.count("ai_progress") >= 2
        await ann.send({"type": "ai_request", "request_id": "q2", "query": "sum", "sheet_id": "nowhere"})
        assert [m["code"] for m in ann.take()] == ["NOT_FOUND"]


async def test_engine_a_connection_removed_from_several_rooms_leaves_each_once_in_its_order() -> None:
    async with memory_engine() as engine:
        ann, bob = await connect(engine, "ann"), await connect(engine, "bob")
        rooms = ["r1", "r2", "r3"]
        for room in rooms:
            await ann.send({"type": "join_room", "room_id": room})
            await bob.send({"type": "join_room", "room_id": room})
        bob.take()
        removal = await engine.remove_connection(ann.connection_id, grace=1)
        await settle(engine)
        assert sorted(removal.rooms_left) == rooms
        seen = [(m["room_id"], m["seq"]) for m in bob.take() if m["type"] == "user_left"]
        assert sorted(seen) == [(room, 3) for room in rooms]
        for room in rooms:
            [leave] = [
                e for e in await engine.store.read_stream(room_stream(room)) if e.type == USER_LEFT_ROOM
            ]
            assert leave.data["reason"] == "removed" and leave.stream_version == 3


class LosesTheAnswerToAnAiStart(MemoryEventStore):
    """The first `lost` batches that hold an AI start fail on their way back, as when the connection
    breaks during COMMIT: written when `committed`, their callers hear of an outage either way. The
    first `unread` reads by key fail too (the database unreachable for them)."""

    def __init__(self, *, committed: bool = True, lost: int = 1, unread: int = 0) -> None:
        super().__init__()
        self.committed = committed
        self.lost = lost
        self.unread = unread

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        failing = self.lost > 0 and any(item.type == AI_REQUEST_STARTED for item in items)
        outcomes = await super().append(items) if self.committed or not failing else []
        if failing:
            self.lost -= 1
            raise ConnectionResetError("the connection broke during COMMIT")
        return outcomes

    async def event_by_key(
        self, user_id: str, key: str, stream_id: str | None = None
    ) -> RecordedEvent | None:
        if self.unread > 0:
            self.unread -= 1
            raise ConnectionRefusedError("the database is unreachable")
        return await super().event_by_key(user_id, key, stream_id)


async def sheet_with_a_cell(engine: Engine) -> Client:
    ann = await connect(engine, "ann")
    await ann.send({"type": "join_room", "room_id": "r"})
    await ann.send({"type": "cell_update", "sheet_id": "s", "cell_id": "A1", "value": 3})
    ann.take()
    return ann


async def asked_in_an_outage(engine: Engine) -> tuple[Client, dict[str, Any]]:
    """ann asks for an analysis (with a client_msg_id, to retry it) and hears of an outage."""
    ann = await sheet_with_a_cell(engine)
    ask = {**ASK, "client_msg_id": "c1"}
    await ann.send(ask)
    assert [m.get("code") for m in ann.take()] == ["INTERNAL_ERROR"]
    return ann, ask


async def test_engine_ai_request_whose_commit_answer_was_lost_still_runs_once() -> None:
    """The start committed but its caller got STORE_UNAVAILABLE: the retry is a Duplicate (acked), and
    the run starts all the same, once, ending in ai_complete."""
    log = LosesTheAnswerToAnAiStart()
    async with memory_engine(log) as engine:
        ann, ask = await asked_in_an_outage(engine)
        await ann.send(ask)
        await ann.until(lambda m: m.get("event_type") == "ai_complete")
        await asyncio.sleep(0.2)  # a second run would have recorded more by now
        await settle(engine)
        frames = ann.take()
        assert [m["client_msg_id"] for m in frames if m["type"] == "ack"] == ["c1"]
        kinds = [m["event_type"] for m in frames if m["type"] == "ai_event"]
        assert kinds[0] == "ai_start" and kinds.count("ai_start") == 1 and kinds.count("ai_complete") == 1
        recorded = [e.type for e in await engine.store.read_stream(user_stream("ann"))]
        assert recorded.count(AI_COMPLETED) == 1 and AI_FAILED not in recorded


async def test_engine_ai_request_whose_retry_from_another_tab_also_failed_runs_once() -> None:
    """The start committed, its answer lost; a retry from the user's other connection fails too (the
    database flapping, reads of the log failing meanwhile); the next retry is a Duplicate: it runs,
    once, on the node that committed it."""
    log = LosesTheAnswerToAnAiStart(lost=2, unread=3)
    async with memory_engine(log) as engine:
        ann = await sheet_with_a_cell(engine)
        tab = await connect(engine, "ann")
        await tab.send({"type": "join_room", "room_id": "r"})
        tab.take()
        ask = {**ASK, "client_msg_id": "c1"}
        await ann.send(ask)
        await tab.send(ask)
        assert [m.get("code") for m in ann.take() + tab.take() if m["type"] == "error"] == [
            "INTERNAL_ERROR"
        ] * 2
        await tab.send(ask)
        await tab.until(lambda m: m.get("event_type") == "ai_complete")
        await asyncio.sleep(1.0)  # a second run would have recorded more by now
        await settle(engine)
        recorded = [e.type for e in await engine.store.read_stream(user_stream("ann"))]
        assert recorded.count(AI_REQUEST_STARTED) == 1 and recorded.count(AI_COMPLETED) == 1
        assert AI_FAILED not in recorded


async def test_engine_ai_start_still_looked_for_at_shutdown_is_ended_if_it_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node stopping while it still looks for a start whose answer was lost: one last look, and the
    start it finds ends (the server is shutting down) instead of staying running in the log."""
    monkeypatch.setattr(runner, "STOP_WAIT_SECONDS", 0.1)
    log = LosesTheAnswerToAnAiStart(unread=1_000)
    async with memory_engine(log) as engine:
        await asked_in_an_outage(engine)
        await asyncio.sleep(0.1)
        log.unread = 0  # the log answers again as the node stops
    ended = [e for e in await log.read_stream(user_stream("ann")) if e.type != AI_REQUEST_STARTED]
    assert [(e.type, e.data["error"]) for e in ended] == [(AI_FAILED, runner.SHUTDOWN_ERROR)]


async def test_engine_ai_start_looked_for_through_a_long_outage_runs_once_the_log_is_back() -> None:
    """The log unreadable for a while after the answer to a start was lost: the node keeps looking,
    and runs the recorded request (its own query) once it can read; the retry is acked as a repeat."""
    log = LosesTheAnswerToAnAiStart(unread=1_000)
    async with memory_engine(log) as engine:
        ann, ask = await asked_in_an_outage(engine)
        await asyncio.sleep(1.0)
        log.unread = 0
        await ann.send({**ask, "query": "something else"})
        await ann.until(lambda m: m.get("event_type") == "ai_complete")
        await asyncio.sleep(0.5)  # a second run would have recorded more by now
        await settle(engine)
        frames = ann.take()
        assert [m["client_msg_id"] for m in frames if m["type"] == "ack"] == ["c1"]
        [start] = [m for m in frames if m.get("event_type") == "ai_start"]
        assert start["data"]["query"] == "sum"
        recorded = [e.type for e in await engine.store.read_stream(user_stream("ann"))]
        assert recorded.count(AI_COMPLETED) == 1 and AI_FAILED not in recorded


async def test_engine_ai_cancel_while_the_start_is_looked_for_ends_it_and_nothing_runs() -> None:
    log = LosesTheAnswerToAnAiStart(unread=1)  # the look's first read fails: it looks again later
    async with memory_engine(log) as engine:
        ann, _ = await asked_in_an_outage(engine)
        await ann.send({"type": "ai_cancel", "request_id": "q1", "client_msg_id": "k1"})
        await asyncio.sleep(1.0)  # the look's next read, and a run if it started one
        await settle(engine)
        frames = ann.take()
        assert [m["client_msg_id"] for m in frames if m["type"] == "ack"] == ["k1"]
        recorded = [e.type for e in await engine.store.read_stream(user_stream("ann"))]
        assert recorded == [AI_REQUEST_STARTED, AI_CANCELLED]


class AnswersAnAiStartLate(MemoryEventStore):
    """The first batch holding an AI start is not written (its caller hears of an outage); the next
    is written at once, and its answer comes back a second later (a slow link, a routed append)."""

    def __init__(self) -> None:
        super().__init__()
        self.starts = 0

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        if not any(item.type == AI_REQUEST_STARTED for item in items):
            return await super().append(items)
        self.starts += 1
        if self.starts == 1:
            raise ConnectionResetError("the connection broke")
        outcomes = await super().append(items)
        await asyncio.sleep(1.2)
        return outcomes


async def test_engine_ai_start_seen_by_a_look_before_its_own_answer_runs_once() -> None:
    async with memory_engine(AnswersAnAiStartLate()) as engine:
        ann = await sheet_with_a_cell(engine)
        ask = {**ASK, "client_msg_id": "c1"}
        await ann.send(ask)
        await ann.send(ask)  # committed at once, answered late: the look of the first sees it first
        await ann.until(lambda m: m.get("event_type") == "ai_complete")
        await asyncio.sleep(1.0)
        recorded = [e.type for e in await engine.store.read_stream(user_stream("ann"))]
        assert recorded.count(AI_COMPLETED) == 1 and recorded.count(AI_PROGRESSED) <= 5


async def test_engine_ai_cancel_acked_while_a_start_is_answered_late_is_never_followed_by_a_run() -> None:
    async with memory_engine(AnswersAnAiStartLate()) as engine:
        ann = await sheet_with_a_cell(engine)
        ask = {**ASK, "client_msg_id": "c1"}
        await ann.send(ask)
        retry = asyncio.create_task(ann.send(ask))
        await asyncio.sleep(0.1)
        await ann.send({"type": "ai_cancel", "request_id": "q1", "client_msg_id": "k1"})
        await retry
        await asyncio.sleep(1.0)
        await settle(engine)
        assert "k1" in [m["client_msg_id"] for m in ann.take() if m["type"] == "ack"]
        recorded = [e.type for e in await engine.store.read_stream(user_stream("ann"))]
        assert recorded == [AI_REQUEST_STARTED, AI_CANCELLED]


async def test_engine_ai_cancel_while_the_requests_ack_waits_stops_it() -> None:
    """The request is recorded and its ack waits (the requester reads slowly): a cancel from another
    tab then finds it and stops it, and it never runs."""
    async with memory_engine() as engine:
        gated = GatedProvider()
        engine.ai.provider = gated
        ann = await sheet_with_a_cell(engine)
        tab = await connect(engine, "ann")
        unblocked = asyncio.Event()
        reply = engine.ai._reply

        async def slow_ack(connection_id: str, *messages: dict[str, Any]) -> None:
            if connection_id == ann.connection_id and any(m.get("type") == "ack" for m in messages):
                await unblocked.wait()
            await reply(connection_id, *messages)

        engine.ai._reply = slow_ack
        asking = asyncio.create_task(ann.send({**ASK, "client_msg_id": "c1"}))
        await tab.until(lambda m: m.get("event_type") == "ai_start")
        await tab.send({"type": "ai_cancel", "request_id": "q1", "client_msg_id": "k1"})
        unblocked.set()
        await asking
        await settle(engine)
        assert [m["client_msg_id"] for m in tab.take() if m["type"] == "ack"] == ["k1"]
        recorded = [e.type for e in await engine.store.read_stream(user_stream("ann"))]
        assert recorded == [AI_REQUEST_STARTED, AI_CANCELLED] and not gated.reached.is_set()


async def test_engine_ai_request_whose_commit_failed_runs_on_its_retry_only() -> None:
    """Nothing committed: the look for the start finds the retry's, which runs it; one run."""
    log = LosesTheAnswerToAnAiStart(committed=False)
    async with memory_engine(log) as engine:
        ann, ask = await asked_in_an_outage(engine)
        await ann.send(ask)
        await ann.until(lambda m: m.get("event_type") == "ai_complete")
        await asyncio.sleep(1.0)  # the look for the first attempt's start polls every half second
        await settle(engine)
        recorded = [e.type for e in await engine.store.read_stream(user_stream("ann"))]
        assert recorded.count(AI_REQUEST_STARTED) == 1 and recorded.count(AI_COMPLETED) == 1
        assert AI_FAILED not in recorded and recorded.count(AI_PROGRESSED) == len(
            [m for m in ann.take() if m.get("event_type") == "ai_progress"]
        )


class RefusesOneAiProgress(MemoryEventStore):
    """The first batch holding an AI step is not written: the database was unreachable for it."""

    refused = False

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        if not self.refused and any(item.type == AI_PROGRESSED for item in items):
            self.refused = True
            raise ConnectionRefusedError("the database is unreachable")
        return await super().append(items)


async def test_engine_ai_run_whose_step_cannot_be_recorded_ends_in_ai_error() -> None:
    """A run stops when a step of it cannot be recorded, and its ending is recorded once the log takes
    writes again: the request does not stay running."""
    async with memory_engine(RefusesOneAiProgress()) as engine:
        ann = await sheet_with_a_cell(engine)
        await ann.send(ASK)
        await ann.until(lambda m: m.get("event_type") in ("ai_complete", "ai_error"))
        [ended] = [m for m in ann.take() if m.get("event_type") in ("ai_complete", "ai_error")]
        assert ended["event_type"] == "ai_error"
        assert ended["data"]["error"] == "the server could not record the analysis"
        recorded = [e.type for e in await engine.store.read_stream(user_stream("ann"))]
        assert recorded == [AI_REQUEST_STARTED, AI_FAILED]


class RefusesAiCancellations(MemoryEventStore):
    """Refuses the first `times` batches that hold an AI cancellation: the database was unreachable."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        if self.times and any(item.type == AI_CANCELLED for item in items):
            self.times -= 1
            raise ConnectionRefusedError("the database is unreachable")
        return await super().append(items)


async def test_engine_a_cancel_retried_while_its_recording_is_retried_is_acked_not_not_found() -> None:
    """The cancel stopped the run but could not record it (retried in the background): its retry with
    the same client_msg_id is the same cancel, acked, with one ai_error; another cancel is NOT_FOUND."""
    async with memory_engine(RefusesAiCancellations(times=2)) as engine:
        gated = GatedProvider()
        engine.ai.provider = gated
        ann = await sheet_with_a_cell(engine)
        await ann.send(ASK)
        await gated.reached.wait()
        cancel = {"type": "ai_cancel", "request_id": "q1", "client_msg_id": "k1"}
        await ann.send(cancel)
        assert [m.get("code") for m in ann.take() if m["type"] == "error"] == ["INTERNAL_ERROR"]
        await asyncio.sleep(0.1)  # the background's first try fails too; its next is a second later
        await ann.send(cancel)
        frames = ann.take()
        assert [m["client_msg_id"] for m in frames if m["type"] == "ack"] == ["k1"]
        assert [m["data"].get("code") for m in frames if m.get("event_type") == "ai_error"] == ["CANCELLED"]
        await ann.send({**cancel, "client_msg_id": "k2"})
        assert [m.get("code") for m in ann.take() if m["type"] == "error"] == ["NOT_FOUND"]
        recorded = [e.type for e in await engine.store.read_stream(user_stream("ann"))]
        assert recorded.count(AI_CANCELLED) == 1 and gated.cancelled


async def test_engine_upload_sweeper_ends_each_abandoned_upload_once_by_the_log_clock() -> None:
    """The sweeper on the memory log with a clock of its own: an upload with no event for the timeout
    ends in `file_upload_failed` (idle_timeout) for every tab; one with recent progress does not; a
    second sweeper acting on what it read before the first one swept records nothing more (the end
    key); the owner then starts the id again."""
    clock = [T0]
    log = MemoryEventStore(clock=lambda: clock[0])
    # The engine's own sweeper never fires here: the test drives two of its own, on its own clock.
    async with memory_engine(log, upload_idle_timeout=10**9) as engine:
        ann, tab = await connect(engine, "ann"), await connect(engine, "ann")
        for file_id in ("abandoned", "alive"):
            await ann.send(
                {"type": "file_upload_start", "file_id": file_id, "filename": "a.csv", "file_size": 9}
            )
        clock[0] = T0 + timedelta(seconds=20)
        await ann.send(
            {
                "type": "file_upload_progress",
                "file_id": "alive",
                "bytes_uploaded": 3,
                "total_bytes": 9,
                "percentage": 33,
            }
        )
        tab.take()

        def sweeper(now: datetime, **ports: Any) -> UploadSweeper:
            return UploadSweeper(
                node_id="sweeper",
                commit=engine.commit,
                find_idle=ports.get("find_idle", engine.node.idle_uploads),
                read_upload=ports.get("read_upload", engine.node.upload_events),
                timeout_seconds=30,
                now=lambda: now,
            )

        assert await sweeper(T0 + timedelta(seconds=29.9)).sweep() == []
        at_30 = T0 + timedelta(seconds=30)
        stale = await engine.node.idle_uploads(at_30 - timedelta(seconds=30))
        stale_events = {u.file_id: await engine.node.upload_events("ann", u.file_id) for u in stale}
        clock[0] = at_30
        assert [u.file_id for u in await sweeper(at_30).sweep()] == ["abandoned"]
        await settle(engine)
        [failed] = tab.take()
        assert (failed["type"], failed["file_id"], failed["reason"]) == (
            "file_upload_failed",
            "abandoned",
            "idle_timeout",
        )
        assert [m["type"] for m in ann.take()] == ["file_upload_failed"]  # the starting tab too

        async def find_stale(
            _: datetime, *, after: IdleOrder | None = None, limit: int = 100
        ) -> list[Upload]:
            return stale if after is None else []

        async def read_stale(_: str, file_id: str) -> list[RecordedEvent]:
            return list(stale_events[file_id])

        late = sweeper(at_30, find_idle=find_stale, read_upload=read_stale)
        assert await late.sweep() == []  # its append was a duplicate of the first end
        failures = [e for e in log.events if e.type == FILE_UPLOAD_FAILED]
        assert [e.data["file_id"] for e in failures] == ["abandoned"]

        at_50 = T0 + timedelta(seconds=50)
        assert [u.file_id for u in await sweeper(at_50).sweep()] == ["alive"]
        await ann.send(
            {"type": "file_upload_start", "file_id": "abandoned", "filename": "b.csv", "file_size": 1}
        )
        assert [m["type"] for m in tab.take()] == ["file_upload_failed", "file_upload_started"]


async def test_engine_one_upload_sweep_ends_every_upload_idle_as_of_its_start() -> None:
    """More abandoned uploads than one page of the sweeper's reads, several with the same last
    event's time: one sweep ends them all, each once, and the one still alive is left alone."""
    clock = [T0]
    log = MemoryEventStore(clock=lambda: clock[0])
    async with memory_engine(log, upload_idle_timeout=10**9) as engine:
        abandoned = 2 * SWEEP_PAGE + 7
        for i in range(abandoned):
            clock[0] = T0 + timedelta(seconds=i // 10)  # ten at a time share an `updated_at`
            user = f"u{i % 13}"
            await engine.commit(FileUploadStarted(user, f"f{i:03}", "a.csv", 9).new(elsewhere(user)))
        clock[0] = T0 + timedelta(seconds=60)
        await engine.commit(FileUploadStarted("ann", "alive", "a.csv", 9).new(elsewhere("ann")))
        at = T0 + timedelta(seconds=90)
        sweeper = UploadSweeper(
            node_id="sweeper",
            commit=engine.commit,
            find_idle=engine.node.idle_uploads,
            read_upload=engine.node.upload_events,
            timeout_seconds=60,
            now=lambda: at,
        )
        ended = await sweeper.sweep()
        assert sorted(u.file_id for u in ended) == [f"f{i:03}" for i in range(abandoned)]
        failed = [e.data["file_id"] for e in log.events if e.type == FILE_UPLOAD_FAILED]
        assert sorted(failed) == [f"f{i:03}" for i in range(abandoned)]
        assert await engine.node.idle_uploads(at - timedelta(seconds=60)) == []  # as of the sweep


async def test_engine_a_file_id_started_on_one_node_is_taken_on_a_node_that_never_saw_it() -> None:
    """Two engines on one log, the second never told of the first's commits (as a node whose follower
    has not read them yet): ann's start claims the id in its own stream, so bob's start of it on the
    other engine is refused there too, and writes nothing."""
    log = MemoryEventStore()
    async with memory_engine(log) as one, memory_engine(log) as two:
        ann, bob = await connect(one, "ann"), await connect(two, "bob")
        start = {"type": "file_upload_start", "file_id": "f1", "filename": "a.csv", "file_size": 10}
        await ann.send({**start, "client_msg_id": "a1"})
        assert [m["type"] for m in ann.take()] == ["ack"]
        before = len(log.events)
        await bob.send({**start, "client_msg_id": "b1"})
        (refused,) = bob.take()
        assert refused["code"] == "VALIDATION_ERROR" and "already in use" in refused["error"]
        assert len(log.events) == before
        assert [(e.type, e.data["user_id"]) for e in await log.file_claims("f1")] == [
            (FILE_UPLOAD_STARTED, "ann")
        ]


def elsewhere(user_id: str) -> Origin:
    """An event of `user_id` committed through another node (every node publishes it)."""
    return Origin("elsewhere", user_id, via="rest")


def upload_start(file_id: str, client_msg_id: str) -> dict[str, Any]:
    return {
        "type": "file_upload_start",
        "file_id": file_id,
        "filename": "a.csv",
        "file_size": 9,
        "client_msg_id": client_msg_id,
    }


def upload_progress(file_id: str, client_msg_id: str) -> dict[str, Any]:
    return {
        "type": "file_upload_progress",
        "file_id": file_id,
        "bytes_uploaded": 3,
        "total_bytes": 9,
        "percentage": 33.3,
        "client_msg_id": client_msg_id,
    }


def completion(user_id: str, file_id: str) -> NewEvent:
    completed = FileUploadCompleted(user_id, file_id, "a.csv", url=file_url(file_id), size=9, sha256="0" * 64)
    return completed.new(elsewhere(user_id))


def answers(client: Client) -> list[tuple[str, str | None]]:
    """The acks and errors that arrived since the last take: (client_msg_id, error code or None)."""
    return [(m["client_msg_id"], m.get("code")) for m in client.take() if m["type"] in ("ack", "error")]


async def test_engine_keeps_only_the_unfinished_uploads_of_its_own_users_and_reads_the_rest() -> None:
    """Every node publishes every user's uploads. It keeps the unfinished ones of users connected to it
    until they end, and reads the others from the log when a check needs them: the checks answer as
    if it kept them all (a complete id is taken, a failed one restarts, an upload begun before the
    user connected takes progress)."""
    async with memory_engine() as engine:
        for i in range(20):
            user, file_id = f"u{i}", f"elsewhere-{i}"
            await engine.commit(FileUploadStarted(user, file_id, "a.csv", 9).new(elsewhere(user)))
            if i % 2:
                await engine.commit(completion(user, file_id))
        await engine.commit(FileUploadStarted("ann", "before", "a.csv", 9).new(elsewhere("ann")))
        assert engine.uploads.uploads == {}  # nobody is connected here

        ann, tab = await connect(engine, "ann"), await connect(engine, "ann")
        await ann.send(upload_start("done", "s1"))
        await ann.send(upload_start("broken", "s2"))
        assert sorted(engine.uploads.uploads) == ["broken", "done"]
        await engine.commit(completion("ann", "done"))
        await engine.commit(FileUploadFailed("ann", "broken", IDLE_TIMEOUT, "a.csv").new(elsewhere("ann")))
        await settle(engine)
        assert engine.uploads.uploads == {}  # ended: the log has them
        assert answers(ann) == [("s1", None), ("s2", None)]
        tab.take()

        await ann.send(upload_progress("before", "p1"))
        await ann.send(upload_progress("done", "p2"))
        await ann.send(upload_start("done", "s3"))
        await ann.send(upload_progress("broken", "p3"))
        await ann.send(upload_start("broken", "s4"))
        assert answers(ann) == [
            ("p1", None),
            ("p2", "VALIDATION_ERROR"),
            ("s3", "VALIDATION_ERROR"),
            ("p3", "VALIDATION_ERROR"),
            ("s4", None),
        ]
        assert [m["type"] for m in tab.take()] == ["file_upload_progress", "file_upload_started"]
        assert sorted(engine.uploads.uploads) == ["before", "broken"]
        before = await engine.upload("ann", "before")
        assert before is not None and (before.status, before.bytes_uploaded) == ("uploading", 3)


class HoldsAUserStreamRead(MemoryEventStore):
    """Once `armed`, the next read of a user's stream takes what the log holds, then answers only on
    `release`: a read that events committed after it overtake."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        page = await super().read_stream(stream_id, after_version, limit)
        if self.armed and stream_id.startswith("user:"):
            self.armed = False
            self.reached.set()
            await self.release.wait()
        return page


async def test_engine_keeps_no_upload_read_from_the_log_while_one_of_its_events_was_published() -> None:
    """A progress check reads ann's upload from the log, and the upload's failure is published before
    the read answers: the read's view (started) serves that check but is not kept, so her new start
    of the id is accepted."""
    log = HoldsAUserStreamRead()
    async with memory_engine(log) as engine:
        await engine.commit(FileUploadStarted("ann", "f1", "a.csv", 9).new(elsewhere("ann")))
        ann = await connect(engine, "ann")
        log.armed = True
        checking = asyncio.create_task(ann.send(upload_progress("f1", "p1")))
        async with asyncio.timeout(5):  # the check reads the log: nothing of a user gone is kept
            await log.reached.wait()
        await engine.commit(FileUploadFailed("ann", "f1", IDLE_TIMEOUT, "a.csv").new(elsewhere("ann")))
        log.release.set()
        await checking
        assert engine.uploads.uploads == {}
        await ann.send(upload_start("f1", "s1"))
        assert answers(ann) == [("p1", None), ("s1", None)]
        assert list(engine.uploads.uploads) == ["f1"]


async def test_engine_two_tabs_starting_one_file_id_at_once_get_one_ack_and_one_refusal() -> None:
    """Both starts arrive before either is answered: the node runs them one at a time, so the second
    finds the first's upload, and the first's filename stands."""
    async with memory_engine() as engine:
        one, two = await connect(engine, "ann"), await connect(engine, "ann")
        first, second = upload_start("f1", "t1"), {**upload_start("f1", "t2"), "filename": "b.csv"}
        await asyncio.gather(
            one.session.receive(orjson.dumps(first)), two.session.receive(orjson.dumps(second))
        )
        await one.session.answered()
        await two.session.answered()
        await settle(engine)
        assert sorted(answers(one) + answers(two)) == [("t1", None), ("t2", "VALIDATION_ERROR")]
        started = [
            e for e in await engine.store.read_stream(user_stream("ann")) if e.type == FILE_UPLOAD_STARTED
        ]
        assert [e.data["filename"] for e in started] == ["a.csv"]
        upload = await engine.upload("ann", "f1")
        assert upload is not None and upload.filename == "a.csv"


async def test_engine_a_late_second_start_of_a_completed_file_through_another_node_is_not_taken_as_new() -> (
    None
):
    """Two nodes' starts of one id both passed their checks; the second committed after the upload
    completed. The stream says complete, and so must this node."""
    async with memory_engine() as engine:
        await engine.commit(FileUploadStarted("ann", "f1", "a.csv", 9).new(elsewhere("ann")))
        await engine.commit(completion("ann", "f1"))
        ann = await connect(engine, "ann")
        await engine.commit(FileUploadStarted("ann", "f1", "b.csv", 9).new(elsewhere("ann")))
        await settle(engine)
        ann.take()
        await ann.send(upload_progress("f1", "p1"))
        assert answers(ann) == [("p1", "VALIDATION_ERROR")]


async def test_engine_a_start_committing_after_another_start_s_upload_completed_is_not_taken_as_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """This node's start passed its check (no upload yet); before it committed, a start of the same id
    through another node committed and its upload completed. The stream says complete."""
    real = uploads_feature.claim_file
    async with memory_engine() as engine:

        async def overtaken(*args: Any) -> Any:
            await engine.commit(FileUploadStarted("ann", "f1", "a.csv", 9).new(elsewhere("ann")))
            await engine.commit(completion("ann", "f1"))
            return await real(*args)

        monkeypatch.setattr(uploads_feature, "claim_file", overtaken)
        ann = await connect(engine, "ann")
        await ann.send(upload_start("f1", "s1"))
        monkeypatch.setattr(uploads_feature, "claim_file", real)
        await settle(engine)
        ann.take()
        await ann.send(upload_progress("f1", "p1"))
        assert answers(ann) == [("p1", "VALIDATION_ERROR")]


# A PUT (REST body) and a `file_upload_start` (socket) of one id by one user on one node: whichever
# appends its start first, the other sees it, so the stream holds one start before the completion.

CSV = b"name,amount\n" + b"ann,1\n" * 200


async def put_csv(
    engine: Engine,
    client: Client,
    file_id: str,
    *,
    filename: str | None = "a.csv",
    wanted: asyncio.Event | None = None,
    gate: asyncio.Event | None = None,
) -> SharedFile:
    """A PUT of `CSV` as `client`'s user; `wanted` is set when it first asks for its body (it has
    checked the id by then), which comes once `gate` is set."""

    async def body() -> AsyncIterator[bytes]:
        if wanted is not None:
            wanted.set()
        if gate is not None:
            await gate.wait()
        yield CSV[:600]
        yield CSV[600:]

    return await engine.store_file(
        client.actor,
        file_id,
        body(),
        max_bytes=1 << 20,
        filename=filename,
        content_type="text/csv",
        content_length=len(CSV),
    )


def held_after(
    real: Callable[..., Awaitable[bool]], reached: asyncio.Event, release: asyncio.Event
) -> Callable[..., Awaitable[bool]]:
    """`claim_file` that, once the id is claimed, holds its caller until `release`: a start that passed
    its check and is about to append `FileUploadStarted`."""

    async def held(*args: Any) -> bool:
        claimed = await real(*args)
        reached.set()
        await release.wait()
        return claimed

    return held


async def until_done_or_waiting(task: asyncio.Task[Any]) -> None:
    """Let `task` run to its end, or until it waits for something this test holds."""
    await asyncio.wait({task}, timeout=0.5)


async def durable_upload_events(engine: Engine, user_id: str, file_id: str) -> list[tuple[str, str]]:
    stream = await engine.store.read_stream(user_stream(user_id))
    return [(e.type, str(e.data.get("filename"))) for e in stream if e.data.get("file_id") == file_id]


def told(client: Client) -> list[str]:
    """The upload messages (but progress) that reached `client` since the last take."""
    kinds = [m["type"] for m in client.take()]
    return [kind for kind in kinds if kind.startswith("file_upload") and kind != "file_upload_progress"]


async def test_engine_a_socket_start_while_a_put_of_its_id_awaits_its_body_is_that_put_s_upload(
    tmp_path: Path,
) -> None:
    """A PUT found f1 free and waits for its first bytes; meanwhile ann's tab starts f1 over the socket
    and is acked. The PUT is the body of that upload: one start in her stream, not a second one
    appended by the PUT, and one `file_upload_started` for her other tab."""
    async with memory_engine(file_storage=LocalFileStorage(tmp_path)) as engine:
        ann, tab = await connect(engine, "ann"), await connect(engine, "ann")
        wanted, gate = asyncio.Event(), asyncio.Event()
        putting = asyncio.create_task(put_csv(engine, ann, "f1", wanted=wanted, gate=gate))
        async with asyncio.timeout(5):
            await wanted.wait()
        await ann.send(upload_start("f1", "s1"))
        gate.set()
        stored = await putting
        await settle(engine)
        assert answers(ann) == [("s1", None)]
        assert stored.upload.complete and stored.upload.filename == "a.csv"
        assert await durable_upload_events(engine, "ann", "f1") == [
            (FILE_UPLOAD_STARTED, "a.csv"),
            (FILE_UPLOAD_COMPLETED, "a.csv"),
        ]
        assert told(tab) == ["file_upload_started", "file_upload_complete"]
        assert engine.uploads.uploads == {}


async def test_engine_a_put_naming_another_file_than_a_socket_start_that_overtook_it_is_refused(
    tmp_path: Path,
) -> None:
    """As above, but the PUT names another file than the start: it is refused as if the start had
    come first (a PUT's filename may not contradict the start's), and the start stands."""
    async with memory_engine(file_storage=LocalFileStorage(tmp_path)) as engine:
        ann = await connect(engine, "ann")
        wanted, gate = asyncio.Event(), asyncio.Event()
        putting = asyncio.create_task(put_csv(engine, ann, "f1", filename="b.csv", wanted=wanted, gate=gate))
        async with asyncio.timeout(5):
            await wanted.wait()
        await ann.send(upload_start("f1", "s1"))
        gate.set()
        with pytest.raises(ValidationFailed, match="filename differs"):
            await putting
        assert answers(ann) == [("s1", None)]
        assert await durable_upload_events(engine, "ann", "f1") == [(FILE_UPLOAD_STARTED, "a.csv")]
        upload = await engine.upload("ann", "f1")
        assert upload is not None and (upload.status, upload.filename) == ("started", "a.csv")
        assert not (tmp_path / "f1").exists()


async def test_engine_a_put_while_a_socket_start_of_its_id_commits_waits_and_is_that_start_s_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ann's tab found f1 free and is about to append its start when a PUT of f1 comes. The PUT waits
    for that start and is its body; it neither appends a start of its own nor completes the file
    before the start, which would then be acked for a complete file and tell her other tab that f1
    started again."""
    reached, release = asyncio.Event(), asyncio.Event()
    held = held_after(uploads_feature.claim_file, reached, release)
    monkeypatch.setattr(uploads_feature, "claim_file", held)
    async with memory_engine(file_storage=LocalFileStorage(tmp_path)) as engine:
        ann, tab = await connect(engine, "ann"), await connect(engine, "ann")
        starting = asyncio.create_task(ann.send({**upload_start("f1", "s1"), "file_size": len(CSV)}))
        async with asyncio.timeout(5):
            await reached.wait()
        putting = asyncio.create_task(put_csv(engine, ann, "f1"))
        await until_done_or_waiting(putting)
        release.set()
        await starting
        stored = await putting
        await settle(engine)
        assert answers(ann) == [("s1", None)]
        assert stored.upload.complete
        assert await durable_upload_events(engine, "ann", "f1") == [
            (FILE_UPLOAD_STARTED, "a.csv"),
            (FILE_UPLOAD_COMPLETED, "a.csv"),
        ]
        assert told(tab) == ["file_upload_started", "file_upload_complete"]
        assert engine.uploads.uploads == {}


async def test_engine_a_put_naming_no_file_while_a_socket_start_of_its_id_commits_is_that_start_s_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, with a PUT that names no file, as a PUT after a start may: it takes the start's. Its
    check of the id waits for the start committing, rather than finding no upload and refusing the
    PUT for want of a filename."""
    reached, release = asyncio.Event(), asyncio.Event()
    held = held_after(uploads_feature.claim_file, reached, release)
    monkeypatch.setattr(uploads_feature, "claim_file", held)
    async with memory_engine(file_storage=LocalFileStorage(tmp_path)) as engine:
        ann = await connect(engine, "ann")
        starting = asyncio.create_task(ann.send({**upload_start("f1", "s1"), "file_size": len(CSV)}))
        async with asyncio.timeout(5):
            await reached.wait()
        putting = asyncio.create_task(put_csv(engine, ann, "f1", filename=None))
        await until_done_or_waiting(putting)
        release.set()
        await starting
        stored = await putting
        await settle(engine)
        assert answers(ann) == [("s1", None)]
        assert stored.upload.complete and stored.upload.filename == "a.csv"
        assert await durable_upload_events(engine, "ann", "f1") == [
            (FILE_UPLOAD_STARTED, "a.csv"),
            (FILE_UPLOAD_COMPLETED, "a.csv"),
        ]


async def test_engine_a_socket_start_while_a_put_of_its_id_appends_its_start_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PUT of f1 has claimed it and is about to append its start when ann's tab starts f1 over the
    socket: the socket's start waits for the PUT's, finds it, and is refused (the id is in use), as
    a start after the PUT's would be; the stream holds the PUT's start alone."""
    reached, release = asyncio.Event(), asyncio.Event()
    held = held_after(files_feature.claim_file, reached, release)
    monkeypatch.setattr(files_feature, "claim_file", held)
    async with memory_engine(file_storage=LocalFileStorage(tmp_path)) as engine:
        ann, tab = await connect(engine, "ann"), await connect(engine, "ann")
        putting = asyncio.create_task(put_csv(engine, ann, "f1"))
        async with asyncio.timeout(5):
            await reached.wait()
        starting = asyncio.create_task(ann.send({**upload_start("f1", "s1"), "filename": "b.csv"}))
        await until_done_or_waiting(starting)
        release.set()
        stored = await putting
        await starting
        await settle(engine)
        assert answers(ann) == [("s1", "VALIDATION_ERROR")]
        assert stored.upload.complete and stored.upload.filename == "a.csv"
        assert await durable_upload_events(engine, "ann", "f1") == [
            (FILE_UPLOAD_STARTED, "a.csv"),
            (FILE_UPLOAD_COMPLETED, "a.csv"),
        ]
        assert told(tab) == ["file_upload_started", "file_upload_complete"]
        assert engine.uploads.uploads == {}


class HidesAnAiStartAtFirst(MemoryEventStore):
    """The first batch holding an AI start is written but its answer lost, and reads by key do not see
    the start until `shown` (a replica behind, say): the node's look for it ends without it."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = True
        self.shown = False

    async def append(self, items: Sequence[NewEvent]) -> list[AppendOutcome]:
        outcomes = await super().append(items)
        if self.lost and any(item.type == AI_REQUEST_STARTED for item in items):
            self.lost = False
            raise ConnectionResetError("the connection broke during COMMIT")
        return outcomes

    async def event_by_key(
        self, user_id: str, key: str, stream_id: str | None = None
    ) -> RecordedEvent | None:
        found = await super().event_by_key(user_id, key, stream_id)
        return None if found is not None and found.type == AI_REQUEST_STARTED and not self.shown else found


async def test_engine_ai_start_acked_to_a_refused_retry_is_looked_for_and_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A retry from a tab not in the room is refused there, and acked from the log ("Idempotency
    first"): the node then looks for the start again, as for a retry acked as a repeat, and runs it;
    the tab is brought up to date on it."""
    monkeypatch.setattr(runner, "SETTLE_SECONDS", 0.2)
    log = HidesAnAiStartAtFirst()
    async with memory_engine(log) as engine:
        ann, ask = await asked_in_an_outage(engine)
        await asyncio.sleep(0.5)  # the look for the start has ended: it was not seen
        log.shown = True
        tab = await connect(engine, "ann")  # in no room: the request itself would be refused
        await tab.send(ask)
        seen = tab.take()
        assert [m.get("client_msg_id") for m in seen if m["type"] == "ack"] == ["c1"]
        # The tab missed the start: it gets it first, and the run's steps after it, in order.
        steps = [m for m in seen if m["type"] == "ai_event"]
        assert steps[0]["event_type"] == "ai_start"
        assert [m["seq"] for m in steps] == list(range(steps[0]["seq"], steps[0]["seq"] + len(steps)))
        await ann.until(lambda m: m.get("event_type") == "ai_complete")
        await settle(engine)
        recorded = [e.type for e in await engine.store.read_stream(user_stream("ann"))]
        assert recorded.count(AI_COMPLETED) == 1 and AI_FAILED not in recorded
