"""`GET /api/v1/ws/rooms`, `GET /api/v1/ws/rooms/{room_id}` and `POST /api/v1/ws/projections/rebuild`
over real HTTP against the real app, after real WebSocket clients made the rooms; read from the
projection tables the runner keeps, on a database of this module's own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.log.partitions import partition_of
from engine.model.streams import room_stream
from tests.api.conftest import Server, make_settings, serve
from tests.api.live_helpers import greet, join, of_type, send, until
from tests.integration.projection_helpers import caught_up, fresh_database

SEED_KEYS = {
    "room_id",
    "user_count",
    "active_sheets_count",
    "last_activity",
    "messages_sent",
    "avg_users_per_hour",
}
MEMBER_KEYS = {"user_id", "username", "email", "room", "status", "cursor", "last_seen"}


@pytest.fixture(scope="module")
def rooms_url(server_url: str) -> Iterator[str]:
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
async def rooms_server(rooms_url: str) -> AsyncIterator[Server]:
    async with serve(make_settings(rooms_url)) as running:
        yield running


def db_of(server: Server) -> AsyncEngine:
    db_engine: AsyncEngine = server.engine.store.db_engine
    return db_engine


def bearer(server: Server, sub: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(sub, roles=list(roles))}"}


async def get(server: Server, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        return await http.get(f"/api/v1{path}", headers=headers, params=params)


async def post(server: Server, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        return await http.post(f"/api/v1{path}", headers=headers, params=params)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_rooms_list_has_the_seed_shape_busiest_first(rooms_server: Server) -> None:
    busy, quiet, alice, bob, carol = uid("busy"), uid("quiet"), uid("alice"), uid("bob"), uid("carol")
    async with (
        rooms_server.connect(rooms_server.token(alice, username="Alice")) as a,
        rooms_server.connect(rooms_server.token(bob)) as b,
        rooms_server.connect(rooms_server.token(carol)) as c,
    ):
        for ws in (a, b, c):
            await greet(ws)
        await join(c, quiet)
        await send(c, {"type": "leave_room", "room_id": quiet, "client_msg_id": "l"})
        await until(c, of_type("ack", client_msg_id="l"))
        await join(a, busy)
        await join(b, busy)
        await send(
            a, {"type": "cell_update", "room": busy, "sheet_id": uid("s"), "cell_id": "A1", "value": 1}
        )
        await until(a, of_type("cell_updated"))
        await caught_up(db_of(rooms_server))

        auditor = bearer(rooms_server, "auditor-1", "auditor")
        listed = await get(rooms_server, "/ws/rooms", auditor)
        assert listed.status_code == 200, listed.text
        rooms = listed.json()
        assert all(set(room) == SEED_KEYS for room in rooms)
        by_id = {room["room_id"]: room for room in rooms}
        assert by_id[busy] | {"last_activity": None, "avg_users_per_hour": None} == {
            "room_id": busy,
            "user_count": 2,
            "active_sheets_count": 1,
            "last_activity": None,
            "messages_sent": 3,
            "avg_users_per_hour": None,
        }
        last_activity = datetime.fromisoformat(by_id[busy]["last_activity"])
        assert by_id[busy]["last_activity"].endswith("Z") and last_activity.tzinfo is not None
        assert by_id[busy]["avg_users_per_hour"] >= 1.0
        assert (by_id[quiet]["user_count"], by_id[quiet]["messages_sent"]) == (0, 2)
        ids = [room["room_id"] for room in rooms]
        assert ids.index(busy) < ids.index(quiet)  # rooms with members first

        active = [
            room["room_id"] for room in (await get(rooms_server, "/ws/rooms", auditor, active="true")).json()
        ]
        assert busy in active and quiet not in active
        first = (await get(rooms_server, "/ws/rooms", auditor, limit=1)).json()
        rest = (await get(rooms_server, "/ws/rooms", auditor, offset=1, limit=1000)).json()
        assert len(first) == 1 and first + rest == rooms


async def test_room_detail_has_its_members_and_unknown_rooms_are_404(rooms_server: Server) -> None:
    room, alice, bob = uid("room"), uid("alice"), uid("bob")
    async with (
        rooms_server.connect(rooms_server.token(alice, username="Alice", email="a@example.com")) as a,
        rooms_server.connect(rooms_server.token(bob)) as b,
    ):
        await greet(a)
        await greet(b)
        await join(a, room)
        await join(b, room)
        await send(a, {"type": "status_update", "status": "away", "client_msg_id": "s"})
        await until(a, of_type("ack", client_msg_id="s"))
        await send(a, {"type": "cursor_move", "room": room, "x": 5, "y": 6, "cell": "B2"})
        await until(b, of_type("cursor_moved"))
        await caught_up(db_of(rooms_server))

        found = await get(rooms_server, f"/ws/rooms/{room}", bearer(rooms_server, "admin-1", "admin"))
        assert found.status_code == 200, found.text
        detail = found.json()
        assert detail["room_id"] == room and detail["user_count"] == 2 and detail["seq"] == 2
        assert detail["position"] >= 1 and detail["active_sheets"] == []
        members = detail["members"]
        assert [m["user_id"] for m in members] == [alice, bob]  # in order of arrival
        assert all(set(m) == MEMBER_KEYS for m in members)
        assert members[0] | {"last_seen": None} == {
            "user_id": alice,
            "username": "Alice",
            "email": "a@example.com",
            "room": room,
            "status": "away",
            "cursor": {"x": 5, "y": 6, "cell": "B2"},
            "last_seen": None,
        }
        assert members[1]["status"] == "online" and members[1]["cursor"] is None

    missing = await get(
        rooms_server, f"/ws/rooms/{uid('nowhere')}", bearer(rooms_server, "auditor-1", "auditor")
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "ROOM_NOT_FOUND"


async def test_rooms_endpoints_need_a_token_and_the_right_to_the_room(rooms_server: Server) -> None:
    for path in ("/ws/rooms", "/ws/rooms/any"):
        assert (await get(rooms_server, path, {})).status_code == 401
    # One room: whoever may join it, like its history.
    fenced = rooms_server.token("fenced", roles=["editor"], rooms=["team-*"])
    outside = await get(rooms_server, "/ws/rooms/other-room", {"Authorization": f"Bearer {fenced}"})
    assert (outside.status_code, outside.json()["code"]) == (403, "PERMISSION_DENIED")
    inside = await get(rooms_server, f"/ws/rooms/{uid('team-')}", {"Authorization": f"Bearer {fenced}"})
    assert (inside.status_code, inside.json()["code"]) == (404, "ROOM_NOT_FOUND")
    nul = await get(rooms_server, "/ws/rooms/a%00b", bearer(rooms_server, "au", "auditor"))
    assert (nul.status_code, nul.json()["code"]) == (422, "VALIDATION_ERROR")
    assert (await post(rooms_server, "/ws/projections/rebuild", {})).status_code == 401
    auditor = await post(rooms_server, "/ws/projections/rebuild", bearer(rooms_server, "au", "auditor"))
    assert auditor.status_code == 403
    bad = await get(rooms_server, "/ws/rooms", bearer(rooms_server, "au", "auditor"), limit=0)
    assert (bad.status_code, bad.json()["code"]) == (422, "VALIDATION_ERROR")


async def test_rebuild_endpoint_reports_differences_and_repairs_them(rooms_server: Server) -> None:
    room, alice = uid("room"), uid("alice")
    async with rooms_server.connect(rooms_server.token(alice)) as a:
        await greet(a)
        await join(a, room)
        db_engine = db_of(rooms_server)
        await caught_up(db_engine)
        async with db_engine.begin() as conn:
            await conn.execute(text("UPDATE rooms SET messages_sent = 40 WHERE room_id = :r"), {"r": room})
        admin = bearer(rooms_server, "admin-1", "admin")

        checked = await post(rooms_server, "/ws/projections/rebuild", admin, check="true")
        assert checked.status_code == 200, checked.text
        report = checked.json()
        assert (report["rebuilt"], report["differences"], report["tables"]) == (False, 1, {})
        assert report["details"] == [f"rooms {room}: messages_sent is 40 in the table, 1 in the log"]
        listed = (await get(rooms_server, f"/ws/rooms/{room}", admin)).json()
        assert listed["messages_sent"] == 40  # a check changes nothing

        rebuilt = (await post(rooms_server, "/ws/projections/rebuild", admin)).json()
        assert rebuilt["rebuilt"] is True and rebuilt["differences"] is None  # no diff unless asked
        assert rebuilt["position"] >= 1 and rebuilt["events_read"] == rebuilt["position"]
        tables = {"cells", "sheets", "rooms", "room_members", "declared_statuses", "typing"}
        assert tables <= set(rebuilt["tables"])
        assert rebuilt["tables"]["room_members"] >= 1
        assert (await get(rooms_server, f"/ws/rooms/{room}", admin)).json()["messages_sent"] == 1
        again = (await post(rooms_server, "/ws/projections/rebuild", admin, check="true")).json()
        assert again["differences"] == 0 and again["details"] == []

        # One partition alone: the room's, damaged again; the others are not rebuilt.
        count = await rooms_server.engine.store.partitions()
        partition = partition_of(room_stream(room), count)
        async with db_engine.begin() as conn:
            await conn.execute(text("UPDATE rooms SET messages_sent = 40 WHERE room_id = :r"), {"r": room})
        one = await post(rooms_server, "/ws/projections/rebuild", admin, check="true", partition=partition)
        assert one.json()["differences"] == 1, one.text
        one = (await post(rooms_server, "/ws/projections/rebuild", admin, partition=partition)).json()
        assert one["rebuilt"] is True and list(one["heads"]) == [str(partition)]
        assert one["position"] == one["heads"][str(partition)]
        assert (await get(rooms_server, f"/ws/rooms/{room}", admin)).json()["messages_sent"] == 1
        beyond = await post(rooms_server, "/ws/projections/rebuild", admin, partition=count)
        assert (beyond.status_code, beyond.json()["code"]) == (422, "VALIDATION_ERROR")
        assert f"0 to {count - 1}" in beyond.text


async def test_openapi_describes_the_rooms_endpoints(rooms_server: Server) -> None:
    async with httpx.AsyncClient(base_url=rooms_server.http_url) as http:
        schema = (await http.get("/openapi.json")).json()
    paths = schema["paths"]
    assert {"/api/v1/ws/rooms", "/api/v1/ws/rooms/{room_id}", "/api/v1/ws/projections/rebuild"} <= set(paths)
    item = paths["/api/v1/ws/rooms"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert item["items"]["$ref"].endswith("/RoomOut")
    assert set(schema["components"]["schemas"]["RoomOut"]["properties"]) == SEED_KEYS
