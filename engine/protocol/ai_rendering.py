"""How the AI events of a user's stream look on the wire: each becomes one seed `ai_event`.

    AiRequestStarted -> ai_start    {query, sheet_id}
    AiProgressed     -> ai_progress {progress, status}
    AiCompleted      -> ai_complete {result, processing_time, details}
    AiFailed         -> ai_error    {error}
    AiCancelled      -> ai_error    {error, code: "CANCELLED"}

Pure, and called by `engine.protocol.rendering.render`, so a live publish and any later replay of the user's
stream show the same message. `details` (the builtin provider's per-column figures) is an addition
to the seed's `ai_complete` data; clients that do not know it ignore it.
"""

from __future__ import annotations

from typing import Any

from engine.model.catalogue import AI_CANCELLED, AI_COMPLETED, AI_FAILED, AI_PROGRESSED, AI_REQUEST_STARTED
from engine.model.events import RecordedEvent
from engine.protocol import Envelope, ai_event

CANCELLED_CODE = "CANCELLED"
CANCELLED_TEXT = "the request was cancelled"


def render_ai(event: RecordedEvent) -> list[dict[str, Any]]:
    """The `ai_event` an AI event becomes ([] for any other event)."""
    data = event.data
    envelope = Envelope.of(event)
    request_id, user_id = str(data.get("request_id")), str(data.get("user_id"))
    if event.type == AI_REQUEST_STARTED:
        start = {"query": data.get("query"), "sheet_id": data.get("sheet_id")}
        return [ai_event("ai_start", request_id, user_id, start, envelope=envelope)]
    if event.type == AI_PROGRESSED:
        step = {"progress": data.get("progress"), "status": data.get("status")}
        return [ai_event("ai_progress", request_id, user_id, step, envelope=envelope)]
    if event.type == AI_COMPLETED:
        done = {"result": data.get("result"), "processing_time": data.get("processing_time")}
        if data.get("details") is not None:
            done["details"] = data["details"]
        return [ai_event("ai_complete", request_id, user_id, done, envelope=envelope)]
    if event.type == AI_FAILED:
        return [ai_event("ai_error", request_id, user_id, {"error": data.get("error")}, envelope=envelope)]
    if event.type == AI_CANCELLED:
        cancelled = {"error": CANCELLED_TEXT, "code": CANCELLED_CODE, "reason": data.get("reason")}
        return [ai_event("ai_error", request_id, user_id, cancelled, envelope=envelope)]
    return []


__all__ = ["CANCELLED_CODE", "CANCELLED_TEXT", "render_ai"]
