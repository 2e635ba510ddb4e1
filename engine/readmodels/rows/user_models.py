"""Per user and per request: declared statuses (a row per user), notifications (a row per
notification with its read state), uploads (a row per file) and AI requests (a row per requester and
request id), as rows and back."""

from __future__ import annotations

from collections.abc import Sequence

from engine.model.events import RecordedEvent
from engine.projections import ai_requests, declared_statuses, frozen, notifications, uploads
from engine.projections.ai_requests import AiRequest
from engine.projections.declared_statuses import DeclaredStatus
from engine.projections.notifications import Inbox, Notification
from engine.projections.uploads import Upload
from engine.readmodels.rows.base import TS, ReadModel, Rows, TableSpec, frozen_or_none, plain, sorted_rows

# Declared statuses: one row per user who ever sent `status_update`, folded from their own stream.
# The `presence` view of the database (migration 0012) lays it over `room_members`.

DECLARED_STATUSES = TableSpec(
    "declared_statuses",
    (("user_id", "text"), ("status", "text"), ("declared_at", TS)),
    ("user_id",),
)


def _status_rows(view: DeclaredStatus | None) -> Rows:
    if view is None:
        return {DECLARED_STATUSES.name: []}
    row = {"user_id": view.user_id, "status": view.status, "declared_at": view.declared_at}
    return {DECLARED_STATUSES.name: [row]}


def _status_view(user_id: str, rows: Rows) -> DeclaredStatus | None:
    found = rows.get(DECLARED_STATUSES.name)
    if not found:
        return None
    return DeclaredStatus(user_id, found[0]["status"], found[0]["declared_at"])


def _fold_status(
    view: DeclaredStatus | None, key: str, events: Sequence[RecordedEvent]
) -> DeclaredStatus | None:
    for event in events:
        view = declared_statuses.apply(view, event)
    return view


# Notifications: a row per notification with its read state.

NOTIFICATIONS = TableSpec(
    "notifications",
    (
        ("user_id", "text"),
        ("notification_id", "text"),
        ("ordinal", "integer"),
        ("title", "text"),
        ("message", "text"),
        ("category", "text"),
        ("priority", "text"),
        ("module_name", "text"),
        ("created_at", TS),
        ("read_at", TS),
    ),
    ("user_id", "notification_id"),
)


def _inbox_rows(view: Inbox) -> Rows:
    return {
        NOTIFICATIONS.name: [
            {
                "user_id": view.user_id,
                "notification_id": item.id,
                "ordinal": ordinal,
                "title": item.title,
                "message": item.message,
                "category": item.category,
                "priority": item.priority,
                "module_name": item.module_name,
                "created_at": item.created_at,
                "read_at": item.read_at,
            }
            for ordinal, item in enumerate(view.notifications.values())
        ]
    }


def _inbox_view(user_id: str, rows: Rows) -> Inbox:
    items = {
        row["notification_id"]: Notification(
            id=row["notification_id"],
            title=row["title"],
            message=row["message"],
            category=row["category"],
            priority=row["priority"],
            module_name=row["module_name"],
            created_at=row["created_at"],
            read_at=row["read_at"],
        )
        for row in sorted_rows(rows.get(NOTIFICATIONS.name, []))
    }
    return Inbox(user_id, frozen(items))


def _fold_inbox(view: Inbox | None, key: str, events: Sequence[RecordedEvent]) -> Inbox:
    return notifications.apply_many(view or Inbox(key), events)


# Uploads: a row per file.

UPLOADS = TableSpec(
    "uploads",
    (
        ("file_id", "text"),
        ("user_id", "text"),
        ("status", "text"),
        ("started_at", TS),
        ("updated_at", TS),
        ("filename", "text"),
        ("file_size", "bigint"),
        ("mime_type", "text"),
        ("bytes_uploaded", "bigint"),
        ("total_bytes", "bigint"),
        ("percentage", "double precision"),
        ("url", "text"),
        ("size", "bigint"),
        ("sha256", "text"),
        ("completed_at", TS),
    ),
    ("file_id",),
)


def _upload_rows(view: Upload | None) -> Rows:
    if view is None:
        return {UPLOADS.name: []}
    return {UPLOADS.name: [{name: getattr(view, name) for name in UPLOADS.column_names}]}


def _upload_view(file_id: str, rows: Rows) -> Upload | None:
    found = rows.get(UPLOADS.name)
    return Upload(**found[0]) if found else None


def _fold_upload(view: Upload | None, key: str, events: Sequence[RecordedEvent]) -> Upload | None:
    for event in events:
        view = uploads.apply(view, event)
    return view


# AI requests: a row per (requester, request id).

AI_REQUESTS = TableSpec(
    "ai_requests",
    (
        ("user_id", "text"),
        ("request_id", "text"),
        ("status", "text"),
        ("started_at", TS),
        ("updated_at", TS),
        ("query", "text"),
        ("sheet_id", "text"),
        ("room_id", "text"),
        ("context", "jsonb"),
        ("progress", "double precision"),
        ("step", "text"),
        ("result", "jsonb"),
        ("processing_time", "double precision"),
        ("error", "text"),
        ("finished_at", TS),
    ),
    ("user_id", "request_id"),
)


def _ai_rows(view: AiRequest | None) -> Rows:
    if view is None:
        return {AI_REQUESTS.name: []}
    row = {name: getattr(view, name) for name in AI_REQUESTS.column_names}
    row["context"] = plain(view.context)
    return {AI_REQUESTS.name: [row]}


def _ai_view(key: tuple[str, str], rows: Rows) -> AiRequest | None:
    found = rows.get(AI_REQUESTS.name)
    if not found:
        return None
    row = dict(found[0])
    row["context"] = frozen_or_none(row["context"])
    return AiRequest(**row)


def _fold_ai(
    view: AiRequest | None, key: tuple[str, str], events: Sequence[RecordedEvent]
) -> AiRequest | None:
    for event in events:
        view = ai_requests.apply(view, event)
    return view


DECLARED_STATUSES_MODEL = ReadModel(
    "declared_statuses",
    (DECLARED_STATUSES,),
    ("user_id",),
    declared_statuses.key_of,
    _fold_status,
    _status_rows,
    _status_view,
)
NOTIFICATIONS_MODEL = ReadModel(
    "notifications",
    (NOTIFICATIONS,),
    ("user_id",),
    notifications.key_of,
    _fold_inbox,
    _inbox_rows,
    _inbox_view,
)
UPLOADS_MODEL = ReadModel(
    "uploads", (UPLOADS,), ("file_id",), uploads.key_of, _fold_upload, _upload_rows, _upload_view
)
AI_REQUESTS_MODEL = ReadModel(
    "ai_requests", (AI_REQUESTS,), ("user_id", "request_id"), ai_requests.key_of, _fold_ai, _ai_rows, _ai_view
)

__all__ = [
    "AI_REQUESTS",
    "AI_REQUESTS_MODEL",
    "DECLARED_STATUSES",
    "DECLARED_STATUSES_MODEL",
    "NOTIFICATIONS",
    "NOTIFICATIONS_MODEL",
    "UPLOADS",
    "UPLOADS_MODEL",
]
