"""One AI request: what was asked, how far the provider has got, and how it ended.

Folded from the requester's stream (`user:{user_id}`). A request is named by its requester and the
client's `request_id` together: clients number their own requests ("req_1", "req_2", ...), so two
users may well send the same id.

The first ending wins. A cancel can race the provider's last steps (it was already composing the
answer), so a progress, completion or failure recorded after the request ended stays in the log but
does not change the view: the requester was told "cancelled", and a rebuild must say the same.
Endings recorded since `end_key` share that key, so the log holds at most one of them per request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from engine.model.catalogue import (
    AI_CANCELLED,
    AI_COMPLETED,
    AI_EVENTS,
    AI_FAILED,
    AI_PROGRESSED,
    AI_REQUEST_STARTED,
    BROADCAST_EVENTS,
    CELL_EVENTS,
    CLAIM_EVENTS,
    CURSOR_EVENTS,
    MEMBERSHIP_EVENTS,
    NOTIFICATION_EVENTS,
    STATUS_EVENTS,
    TYPING_EVENTS,
    UPLOAD_EVENTS,
)
from engine.model.events import RecordedEvent
from engine.projections import folds, frozen, optional_str

RUNNING = "running"
COMPLETE = "complete"
FAILED = "failed"
CANCELLED = "cancelled"
FINISHED = frozenset({COMPLETE, FAILED, CANCELLED})

HANDLED = AI_EVENTS
SKIPPED = (
    MEMBERSHIP_EVENTS
    | CELL_EVENTS
    | BROADCAST_EVENTS
    | CURSOR_EVENTS
    | TYPING_EVENTS
    | STATUS_EVENTS
    | NOTIFICATION_EVENTS
    | UPLOAD_EVENTS
    | CLAIM_EVENTS
)

RequestKey = tuple[str, str]  # (user_id, request_id)


@dataclass(frozen=True, slots=True)
class AiRequest:
    user_id: str
    request_id: str
    status: str
    started_at: datetime
    updated_at: datetime
    query: str | None = None
    sheet_id: str | None = None
    room_id: str | None = None
    context: Mapping[str, Any] | None = None
    progress: float = 0.0  # 0-100
    step: str | None = None  # the provider's words for what it is doing (`ai_progress` data.status)
    result: Any = None
    processing_time: float | None = None
    error: str | None = None
    finished_at: datetime | None = None

    @property
    def key(self) -> RequestKey:
        return (self.user_id, self.request_id)

    @property
    def finished(self) -> bool:
        """True once completed, failed or cancelled: a provider should stop and append nothing more."""
        return self.status in FINISHED


def key_of(event: RecordedEvent) -> RequestKey | None:
    """The request `event` changes; None for events of other concerns."""
    if not folds("ai_requests", event.type, HANDLED, SKIPPED):
        return None
    return (str(event.data["user_id"]), str(event.data["request_id"]))


def apply(request: AiRequest | None, event: RecordedEvent) -> AiRequest | None:
    """The request after `event` (None: no event of it yet); other concerns change nothing."""
    key = key_of(event)
    if key is None:
        return request
    if request is not None and request.key != key:
        raise ValueError(f"event of AI request {key!r} applied to {request.key!r}")
    data, at = event.data, event.recorded_at
    if request is None:
        request = AiRequest(key[0], key[1], RUNNING, started_at=at, updated_at=at)
    if request.finished:
        return request
    if event.type == AI_REQUEST_STARTED:
        context = data.get("context")
        return replace(
            request,
            query=optional_str(data.get("query")),
            sheet_id=optional_str(data.get("sheet_id")),
            room_id=optional_str(data.get("room_id")),
            context=None if context is None else frozen(dict(context)),
            updated_at=at,
        )
    if event.type == AI_PROGRESSED:
        return replace(
            request, progress=float(data["progress"]), step=optional_str(data.get("status")), updated_at=at
        )
    return _finish(request, event)


def _finish(request: AiRequest, event: RecordedEvent) -> AiRequest:
    data, at = event.data, event.recorded_at
    if event.type == AI_COMPLETED:
        time = data.get("processing_time")
        return replace(
            request,
            status=COMPLETE,
            progress=100.0,
            result=data.get("result"),
            processing_time=None if time is None else float(time),
            updated_at=at,
            finished_at=at,
        )
    if event.type == AI_FAILED:
        return replace(
            request, status=FAILED, error=optional_str(data.get("error")), updated_at=at, finished_at=at
        )
    if event.type == AI_CANCELLED:
        return replace(request, status=CANCELLED, updated_at=at, finished_at=at)
    raise AssertionError(f"unhandled AI event {event.type!r}")  # HANDLED and this function disagree


def project(events: Iterable[RecordedEvent], key: RequestKey) -> AiRequest | None:
    """The request `key` folded from its events among `events`; None if there are none."""
    request: AiRequest | None = None
    for event in events:
        if key_of(event) == key:
            request = apply(request, event)
    return request


def end_key(request_id: str) -> str:
    """The idempotency key of the event that ends a request, whoever records it (its run, a cancel
    on any node, a survivor of its node): one ending per request. Longer than any `client_msg_id`
    (64 characters at most), so no client can take it first."""
    return "ai-end:" + hashlib.sha256(request_id.encode()).hexdigest()


__all__ = [
    "CANCELLED",
    "COMPLETE",
    "FAILED",
    "FINISHED",
    "HANDLED",
    "RUNNING",
    "SKIPPED",
    "AiRequest",
    "RequestKey",
    "apply",
    "end_key",
    "key_of",
    "project",
]
