"""The AI requests projection as given events -> expected request."""

from __future__ import annotations

import pytest

from engine.model.catalogue import AI_CANCELLED, AI_COMPLETED, AI_FAILED, AI_PROGRESSED, AI_REQUEST_STARTED
from engine.projections.ai_requests import (
    CANCELLED,
    COMPLETE,
    FAILED,
    RUNNING,
    AiRequest,
    apply,
    key_of,
    project,
)
from tests.unit.event_log import Log, at

KEY = ("user_1", "req_123")


def started(log: Log, user: str = "user_1", request: str = "req_123", seconds: float = 0) -> None:
    log.user(
        user,
        AI_REQUEST_STARTED,
        seconds,
        request_id=request,
        query="Analyze this data and provide insights",
        sheet_id="sheet_123",
        context={"table_range": "A1:Z100"},
        room_id="workspace_123",
    )


def step(log: Log, progress: float, status: str, seconds: float) -> None:
    log.user("user_1", AI_PROGRESSED, seconds, request_id="req_123", progress=progress, status=status)


def test_ai_requests_projection_of_no_events_is_none() -> None:
    assert project([], KEY) is None


def test_ai_requests_projection_start_progress_complete() -> None:
    log = Log()
    started(log, seconds=1)
    assert project(log.events, KEY) == AiRequest(
        "user_1",
        "req_123",
        RUNNING,
        started_at=at(1),
        updated_at=at(1),
        query="Analyze this data and provide insights",
        sheet_id="sheet_123",
        room_id="workspace_123",
        context={"table_range": "A1:Z100"},
    )
    step(log, 20, "Reading A1:Z100", 2)
    step(log, 60, "Processing step 3/5", 3)
    running = project(log.events, KEY)
    assert running is not None and not running.finished
    assert (running.progress, running.step) == (60.0, "Processing step 3/5")

    result = "Analysis complete: Found 3 trends..."
    log.user("user_1", AI_COMPLETED, 5.5, request_id="req_123", result=result, processing_time=4.5)
    done = project(log.events, KEY)
    assert done is not None and done.finished
    assert (done.status, done.progress, done.result, done.processing_time) == (COMPLETE, 100.0, result, 4.5)
    assert (done.finished_at, done.started_at) == (at(5.5), at(1))


def test_ai_requests_projection_failure_keeps_the_error() -> None:
    log = Log()
    started(log)
    log.user("user_1", AI_FAILED, 2, request_id="req_123", error="provider timed out")
    failed = project(log.events, KEY)
    assert failed is not None
    assert (failed.status, failed.error, failed.finished_at) == (FAILED, "provider timed out", at(2))


def test_ai_requests_projection_first_ending_wins_over_a_late_provider() -> None:
    log = Log()
    started(log)
    step(log, 40, "Computing statistics", 1)
    log.user("user_1", AI_CANCELLED, 2, request_id="req_123", reason="cancelled by user")
    step(log, 80, "Composing the answer", 3)
    log.user("user_1", AI_COMPLETED, 4, request_id="req_123", result="late", processing_time=4.0)
    cancelled = project(log.events, KEY)
    assert cancelled == project(log.events[:3], KEY)
    assert cancelled is not None
    assert (cancelled.status, cancelled.progress, cancelled.result) == (CANCELLED, 40.0, None)


def test_ai_requests_projection_same_request_id_of_two_users_are_two_requests() -> None:
    log = Log()
    started(log, "user_1")
    started(log, "user_2")
    log.user("user_2", AI_FAILED, 1, request_id="req_123", error="x")
    mine, theirs = project(log.events, KEY), project(log.events, ("user_2", "req_123"))
    assert mine is not None and theirs is not None
    assert (mine.status, theirs.status) == (RUNNING, FAILED)
    with pytest.raises(ValueError, match="user_2"):
        apply(mine, log.events[2])


def test_ai_requests_projection_skips_other_concerns() -> None:
    log = Log()
    started(log)
    log.joined("r1", "user_1", "c1", 1)
    request = project(log.events, KEY)
    assert key_of(log.events[1]) is None and apply(request, log.events[1]) is request
    assert key_of(log.events[0]) == KEY
