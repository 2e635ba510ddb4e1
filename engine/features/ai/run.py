"""A run: what the provider analyses for one AI request, and its steps, each recorded in the
requester's stream.

`run_request` iterates `provider.analyse(job)` and records every step as it comes: `Progress` ->
`AiProgressed`, `Complete` -> `AiCompleted`, `Failure` (or an exception in the provider, or its end
without an answer) -> `AiFailed`. Who starts a run, stops it and ends it otherwise is the runner's
(engine/features/ai/runner.py); a replay or a projection rebuild folds the recorded steps and never
calls the provider.

* What is analysed (`job_for`): the sheet as projected from its room's `CellUpdated` events at
  request time (so the answer is about what the requester saw, not about what arrives while it runs),
  within `context.table_range` when given. A start found in the log (`recorded_job`) is analysed on
  the sheet as it is when found.
* At least two `ai_progress`: a provider that completes after fewer steps gets the missing ones
  recorded before its answer (the protocol promises two).
* A run is stopped by cancelling its task: the `CancelledError` lands inside the provider (see
  engine/features/ai/provider.py). Each step is committed shielded from it (`Steps.record`), so a
  step being appended when the cancel lands is still published.
* A step that cannot be recorded stops the run, and its `AiFailed` is tried in the background (a
  Duplicate if the step that failed was an ending that committed after all).
* An ending (`AiCompleted`, `AiFailed`) carries the request's end key, so whichever ending of the
  request is recorded first is its only one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engine.features.ai import AiJob, AiProvider, Complete, Failure, Progress
from engine.features.ports import Commit
from engine.model.catalogue import AiCompleted, AiFailed, AiProgressed
from engine.model.errors import StoreUnavailable
from engine.model.events import NewEvent, Origin, RecordedEvent
from engine.model.reading import ReadStream, read_through
from engine.model.streams import room_stream
from engine.projections import cells
from engine.projections.ai_requests import end_key

log = logging.getLogger(__name__)

PROVIDER_ERROR = "the AI provider failed unexpectedly"
NO_ANSWER_ERROR = "the AI provider ended without an answer"
UNRECORDED_ERROR = "the server could not record the analysis"
MIN_PROGRESS_STEPS = 2

RequestKey = tuple[str, str]  # (user_id, request_id)
Step = AiProgressed | AiCompleted | AiFailed
RecordLater = Callable[[list[NewEvent], str], None]
"""Commits endings in the background, tried until recorded (`BackgroundWork.record_later`)."""
RoomOf = Callable[[str], Awaitable[str | None]]
"""The room a sheet belongs to, if it was ever edited (`SheetRooms.room_of`)."""


def idempotency_key(request_id: str) -> str:
    """The key of a request's `AiRequestStarted`: one run per (user, request_id)."""
    return f"ai:{request_id}"


async def job_for(
    read_stream: ReadStream,
    request_id: str,
    query: str,
    sheet_id: str,
    room: str | None,
    context: Mapping[str, Any] | None,
) -> AiJob:
    """What the provider analyses: the sheet as projected from its room's edits now, within
    `context.table_range` when given."""
    events = [] if room is None else await read_through(read_stream, room_stream(room))
    table_range = context.get("table_range") if context else None
    return AiJob(
        request_id, query, cells.project(events, sheet_id), str(table_range) if table_range else None
    )


async def recorded_job(started: RecordedEvent, read_stream: ReadStream, room_of: RoomOf) -> AiJob:
    """The job of a recorded `AiRequestStarted`: its own query and context, on the sheet as it is now."""
    data = started.data
    sheet_id = str(data["sheet_id"])
    room = data.get("room_id") or await room_of(sheet_id)
    context = data.get("context")
    return await job_for(
        read_stream,
        str(data["request_id"]),
        str(data["query"]),
        sheet_id,
        None if room is None else str(room),
        context if isinstance(context, Mapping) else None,
    )


class Steps:
    """A request's steps as this node records them: in its name, an ending under the request's end
    key."""

    def __init__(self, node_id: str, commit: Commit) -> None:
        self._node_id = node_id
        self._commit = commit

    def event(self, step: Step) -> NewEvent:
        origin = Origin(self._node_id, step.user_id)
        ending = None if isinstance(step, AiProgressed) else end_key(step.request_id)
        return step.new(origin, key=ending, request_id=step.request_id)

    async def record(self, step: Step) -> None:
        """Append and publish one step; shielded, so a cancel never leaves a committed event
        unpublished."""
        await asyncio.shield(self._commit(self.event(step)))


async def run_request(
    key: RequestKey,
    job: AiJob,
    provider: AiProvider,
    steps: Steps,
    *,
    finished: Callable[[], None],
    record_later: RecordLater,
    after: asyncio.Event | None = None,
) -> None:
    """Run `provider` on `job` once `after` is set, recording its steps. `finished` is called as soon
    as the provider has given its last step (a cancel from then on finds nothing to stop), and again
    when the run ends."""
    user_id, request_id = key
    progressed = 0
    last = 0.0
    try:
        try:
            if after is not None:
                await after.wait()
            async for step in provider.analyse(job):
                if isinstance(step, Progress):
                    last = max(last, min(100.0, max(0.0, float(step.progress))))
                    await _progress(steps, key, last, step.status)
                    progressed += 1
                    continue
                finished()
                if isinstance(step, Complete):
                    for missing in range(progressed, MIN_PROGRESS_STEPS):
                        done = 100.0 if missing == MIN_PROGRESS_STEPS - 1 else max(last, 50.0)
                        await _progress(steps, key, done, "Composing the answer")
                    completed = AiCompleted(
                        user_id, request_id, step.result, step.processing_time, step.details
                    )
                    await steps.record(completed)
                elif isinstance(step, Failure):
                    await steps.record(AiFailed(user_id, request_id, step.error))
                return
            finished()
            await steps.record(AiFailed(user_id, request_id, NO_ANSWER_ERROR))
        except (asyncio.CancelledError, StoreUnavailable):
            raise
        except Exception:
            log.exception("AI provider failed on request %r of %r", request_id, user_id)
            finished()
            await steps.record(AiFailed(user_id, request_id, PROVIDER_ERROR))
    except StoreUnavailable as exc:
        # Its next step could not be recorded: it stops, and its ending is tried in the background
        # (a Duplicate if the step that failed was an ending that committed after all).
        log.error("AI request %r of %r stopped: %s", request_id, user_id, exc)
        record_later([steps.event(AiFailed(user_id, request_id, UNRECORDED_ERROR))], "ai-ending")
    finally:
        finished()


async def _progress(steps: Steps, key: RequestKey, progress: float, status: str) -> None:
    number: float | int = int(progress) if progress == int(progress) else progress
    await steps.record(AiProgressed(*key, number, status))


__all__ = [
    "MIN_PROGRESS_STEPS",
    "NO_ANSWER_ERROR",
    "PROVIDER_ERROR",
    "UNRECORDED_ERROR",
    "RequestKey",
    "Steps",
    "idempotency_key",
    "job_for",
    "recorded_job",
    "run_request",
]
