"""A `rooms` claim narrows what an auditor reads, as it narrows what anyone else joins: room
history, state and cells, the room listing and detail, and the global event stream. Without the claim
an auditor reads everything; an admin always does."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from tests.api.conftest import Server, receive
from tests.api.live_helpers import greet, join, write_cell
from tests.api.rest_helpers import rest
from tests.conftest import LOG_PARTITIONS


async def seed(server: Server, room: str, sheet: str) -> None:
    """A room with one member who wrote one cell, moved the cursor (a volatile event) and set a
    status (an event of the member's own stream)."""
    async with server.connect(server.token(f"writer-{room}")) as ws:
        await greet(ws)
        await join(ws, room)
        await write_cell(ws, room, sheet)
        for message in [
            {"type": "cursor_move", "room": room, "x": 1, "y": 2, "client_msg_id": "c1"},
            {"type": "status_update", "status": "away", "client_msg_id": "s1"},
        ]:
            await ws.send(json.dumps(message))
            while (await receive(ws)).get("client_msg_id") != message["client_msg_id"]:
                pass


async def all_events(server: Server, after: dict[int, int], **claims: Any) -> list[dict[str, Any]]:
    """Every partition's events after its position in `after` (from its start when absent)."""
    found: list[dict[str, Any]] = []
    for partition in range(LOG_PARTITIONS):
        cursor: int | None = after.get(partition, 0)
        while cursor is not None:
            params = {"partition": partition, "after_position": cursor, "limit": 1000}
            page = await rest(server, "GET", "/events", params=params, **claims)
            assert page.status_code == 200, page.text
            found += page.json()["events"]
            cursor = page.json()["next_cursor"]
    return found


async def test_an_auditors_rooms_claim_narrows_every_read(server: Server) -> None:
    tag = uuid.uuid4().hex[:8]
    audited, other = f"audited-{tag}-1", f"elsewhere-{tag}"
    audited_sheet, other_sheet = f"s-{audited}", f"s-{other}"
    start = {e["partition"]: e["position"] for e in await all_events(server, {}, sub="admin")}
    await seed(server, audited, audited_sheet)
    await seed(server, other, other_sheet)
    for sheet in (audited_sheet, other_sheet):  # the sheets table follows the log a moment later
        async with asyncio.timeout(10):
            while (await rest(server, "GET", f"/sheets/{sheet}/cells", sub="admin")).status_code != 200:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    narrowed: dict[str, Any] = {"sub": f"auditor-{tag}", "roles": ["auditor"], "rooms": [f"audited-{tag}-*"]}

    for path in [
        f"/rooms/{audited}/events",
        f"/rooms/{audited}/state",
        f"/sheets/{audited_sheet}/cells",
        f"/sheets/{audited_sheet}/cells/A1/history",
        f"/ws/rooms/{audited}",
    ]:
        assert (await rest(server, "GET", path, **narrowed)).status_code == 200, path
    for path in [
        f"/rooms/{other}/events",
        f"/rooms/{other}/state",
        f"/rooms/{other}/export",
        f"/ws/rooms/{other}",
    ]:
        refused = await rest(server, "GET", path, **narrowed)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["code"] == "PERMISSION_DENIED"
    for path in [f"/sheets/{other_sheet}/cells", f"/sheets/{other_sheet}/cells/A1/history"]:
        hidden = await rest(server, "GET", path, **narrowed)  # as if never edited: sheet ids are guessable
        assert (hidden.status_code, hidden.json()["code"]) == (404, "NOT_FOUND"), path

    listed = await rest(server, "GET", "/ws/rooms", params={"limit": 1000}, **narrowed)
    assert [r["room_id"] for r in listed.json() if tag in r["room_id"]] == [audited]

    seen = await all_events(server, start, **narrowed)
    assert seen, "the audited room's events"
    assert {e["stream_id"] for e in seen} == {f"room:{audited}", f"volatile:room:{audited}"}

    # Without the claim an auditor reads every stream, user streams included; so does an admin with one.
    everything = await all_events(server, start, sub=f"auditor-all-{tag}", roles=["auditor"])
    streams = {e["stream_id"] for e in everything}
    assert {f"room:{audited}", f"room:{other}", f"volatile:room:{other}"} <= streams
    assert any(s.startswith("user:") for s in streams)
    admin = await all_events(server, start, sub="admin", rooms=[f"audited-{tag}-*"])
    assert [(e["partition"], e["position"]) for e in admin] == [
        (e["partition"], e["position"]) for e in everything
    ]
    assert (await rest(server, "GET", f"/rooms/{other}/events", roles=["auditor"])).status_code == 200
