"""One example of every message in and out, built by the real parser and builders.

`docs/protocol.md` shows exactly these (`test_protocol_doc` checks it), so the document cannot drift
from the code. Values follow the seed's examples. `python -m tests.unit.protocol_examples` prints them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from engine import protocol as messages
from engine.model.actors import Actor
from engine.projections.rooms import Member, RoomView
from engine.protocol import Envelope

NOW = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
ROOM = "workspace_123"
JANE = Member(
    "user_2", "jane_doe", "jane@example.com", "online", {"x": 150, "y": 300, "cell": "B2"}, NOW, frozenset()
)
JOHN = Member(
    "user_1", "john_doe", "john@example.com", "online", {"x": 100, "y": 200, "cell": "A1"}, NOW, frozenset()
)


def room_event(seq: int, client_msg_id: str | None = None) -> Envelope:
    return Envelope(room_id=ROOM, seq=seq, ts=NOW, client_msg_id=client_msg_id)


def user_event(seq: int, client_msg_id: str | None = None) -> Envelope:
    return Envelope(seq=seq, ts=NOW, client_msg_id=client_msg_id)


# Every inbound type once, in the seed's shape plus the protocol's optional fields where they apply.
INBOUND: dict[str, dict[str, Any]] = {
    "ping": {"type": "ping", "client_msg_id": "m-1"},
    "join_room": {"type": "join_room", "room_id": ROOM, "since": 41, "client_msg_id": "m-2"},
    "leave_room": {"type": "leave_room", "room_id": ROOM},
    "cursor_move": {"type": "cursor_move", "room": ROOM, "x": 150, "y": 300, "cell": "B2"},
    "cell_update": {
        "type": "cell_update",
        "sheet_id": "sheet_123",
        "cell_id": "A1",
        "value": "Hello World",
        "formula": "=CONCATENATE('Hello', ' ', 'World')",
        "version": 1642161000000,
        "room": ROOM,
        "client_msg_id": "m-3",
    },
    "cells_update": {
        "type": "cells_update",
        "sheet_id": "sheet_123",
        "room": ROOM,
        "cells": [
            {"cell_id": "A1", "value": "Region", "version": 1642161000001},
            {"cell_id": "B1", "value": 1250, "formula": None},
            {"cell_id": "B2", "value": 2500, "formula": "=B1*2"},
        ],
        "client_msg_id": "m-4",
    },
    "load_sheet": {"type": "load_sheet", "sheet_id": "sheet_123"},
    "refresh_token": {"type": "refresh_token", "token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyXzEifQ.c2ln"},
    "status_update": {"type": "status_update", "status": "busy"},
    "typing_start": {"type": "typing_start", "cell_id": "A1", "room": ROOM},
    "typing_stop": {"type": "typing_stop", "cell_id": "A1", "room": ROOM},
    "ai_request": {
        "type": "ai_request",
        "request_id": "req_123",
        "query": "Analyze this data and provide insights",
        "sheet_id": "sheet_123",
        "context": {"table_range": "A1:Z100"},
    },
    "ai_cancel": {"type": "ai_cancel", "request_id": "req_123"},
    "subscribe_notifications": {
        "type": "subscribe_notifications",
        "categories": ["system", "workspace"],
        "modules": ["tables", "ai"],
        "priorities": ["normal", "high", "critical"],
    },
    "notification_read": {"type": "notification_read", "notification_id": "notif_123"},
    "file_upload_start": {
        "type": "file_upload_start",
        "file_id": "file_123",
        "filename": "data.csv",
        "file_size": 1024000,
        "mime_type": "text/csv",
    },
    "file_upload_progress": {
        "type": "file_upload_progress",
        "file_id": "file_123",
        "bytes_uploaded": 512000,
        "total_bytes": 1024000,
        "percentage": 50.0,
    },
}

NOTIFICATION = {
    "id": "notif_123",
    "title": "New Comment",
    "message": "John commented on your sheet",
    "category": "workspace",
    "priority": "normal",
    "module_name": "tables",
}


def outbound() -> dict[str, dict[str, Any]]:
    """Every outbound message once, keyed by `type` (and `event_type` for `ai_event`)."""
    actor = Actor("user_1", "john_doe", "john@example.com")
    view = RoomView(
        ROOM,
        members={"user_1": JOHN, "user_2": JANE},
        active_sheets=("sheet_1", "sheet_2"),
        seq=42,
        last_activity=NOW,
    )
    return {
        "connected": messages.connected("ws_5f1c", actor, heartbeat_interval=25, heartbeat_timeout=60),
        "pong": messages.pong(NOW, {"client_msg_id": "m-1"}),
        "ack": messages.ack("m-3", room_id=ROOM, seq=43),
        "error": messages.error(
            "VALIDATION_ERROR",
            "invalid 'join_room' message",
            now=NOW,
            echo={"client_msg_id": "m-2"},
            details=[{"loc": ["room_id"], "msg": "Field required", "type": "missing"}],
        ),
        "server_shutdown": messages.server_shutdown(NOW, reason="server restart", reconnect_after=5),
        "room_state": messages.room_state(view),
        "user_joined": messages.user_joined(ROOM, JANE, envelope=room_event(42, "m-2")),
        "user_left": messages.user_left(ROOM, "user_2", envelope=room_event(44)),
        "room_left": messages.room_left(ROOM, "left", envelope=room_event(44)),
        "replay_complete": messages.replay_complete(ROOM, 42),
        "cursor_moved": messages.cursor_moved(ROOM, "user_2", "jane_doe", x=150, y=300, cell="B2"),
        "user_typing_start": messages.user_typing_start(ROOM, "user_2", "jane_doe", "A1"),
        "user_typing_stop": messages.user_typing_stop(ROOM, "user_2", "jane_doe", "A1"),
        "cell_updated": messages.cell_updated(
            "sheet_123",
            "A1",
            value="Hello World",
            formula="=CONCATENATE('Hello', ' ', 'World')",
            user_id="user_2",
            username="jane_doe",
            version=1642161000001,
            envelope=room_event(43, "m-3"),
        ),
        "cells_updated": messages.cells_updated(
            "sheet_123",
            [
                {"cell_id": "A1", "value": "Region", "formula": None, "version": 1642161000002},
                {"cell_id": "B1", "value": 1250, "formula": None, "version": 1},
                {"cell_id": "B2", "value": 2500, "formula": "=B1*2", "version": 1},
            ],
            user_id="user_2",
            username="jane_doe",
            envelope=room_event(45, "m-4"),
        ),
        "sheet_state": messages.sheet_state(
            "sheet_123",
            ROOM,
            45,
            {
                "A1": {
                    "value": "Region",
                    "formula": None,
                    "version": 1642161000002,
                    "user_id": "user_2",
                    "updated_at": messages.iso(NOW),
                },
                "B2": {
                    "value": 2500,
                    "formula": "=B1*2",
                    "version": 1,
                    "user_id": "user_2",
                    "updated_at": messages.iso(NOW),
                },
            },
        ),
        "token_expiring": messages.token_expiring(NOW),
        "token_refreshed": messages.token_refreshed(NOW),
        "user_status_changed": messages.user_status_changed("user_2", "busy", envelope=user_event(7)),
        "ai_start": messages.ai_event(
            "ai_start",
            "req_123",
            "user_1",
            {"query": "Analyze this data and provide insights", "sheet_id": "sheet_123"},
            envelope=user_event(8),
        ),
        "ai_progress": messages.ai_event(
            "ai_progress",
            "req_123",
            "user_1",
            {"progress": 60, "status": "Processing step 3/5"},
            envelope=user_event(9),
        ),
        "ai_complete": messages.ai_event(
            "ai_complete",
            "req_123",
            "user_1",
            {"result": "Analysis complete: Found 3 trends...", "processing_time": 4.5},
            envelope=user_event(10),
        ),
        "ai_error": messages.ai_event(
            "ai_error",
            "req_123",
            "user_1",
            {"error": "the request was cancelled", "code": "CANCELLED", "reason": "cancelled"},
            envelope=user_event(10),
        ),
        "notifications_subscribed": messages.notifications_subscribed(
            {"categories": ["system", "workspace"], "modules": None, "priorities": ["high", "critical"]},
            [{**NOTIFICATION, "priority": "high"}],
        ),
        "notification_event": messages.notification_event(
            "notification_created", NOTIFICATION, "user_1", envelope=user_event(11)
        ),
        "file_upload_started": messages.file_upload_started(
            "file_123",
            "data.csv",
            file_size=1024000,
            mime_type="text/csv",
            user_id="user_1",
            envelope=user_event(12),
        ),
        "file_upload_progress": messages.file_upload_progress(
            "file_123", bytes_uploaded=512000, total_bytes=1024000, percentage=50.0, user_id="user_1"
        ),
        "file_upload_complete": messages.file_upload_complete(
            "file_123",
            "data.csv",
            url="/api/v1/files/file_123",
            user_id="user_1",
            size=1024000,
            sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            envelope=user_event(13),
        ),
        "file_upload_failed": messages.file_upload_failed(
            "file_124",
            "huge.csv",
            reason="too_large",
            bytes_uploaded=52494336,
            user_id="user_1",
            envelope=user_event(15),
        ),
        "system_announcement": messages.broadcast(
            {
                "type": "system_announcement",
                "title": "Maintenance Notice",
                "message": "System maintenance in 30 minutes",
            }
        ),
    }


def as_json(example: dict[str, Any]) -> str:
    """The example as docs/protocol.md shows it."""
    return orjson.dumps(example, option=orjson.OPT_INDENT_2).decode()


if __name__ == "__main__":
    for name, example in {**INBOUND, **outbound()}.items():
        print(f"{name}\n```json\n{as_json(example)}\n```\n")
