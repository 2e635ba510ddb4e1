"""The original protocol's message examples, verbatim, and a reader for their JavaScript object literals.

Copied character for character from the guide the Socket.IO-era clients were written against
(sections "Message Types and Usage" and "Error Handling"): the shapes those clients send and expect,
which the protocol keeps unchanged (tests/unit/test_messages.py).
"""

# ruff: noqa: W291  -- one seed line ends in a space, and the copy is verbatim

from __future__ import annotations

import json
import re
from typing import Any

# Section 1-8 blocks the client sends (`ws.send(JSON.stringify({...}))`), in the seed's order.
SEED_INBOUND_BLOCKS = (
    """\
ws.send(JSON.stringify({
    type: "join_room",
    room_id: "workspace_123"
}));
""",
    """\
ws.send(JSON.stringify({
    type: "leave_room",
    room_id: "workspace_123"
}));
""",
    """\
ws.send(JSON.stringify({
    type: "cursor_move",
    room: "workspace_123",
    x: 150,
    y: 300,
    cell: "B2"
}));
""",
    """\
ws.send(JSON.stringify({
    type: "cell_update",
    sheet_id: "sheet_123",
    cell_id: "A1",
    value: "Hello World",
    formula: "=CONCATENATE('Hello', ' ', 'World')",
    version: 1642161000000
}));
""",
    """\
ws.send(JSON.stringify({
    type: "status_update",
    status: "busy"  // "online", "away", "busy"
}));
""",
    """\
ws.send(JSON.stringify({
    type: "typing_start",
    cell_id: "A1",
    room: "workspace_123"
}));
""",
    """\
ws.send(JSON.stringify({
    type: "typing_stop",
    cell_id: "A1",
    room: "workspace_123"
}));
""",
    """\
ws.send(JSON.stringify({
    type: "ai_request",
    request_id: "req_123",
    query: "Analyze this data and provide insights",
    sheet_id: "sheet_123",
    context: { table_range: "A1:Z100" }
}));
""",
    """\
ws.send(JSON.stringify({
    type: "subscribe_notifications",
    categories: ["system", "workspace"],
    modules: ["tables", "ai"],
    priorities: ["normal", "high", "critical"]
}));
""",
    """\
ws.send(JSON.stringify({
    type: "notification_read",
    notification_id: "notif_123"
}));
""",
    """\
ws.send(JSON.stringify({
    type: "file_upload_start",
    file_id: "file_123",
    filename: "data.csv",
    file_size: 1024000,
    mime_type: "text/csv"
}));
""",
    """\
ws.send(JSON.stringify({
    type: "file_upload_progress",
    file_id: "file_123",
    bytes_uploaded: 512000,
    total_bytes: 1024000,
    percentage: 50.0
}));
""",
)

# Blocks the client receives, in the seed's order (the AI block holds three messages).
SEED_OUTBOUND_BLOCKS = (
    """\
{
    type: "room_state",
    room_id: "workspace_123",
    users: [
        {
            user_id: "user_1",
            username: "john_doe",
            email: "john@example.com",
            room: "workspace_123",
            status: "online",
            cursor: { x: 100, y: 200, cell: "A1" },
            last_seen: "2024-01-15T10:30:00Z"
        }
    ],
    active_sheets: ["sheet_1", "sheet_2"],
    total_users: 1
}
""",
    """\
{
    type: "cursor_moved",
    user_id: "user_2",
    username: "jane_doe",
    cursor: { x: 150, y: 300, cell: "B2" }
}
""",
    """\
{
    type: "cell_updated",
    sheet_id: "sheet_123",
    cell_id: "A1",
    value: "Hello World",
    formula: "=CONCATENATE('Hello', ' ', 'World')",
    user_id: "user_2",
    username: "jane_doe",
    version: 1642161000001
}
""",
    """\
{
    type: "user_status_changed",
    user_id: "user_2",
    status: "busy"
}
""",
    """\
{
    type: "user_typing_start",
    user_id: "user_2",
    username: "jane_doe",
    cell_id: "A1"
}
""",
    """\
// AI Started
{
    type: "ai_event",
    event_type: "ai_start",
    request_id: "req_123",
    user_id: "user_1",
    data: { query: "...", sheet_id: "sheet_123" }
}

// AI Progress
{
    type: "ai_event",
    event_type: "ai_progress",
    request_id: "req_123",
    user_id: "user_1",
    data: { progress: 60, status: "Processing step 3/5" }
}

// AI Complete
{
    type: "ai_event",
    event_type: "ai_complete",
    request_id: "req_123",
    user_id: "user_1",
    data: { 
        result: "Analysis complete: Found 3 trends...",
        processing_time: 4.5
    }
}
""",
    """\
{
    type: "notification_event",
    event_type: "notification_created",
    notification: {
        id: "notif_123",
        title: "New Comment",
        message: "John commented on your sheet",
        category: "workspace",
        priority: "normal",
        module_name: "tables"
    },
    user_id: "user_1"
}
""",
    """\
{
    type: "file_upload_complete",
    file_id: "file_123",
    filename: "data.csv",
    url: "https://storage.example.com/file_123.csv",
    user_id: "user_1"
}
""",
    """\
{
    type: "error",
    error: "Permission denied",
    code: "PERMISSION_DENIED",
    timestamp: "2024-01-15T10:30:00Z"
}
""",
    """\
{
    type: "error",
    error: "Rate limit exceeded: too many requests per minute",
    code: "RATE_LIMIT_EXCEEDED"
}
""",
)

# The seed's REST bodies that the server passes through to sockets (broadcast, notify), verbatim.
SEED_BROADCAST_BODIES = (
    """\
{
    "type": "system_announcement",
    "title": "Maintenance Notice",
    "message": "System maintenance in 30 minutes"
}""",
    """\
{
    "type": "direct_message",
    "from": "admin",
    "message": "Please review the updated document"
}""",
)

_WORD = re.compile(r"[A-Za-z_]\w*")
_TRAILING_COMMA = re.compile(r",\s*[}\]]")


def js_to_json(text: str) -> str:
    """JSON for the seed's JavaScript: bare keys quoted, `//` comments and trailing commas dropped.
    Enough for the seed's literals (double-quoted strings only), not a JavaScript parser."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == '"':
            end = i + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            out.append(text[i : end + 1])
            i = end + 1
        elif text.startswith("//", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
        elif (word := _WORD.match(text, i)) is not None:
            is_key = text[word.end() :].lstrip(" \t").startswith(":")
            out.append(f'"{word.group()}"' if is_key else word.group())
            i = word.end()
        elif char == "," and _TRAILING_COMMA.match(text, i):
            i += 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def objects(block: str) -> list[Any]:
    """Every top-level `{...}` of a code block, as Python values."""
    text = js_to_json(block)
    found: list[Any] = []
    depth = start = 0
    in_string = escaped = False
    for i, char in enumerate(text):
        if in_string:
            in_string = escaped or char != '"'
            escaped = not escaped and char == "\\"
        elif char == '"':
            in_string = True
        elif char == "{":
            start = i if depth == 0 else start
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                found.append(json.loads(text[start : i + 1]))
    return found
