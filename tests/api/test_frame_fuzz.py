"""Thousands of generated and mutated frames of every message type against a real server.

Hypothesis builds the frames (valid messages of every inbound type, then mutated: fields dropped,
retyped, bloated, ids with control characters, numbers out of range, broken JSON, invalid UTF-8,
deep nesting, binary frames), deterministically so a failure reproduces. Each is sent on one
connection, followed by a `ping` that marks where its replies end. For every frame:

- the server answers with messages the protocol documents, never a non-retryable `INTERNAL_ERROR`;
- a refused frame (an `error`) appended nothing: the fuzzing user's events are counted around it;
- the connection stays open, or closes with a documented code (1009 for an oversize frame), after
  which the next frames go on a new connection.

Meanwhile a well-behaved client in another room writes cells and must get every ack; at the end the
server is healthy.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from engine.log.schema import events
from engine.log.store import EventStore
from engine.model.catalogue import AI_EVENTS, TYPING_STOPPED
from engine.protocol import INBOUND_TYPES
from engine.protocol.close_codes import CloseCode
from engine.protocol.error_codes import ERROR_CODES, INTERNAL_ERROR
from engine.protocol.outbound import RESERVED_TYPES
from tests.api.conftest import RECEIVE_TIMEOUT, Server, make_settings, receive, serve

FRAMES = 2000
MAX_MESSAGE_BYTES = 4096

FUZZER = f"fuzzer-{uuid.uuid4().hex[:6]}"
ROOM = f"fuzz-room-{uuid.uuid4().hex[:6]}"
SHEET = f"fuzz-sheet-{uuid.uuid4().hex[:6]}"

# Events the server appends for the fuzzing user on its own schedule (an AI run streaming, a typing
# indicator expiring), which may land while any later frame is answered.
BACKGROUND_EVENTS = sorted({*AI_EVENTS, TYPING_STOPPED})

TEMPLATES: dict[str, dict[str, Any]] = {
    "ping": {},
    "join_room": {"room_id": ROOM, "since": 0},
    "leave_room": {"room_id": ROOM},
    "cursor_move": {"room": ROOM, "x": 150, "y": 300, "cell": "B2"},
    "cell_update": {"sheet_id": SHEET, "cell_id": "A1", "value": 42, "formula": "=6*7", "room": ROOM},
    "cells_update": {"sheet_id": SHEET, "room": ROOM, "cells": [{"cell_id": "A2", "value": "x"}]},
    "load_sheet": {"sheet_id": SHEET},
    "refresh_token": {"token": "not.a.token"},
    "status_update": {"status": "away"},
    "typing_start": {"room": ROOM, "cell_id": "C3"},
    "typing_stop": {"room": ROOM, "cell_id": "C3"},
    "ai_request": {
        "request_id": "r1",
        "query": "sum",
        "sheet_id": SHEET,
        "context": {"table_range": "A1:B2"},
    },
    "ai_cancel": {"request_id": "r1"},
    "subscribe_notifications": {"categories": ["a"], "modules": None, "priorities": ["high"]},
    "notification_read": {"notification_id": "n1"},
    "file_upload_start": {"file_id": "file-1", "filename": "a.csv", "file_size": 10, "mime_type": "text/csv"},
    "file_upload_progress": {"file_id": "file-1", "bytes_uploaded": 5, "total_bytes": 10, "percentage": 50},
}
assert set(TEMPLATES) == INBOUND_TYPES, "every inbound type is fuzzed"

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", "\x00", "a\nb", "\x1b[2J", "\ud800", "A" * 200, "..", "../etc", "$A$1:B2"])
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def messages(draw: st.DrawFn) -> Any:
    """A message of a random type, valid or mutated."""
    kind = draw(st.sampled_from(sorted(TEMPLATES)))
    message: dict[str, Any] = {
        "type": kind,
        **TEMPLATES[kind],
        "client_msg_id": f"fz-{draw(st.integers(0, 10**9))}",
    }
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "set", "extra", "retype", "bloat"]))
        keys = sorted(message)
        if action == "drop" and keys:
            message.pop(draw(st.sampled_from(keys)))
        elif action == "set" and keys:
            message[draw(st.sampled_from(keys))] = draw(_json)
        elif action == "extra":
            message[draw(st.text(max_size=12))] = draw(_json)
        elif action == "retype":
            message["type"] = draw(st.sampled_from(sorted(TEMPLATES)) | st.text(max_size=20) | _json)
        else:
            message[draw(st.sampled_from(keys or ["x"]))] = "z" * draw(
                st.integers(100, 2 * MAX_MESSAGE_BYTES)
            )
    return message if draw(st.integers(0, 19)) else draw(_json)  # now and then not even an object


@st.composite
def frames(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(the frame's bytes, sent as binary)."""
    text = json.dumps(draw(messages()), allow_nan=True).encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none"] * 6 + ["truncate", "garble", "nest", "bytes"]))
    if damage == "truncate":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    elif damage == "garble":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
    elif damage == "nest":
        depth = draw(st.integers(1, 2000))
        text = b"[" * depth + text + b"]" * depth
    elif damage == "bytes":
        text = draw(st.binary(max_size=64))
    return text, draw(st.booleans())


def generate() -> list[tuple[bytes, bool]]:
    found: list[tuple[bytes, bool]] = []

    @settings(
        max_examples=FRAMES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(frames())
    def collect(frame: tuple[bytes, bool]) -> None:
        found.append(frame)

    collect()
    return found


@pytest.fixture(scope="module")
async def fuzz_server(database_url: str) -> AsyncIterator[Server]:
    settings_ = make_settings(
        database_url,
        max_message_bytes=MAX_MESSAGE_BYTES,
        bad_frames_per_window=1_000_000,  # the budget has its own test; here every frame is answered
        websocket_requests_per_minute=1_000_000,
        websocket_requests_per_hour=1_000_000,
        volatile_messages_per_second=1_000_000,
    )
    async with serve(settings_) as running:
        yield running


async def fuzzer_events(store: EventStore) -> int:
    query = (
        select(func.count())
        .select_from(events)
        .where(events.c.user_id == FUZZER, events.c.type.not_in(BACKGROUND_EVENTS))
    )
    async with store.db_engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def open_fuzzer(server: Server) -> ClientConnection:
    # A connection closed before this one records its departures on its own time: wait for them, so
    # they are not taken for something a later frame appended.
    node = server.engine.node
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while node.connections.count_of(FUZZER) or node.departing:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    ws = await server.connect(server.token(FUZZER, roles=["editor"]), max_size=None)
    assert (await receive(ws))["type"] == "connected"
    return ws


async def answer_to(ws: ClientConnection, frame: bytes, binary: bool, marker: str) -> list[dict[str, Any]]:
    """Send the frame and a marking ping; what came back in between."""
    await ws.send(frame if binary else frame.decode("utf-8", "replace"))
    await ws.send(json.dumps({"type": "ping", "client_msg_id": marker}))
    replies: list[dict[str, Any]] = []
    while True:
        message = await receive(ws)
        if message["type"] == "pong" and message.get("client_msg_id") == marker:
            return replies
        replies.append(message)


async def well_behaved(server: Server, stop: asyncio.Event) -> int:
    """Writes cells in its own room until told to stop; every update must be acked. Returns how many."""
    room, sheet = f"calm-{uuid.uuid4().hex[:6]}", f"calm-sheet-{uuid.uuid4().hex[:6]}"
    acked = 0
    async with server.connect(server.token(f"calm-{uuid.uuid4().hex[:6]}")) as ws:
        await receive(ws)
        await ws.send(json.dumps({"type": "join_room", "room_id": room}))
        while (await receive(ws))["type"] != "room_state":
            pass
        while not stop.is_set():
            cmid = f"calm-{acked}"
            update = {"type": "cell_update", "sheet_id": sheet, "cell_id": "A1", "value": acked, "room": room}
            await ws.send(json.dumps({**update, "client_msg_id": cmid}))
            while True:
                reply = await receive(ws)
                if reply.get("client_msg_id") == cmid and reply["type"] in {"ack", "error"}:
                    assert reply["type"] == "ack", reply
                    break
            acked += 1
            await asyncio.sleep(0.02)
    return acked


async def test_fuzzed_frames_are_answered_or_closed_as_documented_and_persist_nothing_when_refused(
    fuzz_server: Server, store: EventStore
) -> None:
    generated = generate()
    assert len(generated) >= FRAMES * 0.9
    stop = asyncio.Event()
    calm = asyncio.create_task(well_behaved(fuzz_server, stop))
    documented = RESERVED_TYPES  # every type the protocol sends
    refused = accepted = closes = 0
    ws = await open_fuzzer(fuzz_server)
    try:
        for i, (frame, binary) in enumerate(generated):
            before = await fuzzer_events(store)
            try:
                replies = await answer_to(ws, frame, binary, f"mark-{i}")
            except ConnectionClosed:
                assert ws.close_code in {CloseCode.MESSAGE_TOO_BIG}, (ws.close_code, frame[:200])
                assert len(frame) > MAX_MESSAGE_BYTES
                closes += 1
                ws = await open_fuzzer(fuzz_server)
                continue
            for reply in replies:
                assert reply["type"] in documented, (reply, frame[:200])
                if reply["type"] == "error":
                    assert reply["code"] in ERROR_CODES, reply
                    assert reply["code"] != INTERNAL_ERROR or reply.get("retryable"), (reply, frame[:200])
            errors = [r for r in replies if r["type"] == "error"]
            if errors and not any(r["type"] == "ack" for r in replies):
                refused += 1
                assert await fuzzer_events(store) == before, (
                    "a refused frame was persisted",
                    frame[:200],
                    errors,
                )
            else:
                accepted += 1
    finally:
        stop.set()
        await ws.close()
    acked = await asyncio.wait_for(calm, RECEIVE_TIMEOUT)
    assert acked > 0
    # Both sides of the contract were exercised, not just one.
    print(f"fuzzed {len(generated)} frames: {refused} refused, {accepted} accepted, {closes} closes")
    assert refused > FRAMES / 4 and accepted > FRAMES / 20, (refused, accepted, closes)
    async with httpx.AsyncClient(base_url=fuzz_server.http_url) as http:
        assert (await http.get("/api/v1/ws/health")).status_code == 200
