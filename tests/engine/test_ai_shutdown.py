"""AI requests whose start commits while the node stops or is taken for dead: each ends once."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import pytest

from engine.cluster.reaper import NODE_LOST_ERROR
from engine.features.ai import runner
from engine.log.memory import MemoryEventStore
from engine.model.catalogue import AI_FAILED, AI_REQUEST_STARTED
from engine.model.events import AppendOutcome, NewEvent
from engine.model.streams import user_stream
from engine.service import Engine
from tests.engine.memory_engine import Client, memory_engine, settle
from tests.engine.test_user_streams import ASK, sheet_with_a_cell


@dataclass
class HeldStart:
    """The runner's commit of an AI start returns only once `release` is set (committed and published
    at once): an answer slow to come back (a slow link, a routed append)."""

    written: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def hold_ai_starts(engine: Engine) -> HeldStart:
    held = HeldStart()
    commit = engine.ai._commit

    async def held_commit(event: NewEvent) -> AppendOutcome:
        outcome = await commit(event)
        if event.type == AI_REQUEST_STARTED:
            held.written.set()
            await held.release.wait()
        return outcome

    engine.ai._commit = held_commit
    return held


async def ask_held(engine: Engine) -> tuple[Client, HeldStart, asyncio.Task[object]]:
    """ann asks for an analysis; its start is committed, its commit's answer held."""
    ann = await sheet_with_a_cell(engine)
    held = hold_ai_starts(engine)
    asking = asyncio.create_task(ann.send({**ASK, "client_msg_id": "c1"}))
    await held.written.wait()
    return ann, held, asking


async def recorded(log: MemoryEventStore) -> list[tuple[str, object]]:
    return [(e.type, e.data.get("error")) for e in await log.read_stream(user_stream("ann"))]


SHUT_DOWN = [(AI_REQUEST_STARTED, None), (AI_FAILED, runner.SHUTDOWN_ERROR)]


async def test_ai_start_answered_while_the_runner_stops_is_acked_then_ends_in_ai_error() -> None:
    """The start's answer comes back while `stop` runs: the request is acked, then ends with
    `ai_error` "the server is shutting down", before `stop` returns; nothing runs."""
    log = MemoryEventStore()
    async with memory_engine(log) as engine:
        ann, held, asking = await ask_held(engine)
        stopping = asyncio.create_task(engine.ai.stop())
        await asyncio.sleep(0.2)  # stop is under way (it has nothing running to cancel)
        held.release.set()
        await stopping
        assert await recorded(log) == SHUT_DOWN
        await asking
        await settle(engine)
        frames = [(m["type"], m.get("event_type")) for m in ann.take()]
        assert frames == [("ai_event", "ai_start"), ("ack", None), ("ai_event", "ai_error")]


async def test_ai_start_answered_once_the_node_closes_its_log_is_ended_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`Engine.stop`, a node shutdown: the runner's stop waits for the start in flight and ends it
    while the log still takes writes, not once the node has closed it."""
    log = MemoryEventStore()
    async with memory_engine(log) as engine:
        _, held, asking = await ask_held(engine)
        appender = engine.node._appender
        assert appender is not None
        closing, stop_appender = asyncio.Event(), appender.stop

        async def close_appender() -> None:
            closing.set()
            await stop_appender()

        monkeypatch.setattr(appender, "stop", close_appender)
        stopping = asyncio.create_task(engine.stop())
        with contextlib.suppress(TimeoutError):  # until the node closes its log, if the runner lets it
            async with asyncio.timeout(1.0):
                await closing.wait()
        held.release.set()
        await stopping
        await asking
    assert await recorded(log) == SHUT_DOWN


async def test_ai_start_answered_past_the_stop_bound_is_ended_by_stop_and_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The answer takes longer than stop waits: stop returns within its bound, its last look ends the
    start it finds in the log, and the answer that comes later adds no second ending."""
    monkeypatch.setattr(runner, "STOP_WAIT_SECONDS", 0.1)
    log = MemoryEventStore()
    async with memory_engine(log) as engine:
        ann, held, asking = await ask_held(engine)
        async with asyncio.timeout(1.0):
            await engine.ai.stop()
        assert await recorded(log) == SHUT_DOWN
        held.release.set()
        await asking
        await settle(engine)
        frames = [(m["type"], m.get("event_type")) for m in ann.take()]
        assert frames == [("ai_event", "ai_start"), ("ai_event", "ai_error"), ("ack", None)]
    assert await recorded(log) == SHUT_DOWN


async def test_ai_request_that_arrives_once_the_runner_stopped_is_refused_and_records_nothing() -> None:
    log = MemoryEventStore()
    async with memory_engine(log) as engine:
        ann = await sheet_with_a_cell(engine)
        await engine.ai.stop()
        await ann.send({**ASK, "client_msg_id": "c1"})
        [refused] = ann.take()
        assert (refused["type"], refused["code"], refused["retryable"]) == ("error", "INTERNAL_ERROR", True)
    assert await recorded(log) == []


async def test_ai_start_answered_after_the_node_was_taken_for_dead_ends_and_never_runs() -> None:
    """Taken for dead while the start's answer is on its way: it ends as the node's runs did ("the
    server running it stopped"), and no step of a run follows."""
    log = MemoryEventStore()
    async with memory_engine(log) as engine:
        ann, held, asking = await ask_held(engine)
        engine.ai.abandon_runs()
        held.release.set()
        await asking
        await ann.until(lambda m: m.get("event_type") == "ai_error")
        await asyncio.sleep(0.2)  # a run would have recorded a step by now
        assert await recorded(log) == [(AI_REQUEST_STARTED, None), (AI_FAILED, NODE_LOST_ERROR)]
