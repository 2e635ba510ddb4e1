"""Per user and per request: presence (a row per user), notifications (a row per notification with its
read state), uploads (a row per file) and AI requests (a row per requester and request id), as rows
and back."""

from __future__ import annotations

from collections.abc import Sequence

from engine.model.events import RecordedEvent
from engine.projections import ai_requests, frozen, notifications, presence, uploads
from engine.projections.ai_requests import AiRequest
from engine.projections.notifications import Inbox, Notification
from engine.projections.presence import Presence
from engine.projections.uploads import Upload
from engine.readmodels.rows.base import TS, ReadModel, Rows, TableSpec, frozen_or_none, plain, sorted_rows

# Presence: one row per user ever seen in a room.

PRESENCE = TableSpec(
    "presence",
    (
        ("user_id", "text"),
        ("username", "text"),
        ("email", "text"),
        ("status", "text"),
        ("shown_status", "text"),
        ("online", "boolean"),
        ("cursor", "jsonb"),
        ("last_seen", TS),
        ("connections", "jsonb"),
    ),
    ("user_id",),
)


def _presence_rows(view: Presence) -> Rows:
    row = {
        "user_id": view.user_id,
        "username": view.username,
        "email": view.email,
        "status": view.status,
        "shown_status": view.shown_status,
        "online": view.online,
        "cursor": plain(view.cursor),
        "last_seen": view.last_seen,
        "connections": {cid: sorted(rooms_) for cid, rooms_ in sorted(view.connections.items())},
    }
    return {PRESENCE.name: [row]}


def _presence_view(user_id: str, rows: Rows) -> Presence:
    if not rows.get(PRESENCE.name):
        return Presence(user_id)
    row = rows[PRESENCE.name][0]
    return Presence(
        user_id=user_id,
        username=row["username"],
        email=row["email"],
        status=row["status"],
        cursor=frozen_or_none(row["cursor"]),
        last_seen=row["last_seen"],
        connections=frozen(
            {cid: frozenset(room_ids) for cid, room_ids in sorted(row["connections"].items())}
        ),
    )


def _fold_presence(view: Presence | None, key: str, events: Sequence[RecordedEvent]) -> Presence:
    view = view or Presence(key)
    for event in events:
        view = presence.apply(view, event)
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


PRESENCE_MODEL = ReadModel(
    "presence", (PRESENCE,), ("user_id",), presence.key_of, _fold_presence, _presence_rows, _presence_view
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
    "NOTIFICATIONS",
    "NOTIFICATIONS_MODEL",
    "PRESENCE",
    "PRESENCE_MODEL",
    "UPLOADS",
    "UPLOADS_MODEL",
]
