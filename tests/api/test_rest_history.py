"""History and time travel over REST against the real app: after a scripted session of real WebSocket
clients, the room and its sheet as of each seq are what the clients were sent at that seq; pages, filters,
the global stream and the NDJSON export hold every event exactly once; and who may read what."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import select

from engine.log.partitions import partition_of
from engine.log.schema import room_snapshots
from engine.log.store import EventStore
from engine.model.streams import room_stream
from tests.api.conftest import Server, make_settings, serve, wait_for_events
from tests.api.live_helpers import Message, declare, greet, join, of_type, pending, send, until
from tests.conftest import LOG_PARTITIONS

API = "/api/v1"


@dataclass
class Session:
    room: str
    sheet: str
    # Every room_state any client was sent, and every cell_updated, as received.
    states: list[Message] = field(default_factory=list)
    cells: list[Message] = field(default_factory=list)


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http_url + API, timeout=10) as client:
        yield client


def auth(
    server: Server, sub: str = "auditor-1", roles: list[str] | None = None, **claims: Any
) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(sub, roles=roles or ['auditor'], **claims)}"}


async def _scripted_session(server: Server, store: EventStore, room: str) -> Session:
    """alice joins, bob joins, bob moves his cursor, alice and bob edit, bob leaves, alice edits again
    and closes her socket: 7 durable room events and 1 volatile one."""
    session = Session(room, f"sheet-{uuid.uuid4().hex[:10]}")

    def keep(messages: list[Message]) -> None:
        session.states += [m for m in messages if m["type"] == "room_state"]
        session.cells += [m for m in messages if m["type"] == "cell_updated"]

    def edit(value: object, **extra: object) -> Message:
        return {"type": "cell_update", "sheet_id": session.sheet, "cell_id": "A1", "value": value, **extra}

    async with (
        server.connect(server.token("alice", username="Alice", email="a@x")) as alice,
        server.connect(server.token("bob", username="Bob")) as bob,
    ):
        await greet(alice)
        await greet(bob)
        keep([await join(alice, room)])
        keep([await join(bob, room)])
        keep(await until(alice, of_type("user_joined")))
        await send(bob, {"type": "cursor_move", "room": room, "x": 3, "y": 4.5, "cell": "A1"})
        keep(await until(alice, of_type("cursor_moved")))
        await send(alice, edit(10, room=room))
        keep(await until(alice, of_type("cell_updated")))
        await until(bob, of_type("cell_updated"))
        await send(bob, edit(20, formula="=10*2", room=room))
        keep(await until(alice, of_type("cell_updated")))
        await until(bob, of_type("cell_updated"))
        await send(bob, {"type": "leave_room", "room_id": room})
        await until(bob, of_type("room_left"))
        keep(await until(alice, of_type("user_left")))
        await send(alice, {**edit(30, room=room), "cell_id": "B2"})
        keep(await until(alice, of_type("cell_updated")))
        keep(await pending(alice))
    await wait_for_events(store, room_stream(room), 7)  # alice's disconnect, recorded after the close
    return session


@pytest.fixture
async def session(server: Server, store: EventStore, room: str) -> Session:
    return await _scripted_session(server, store, room)


async def _all_events(http: httpx.AsyncClient, server: Server, room: str, **params: Any) -> list[Message]:
    response = await http.get(f"/rooms/{room}/events", params={"limit": 1000, **params}, headers=auth(server))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    return list(body["events"])


async def test_rest_history_room_state_as_of_each_seq_is_what_clients_saw(
    server: Server, http: httpx.AsyncClient, session: Session
) -> None:
    assert [s["seq"] for s in session.states] == [1, 2, 2, 5]
    for seen in session.states:
        response = await http.get(
            f"/rooms/{session.room}/state", params={"seq": seen["seq"]}, headers=auth(server)
        )
        assert response.status_code == 200, response.text
        state = response.json()
        assert {k: v for k, v in seen.items() if k != "type"} == {
            k: v for k, v in state.items() if k != "messages_sent"
        }
    after_leave = (
        await http.get(f"/rooms/{session.room}/state", params={"seq": 5}, headers=auth(server))
    ).json()
    assert [u["user_id"] for u in after_leave["users"]] == ["alice"]
    at2 = (await http.get(f"/rooms/{session.room}/state", params={"seq": 2}, headers=auth(server))).json()
    assert {u["user_id"]: u["cursor"] for u in at2["users"]} == {"alice": None, "bob": None}
    at3 = (await http.get(f"/rooms/{session.room}/state", params={"seq": 3}, headers=auth(server))).json()
    assert {u["user_id"]: u["cursor"] for u in at3["users"]}["bob"] == {"x": 3, "y": 4.5, "cell": "A1"}
    assert (at3["active_sheets"], at3["messages_sent"]) == ([session.sheet], 3)
    empty = (await http.get(f"/rooms/{session.room}/state", params={"seq": 0}, headers=auth(server))).json()
    assert (empty["seq"], empty["users"], empty["ts"]) == (0, [], None)

    # As of a time: the time of each message is the state of its seq.
    for seen in session.states:
        response = await http.get(
            f"/rooms/{session.room}/state", params={"at": seen["ts"]}, headers=auth(server)
        )
        assert response.json()["seq"] == seen["seq"]


async def test_rest_history_room_state_shows_the_statuses_members_had_then(
    server: Server, http: httpx.AsyncClient, room: str
) -> None:
    """Declared statuses live in the users' own streams, yet the room as of a seq or a time shows
    each member's as they had it then, as the `room_state` sent at that seq did: ann joins away, bob
    joins, ann turns busy, bob leaves, ann turns away again; with neither, the room as it is now."""
    ann, bob = f"{room}-ann", f"{room}-bob"  # users of their own: a status outlives its test
    async with server.connect(server.token(ann)) as ann_ws, server.connect(server.token(bob)) as bob_ws:
        await greet(ann_ws)
        await greet(bob_ws)
        await declare(ann_ws, "away")
        states = [await join(ann_ws, room)]
        await join(bob_ws, room)
        states += [m for m in await pending(ann_ws) if m["type"] == "room_state"]
        await declare(ann_ws, "busy")
        await send(bob_ws, {"type": "leave_room", "room_id": room})
        await until(bob_ws, of_type("room_left"))
        states += [m for m in await pending(ann_ws) if m["type"] == "room_state"]
        await declare(ann_ws, "away")

        def statuses(state: Message) -> dict[str, str]:
            return {u["user_id"]: u["status"] for u in state["users"]}

        assert [(s["seq"], statuses(s)) for s in states] == [
            (1, {ann: "away"}),
            (2, {ann: "away", bob: "online"}),
            (3, {ann: "busy"}),
        ]
        for seen in states:
            for params in ({"seq": seen["seq"]}, {"at": seen["ts"]}):
                response = await http.get(f"/rooms/{room}/state", params=params, headers=auth(server))
                assert response.status_code == 200, response.text
                shown = {k: v for k, v in response.json().items() if k != "messages_sent"}
                assert shown == {k: v for k, v in seen.items() if k != "type"}, params
        now = (await http.get(f"/rooms/{room}/state", headers=auth(server))).json()
        assert (now["seq"], statuses(now)) == (3, {ann: "away"})


async def test_rest_history_sheet_cells_and_cell_history_are_what_clients_saw(
    server: Server, http: httpx.AsyncClient, session: Session
) -> None:
    a1 = [m for m in session.cells if m["cell_id"] == "A1"]
    assert [m["seq"] for m in session.cells] == [3, 4, 6]
    for message in session.cells:
        response = await http.get(
            f"/sheets/{session.sheet}/cells", params={"seq": message["seq"]}, headers=auth(server)
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["room_id"], body["seq"]) == (session.room, message["seq"])
        cell = body["cells"][message["cell_id"]]
        assert {k: cell[k] for k in ("value", "formula", "version", "user_id", "ts", "seq")} == {
            k: message[k] for k in ("value", "formula", "version", "user_id", "ts", "seq")
        }
    at5 = (await http.get(f"/sheets/{session.sheet}/cells", params={"seq": 5}, headers=auth(server))).json()
    assert set(at5["cells"]) == {"A1"} and at5["cells"]["A1"]["value"] == 20
    by_time = await http.get(
        f"/sheets/{session.sheet}/cells", params={"at": a1[0]["ts"]}, headers=auth(server)
    )
    assert {c: v["value"] for c, v in by_time.json()["cells"].items()} == {"A1": 10}

    history = await http.get(f"/sheets/{session.sheet}/cells/A1/history", headers=auth(server))
    assert history.status_code == 200, history.text
    assert history.json()["next_cursor"] is None
    assert [
        (v["value"], v["formula"], v["version"], v["user_id"], v["ts"], v["seq"])
        for v in history.json()["versions"]
    ] == [(m["value"], m["formula"], m["version"], m["user_id"], m["ts"], m["seq"]) for m in a1]
    first = (
        await http.get(f"/sheets/{session.sheet}/cells/A1/history", params={"limit": 1}, headers=auth(server))
    ).json()
    assert [v["seq"] for v in first["versions"]] == [3] and first["next_cursor"] == 3
    rest = await http.get(
        f"/sheets/{session.sheet}/cells/A1/history", params={"after_seq": 3}, headers=auth(server)
    )
    assert [v["seq"] for v in rest.json()["versions"]] == [4]
    for after_seq in (4, 7):  # written, though not since: an empty page, not a 404
        since = await http.get(
            f"/sheets/{session.sheet}/cells/A1/history", params={"after_seq": after_seq}, headers=auth(server)
        )
        assert (since.status_code, since.json()["versions"], since.json()["next_cursor"]) == (200, [], None)


async def test_rest_history_events_pages_hold_every_event_once_volatile_only_on_request(
    server: Server, http: httpx.AsyncClient, session: Session
) -> None:
    everything = await _all_events(http, server, session.room, include_volatile="true")
    durable = await _all_events(http, server, session.room)
    assert [e["seq"] for e in durable] == [1, 2, 3, 4, 5, 6, 7]
    assert [e["type"] for e in everything if e["volatile"]] == ["CursorMoved"]
    assert [e for e in everything if not e["volatile"]] == durable
    assert [e["position"] for e in everything] == sorted(e["position"] for e in everything)
    cursor_event = next(e for e in everything if e["volatile"])
    assert cursor_event["seq"] is None and cursor_event["data"]["user_id"] == "bob"

    for params in ({}, {"include_volatile": "true"}):
        walked: list[Message] = []
        cursor = None
        while True:
            page_params = {"limit": 2, **params} | ({"cursor": cursor} if cursor is not None else {})
            response = await http.get(
                f"/rooms/{session.room}/events", params=page_params, headers=auth(server)
            )
            assert response.status_code == 200, response.text
            walked += response.json()["events"]
            assert len(walked) <= 8  # a page that never ends would fail here, not hang
            if (cursor := response.json()["next_cursor"]) is None:
                break
        assert walked == (everything if params else durable)

    after = (
        await http.get(f"/rooms/{session.room}/events", params={"after_seq": 4}, headers=auth(server))
    ).json()
    assert [e["seq"] for e in after["events"]] == [5, 6, 7]


async def test_rest_history_events_filter_by_type_and_time(
    server: Server, http: httpx.AsyncClient, session: Session
) -> None:
    everything = await _all_events(http, server, session.room, include_volatile="true")
    cells = await _all_events(http, server, session.room, types="CellUpdated")
    assert [e["seq"] for e in cells] == [3, 4, 6]
    both = await _all_events(
        http, server, session.room, types="CellUpdated,CursorMoved", include_volatile="true"
    )
    assert [e["type"] for e in both] == ["CursorMoved", "CellUpdated", "CellUpdated", "CellUpdated"]
    repeated = await _all_events(
        http, server, session.room, types=["UserJoinedRoom", "UserLeftRoom"], include_volatile="true"
    )
    assert [e["seq"] for e in repeated] == [1, 2, 5, 7]

    since, until_ = everything[2]["ts"], everything[4]["ts"]
    window = await _all_events(http, server, session.room, since=since, until=until_, include_volatile="true")
    parse = datetime.fromisoformat
    assert window == [e for e in everything if parse(since) <= parse(e["ts"]) <= parse(until_)]
    assert everything[2] in window and everything[4] in window and everything[0] not in window


async def test_rest_history_times_beyond_the_years_of_utc_are_before_or_after_every_event(
    server: Server, http: httpx.AsyncClient, session: Session
) -> None:
    """A zoned time whose UTC value falls before year 1 or after 9999 is valid where it is written, and
    is before every event or after every one, not an error."""
    latest, earliest = "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"
    room, sheet = session.room, session.sheet

    async def as_of(path: str, at: str) -> dict[str, Any]:
        response = await http.get(path, params={"at": at}, headers=auth(server))
        assert response.status_code == 200, response.text
        return dict(response.json())

    now = await as_of(f"/rooms/{room}/state", latest)
    before = await as_of(f"/rooms/{room}/state", earliest)
    assert (now["seq"], before["seq"], before["users"]) == (7, 0, [])
    cells_now = await as_of(f"/sheets/{sheet}/cells", latest)
    cells_before = await as_of(f"/sheets/{sheet}/cells", earliest)
    assert (cells_now["seq"], set(cells_now["cells"])) == (7, {"A1", "B2"})
    assert (cells_before["seq"], cells_before["cells"]) == (0, {})

    everything = await _all_events(http, server, room, include_volatile="true")
    assert len(everything) == 8
    widest = await _all_events(http, server, room, since=earliest, until=latest, include_volatile="true")
    assert widest == everything
    assert await _all_events(http, server, room, since=latest) == []
    assert await _all_events(http, server, room, until=earliest) == []
    partition = partition_of(room_stream(room), LOG_PARTITIONS)
    for since, some in ((earliest, True), (latest, False)):
        page = await http.get(
            "/events", params={"partition": partition, "since": since}, headers=auth(server)
        )
        assert page.status_code == 200, page.text
        assert bool(page.json()["events"]) is some


async def test_rest_history_global_stream_is_for_auditors_and_skips_nothing(
    server: Server, store: EventStore, http: httpx.AsyncClient, room: str
) -> None:
    # The room's partition holds all its events: the global stream is read there, one cursor a
    # partition (in a log of one, partition 0 is the whole log).
    partition = partition_of(room_stream(room), LOG_PARTITIONS)

    async def page_of(**params: Any) -> dict[str, Any]:
        response = await http.get("/events", params={"partition": partition, **params}, headers=auth(server))
        assert response.status_code == 200, response.text
        return dict(response.json())

    # The head now: page from the end of the partition (other tests may have filled it).
    position = 0
    while True:
        page = await page_of(after_position=position, limit=1000)
        if page["events"]:
            position = page["events"][-1]["position"]
        if page["next_cursor"] is None:
            break
    session = await _scripted_session(server, store, room)
    first = (await page_of(limit=1))["events"]
    assert first and first[0]["position"] == 1 and first[0]["partition"] == partition
    walked: list[Message] = []
    cursor = position
    while cursor is not None:
        page = await page_of(after_position=cursor, limit=3)
        walked += page["events"]
        cursor = page["next_cursor"]
    assert [e["position"] for e in walked] == list(range(position + 1, position + 1 + len(walked)))
    assert {e["partition"] for e in walked} == {partition}
    mine = [e for e in walked if e["stream_id"].endswith(f"room:{session.room}")]
    assert mine == await _all_events(http, server, session.room, include_volatile="true")
    only_cells = await page_of(after_position=position, types="CellUpdated")
    assert [e["seq"] for e in only_cells["events"] if e["stream_id"] == f"room:{session.room}"] == [3, 4, 6]
    beyond = await http.get("/events", params={"partition": LOG_PARTITIONS}, headers=auth(server))
    assert (beyond.status_code, beyond.json()["code"]) == (422, "VALIDATION_ERROR")
    assert f"this log has {LOG_PARTITIONS}" in beyond.json()["error"]

    admin = await http.get("/events", headers=auth(server, "root", roles=["admin"]))
    assert admin.status_code == 200
    editor = await http.get("/events", headers=auth(server, "alice", roles=["editor"]))
    assert (editor.status_code, editor.json()["code"]) == (403, "PERMISSION_DENIED")
    anonymous = await http.get("/events")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "AUTHENTICATION_FAILED")


async def test_rest_history_export_streams_one_line_per_event(
    server: Server, http: httpx.AsyncClient, session: Session
) -> None:
    for params, volatile in (({}, False), ({"include_volatile": "true"}, True)):
        async with http.stream(
            "GET", f"/rooms/{session.room}/export", params=params, headers=auth(server)
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) async for line in response.aiter_lines() if line]
        expected = await _all_events(
            http, server, session.room, **({"include_volatile": "true"} if volatile else {})
        )
        assert lines == expected
        assert len(lines) == (8 if volatile else 7)


@pytest.mark.parametrize(("name", "ascii_name"), [("会议室", "___"), ("café", "caf_")])
async def test_rest_history_export_names_any_room_in_an_ascii_header(
    server: Server, http: httpx.AsyncClient, name: str, ascii_name: str
) -> None:
    """A room id may hold any letter, and headers go out as Latin-1 bytes: the file name is sent as an
    ASCII fallback plus the exact name percent-encoded (RFC 8187), so no id breaks the export."""
    suffix = f"-{uuid.uuid4().hex[:6]}"
    room = name + suffix
    async with server.connect(server.token("alice")) as ws:
        await greet(ws)
        await join(ws, room)
    async with http.stream("GET", f"/rooms/{room}/export", headers=auth(server)) as response:
        assert response.status_code == 200
        lines = [json.loads(line) async for line in response.aiter_lines() if line]
    assert lines and {e["stream_id"] for e in lines} == {room_stream(room)}
    header = dict(response.headers.raw)[b"content-disposition"]
    assert header.isascii(), header
    fallback, exact = header.decode().removeprefix("attachment; ").split("; ")
    assert fallback == f'filename="{ascii_name}{suffix}.ndjson"'
    assert unquote(exact.removeprefix("filename*=UTF-8''")) == f"{room}.ndjson"


async def test_rest_history_who_may_read_and_what_is_refused(
    server: Server, http: httpx.AsyncClient, session: Session
) -> None:
    room, sheet = session.room, session.sheet
    reads = [
        f"/rooms/{room}/events",
        f"/rooms/{room}/state?seq=1",
        f"/rooms/{room}/export",
        f"/sheets/{sheet}/cells?seq=3",
        f"/sheets/{sheet}/cells/A1/history",
    ]
    member = auth(server, "alice", roles=["editor"])
    outsider = auth(server, "vic", roles=["viewer"], rooms=["elsewhere-*"])
    viewer = auth(server, "val", roles=["viewer"], rooms=["room-*"])
    for path in reads:
        assert (await http.get(path)).status_code == 401, path
        denied = await http.get(path, headers=outsider)
        # A room the caller may not read: 403 (its id is the caller's own guess); a sheet in such a
        # room: 404 like a sheet never edited, so a guessed sheet id is not confirmed.
        expected = (404, "NOT_FOUND") if path.startswith("/sheets/") else (403, "PERMISSION_DENIED")
        assert (denied.status_code, denied.json()["code"]) == expected, path
        assert (await http.get(path, headers=member)).status_code == 200, path
        assert (await http.get(path, headers=viewer)).status_code == 200, path
        assert (await http.get(path, headers=auth(server, "root", roles=["admin"]))).status_code == 200, path

    missing = [
        "/rooms/no-such-room/events",
        "/rooms/no-such-room/state?seq=0",
        "/rooms/no-such-room/export",
        "/sheets/no-such-sheet/cells?seq=0",
        f"/sheets/{sheet}/cells/Z99/history",
        f"/sheets/{sheet}/cells/Z99/history?after_seq=1",  # never written, whichever page is asked for
    ]
    for path in missing:
        response = await http.get(path, headers=auth(server))
        assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND"), path

    invalid = [
        f"/rooms/{room}/state?seq=8",  # beyond the room's seq 7
        f"/rooms/{room}/state?seq=1&at=2026-01-01T00:00:00Z",
        f"/rooms/{room}/state?at=2026-01-01T00:00:00",  # no time zone
        f"/rooms/{room}/state?seq=-1",
        f"/rooms/{room}/events?types=NoSuchEvent",
        f"/rooms/{room}/events?types=CursorMoved",  # volatile without include_volatile
        f"/rooms/{room}/events?limit=0",
        f"/rooms/{room}/events?limit=1001",
        f"/rooms/{room}/events?after_seq=2&cursor=5",
        f"/rooms/{room}/events?after_seq=99",
        f"/rooms/{room}/events?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
        f"/sheets/{sheet}/cells?seq=99",
        f"/sheets/{sheet}/cells?seq=1&at=2026-01-01T00:00:00Z",  # at most one of them
        f"/sheets/{sheet}/cells/A1/history?after_seq=8",
        f"/sheets/{sheet}/cells/Z99/history?after_seq=8",
        "/events?after_position=-1",
        "/rooms/a%00b/events",  # PostgreSQL text cannot hold NUL: no id has one
        f"/sheets/{sheet}/cells/A%001/history",
    ]
    for path in invalid:
        response = await http.get(path, headers=auth(server))
        assert (response.status_code, response.json()["code"]) == (422, "VALIDATION_ERROR"), (
            path,
            response.text,
        )
    for path in (f"/rooms/{room}/events", f"/sheets/{sheet}/cells/A1/history"):
        beyond = await http.get(path, params={"after_seq": 8}, headers=auth(server))
        assert beyond.json()["error"] == "after_seq 8 is outside the room's 0..7", path


async def test_rest_history_snapshots_give_the_same_answers(
    server: Server, http: httpx.AsyncClient, session: Session
) -> None:
    """The same room as of each seq, folded from the start (no snapshot yet), then by a node that
    stores a snapshot every 2 events and folds from them."""
    paths = [f"/rooms/{session.room}/state?seq={seq}" for seq in range(8)]
    plain = [(await http.get(p, headers=auth(server))).json() for p in paths]
    engine = server.engine

    async def snapshot_seqs() -> list[int]:
        query = select(room_snapshots.c.seq).where(room_snapshots.c.room_id == session.room)
        async with engine.store.db_engine.connect() as conn:
            return sorted((await conn.execute(query)).scalars())

    assert await snapshot_seqs() == []
    settings = make_settings(server.settings.database_url, history_snapshot_interval=2)
    async with serve(settings) as other, httpx.AsyncClient(base_url=other.http_url + API) as client:
        headers = {"Authorization": f"Bearer {other.token('a', roles=['auditor'])}"}
        assert (await client.get(paths[7], headers=headers)).json() == plain[7]
        assert await snapshot_seqs() == [2, 4, 6]
        assert [(await client.get(p, headers=headers)).json() for p in paths] == plain

        denied = await client.post(f"/rooms/{session.room}/snapshots", headers=headers)
        assert (denied.status_code, denied.json()["code"]) == (403, "PERMISSION_DENIED")
    on_demand = await http.post(
        f"/rooms/{session.room}/snapshots", headers=auth(server, "root", roles=["admin"])
    )
    assert on_demand.status_code == 200, on_demand.text
    assert on_demand.json()["seq"] == 7
    assert await snapshot_seqs() == [2, 4, 6, 7]
    assert [(await http.get(p, headers=auth(server))).json() for p in paths] == plain


async def test_rest_history_is_described_in_openapi(server: Server, http: httpx.AsyncClient) -> None:
    schema = (await http.get(server.http_url + "/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/api/v1/rooms/{room_id}/events",
        "/api/v1/rooms/{room_id}/state",
        "/api/v1/rooms/{room_id}/export",
        "/api/v1/sheets/{sheet_id}/cells",
        "/api/v1/sheets/{sheet_id}/cells/{cell_id}/history",
        "/api/v1/events",
    ):
        assert "get" in paths[path], path
    assert "EventPage" in schema["components"]["schemas"]
    assert (
        "application/x-ndjson"
        in paths["/api/v1/rooms/{room_id}/export"]["get"]["responses"]["200"]["content"]
    )
