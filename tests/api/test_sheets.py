"""Sheets over real sockets: a range written as one event, opening a sheet with `load_sheet`, versions
that stay JavaScript-safe, and the state at head over REST."""

from __future__ import annotations

from typing import Any

from engine.log.store import EventStore
from engine.model.catalogue import CELLS_UPDATED, USER_JOINED_ROOM, USER_LEFT_ROOM
from engine.model.streams import room_stream
from tests.api.conftest import Server, make_settings, request, serve, wait_for_events
from tests.api.live_helpers import greet, join, of_type, pending, send, until
from tests.api.rest_helpers import rest


def paste(sheet: str, rows: int, cols: int, value: Any = "v", **extra: Any) -> dict[str, Any]:
    cells = [
        {"cell_id": f"{chr(65 + c)}{r + 1}", "value": f"{value}{r}{c}"}
        for r in range(rows)
        for c in range(cols)
    ]
    return {"type": "cells_update", "sheet_id": sheet, "cells": cells, **extra}


async def test_a_range_is_one_event_that_every_member_gets_once(
    server: Server, store: EventStore, room: str
) -> None:
    sheet = f"s-{room}"
    async with server.connect(server.token("ann")) as ann, server.connect(server.token("bob")) as bob:
        await greet(ann), await greet(bob)
        await join(ann, room), await join(bob, room)
        await pending(ann)
        await send(ann, paste(sheet, 10, 10, room=room, client_msg_id=f"{room}-paste-1"))
        mine = await until(ann, of_type("ack", client_msg_id=f"{room}-paste-1"))
        [updated] = [m for m in mine if m["type"] == "cells_updated"]
        assert len(updated["cells"]) == 100 and {c["version"] for c in updated["cells"]} == {1}
        assert (updated["sheet_id"], updated["user_id"], updated["client_msg_id"]) == (
            sheet,
            "ann",
            f"{room}-paste-1",
        )
        assert mine[-1]["seq"] == updated["seq"] == 3
        theirs = [m for m in await pending(bob) if m["type"] == "cells_updated"]
        assert theirs == [updated]
    events = await store.read_stream(room_stream(room))
    assert [e.type for e in events].count(CELLS_UPDATED) == 1


async def test_a_stale_cell_in_a_range_refuses_the_whole_range(
    server: Server, store: EventStore, room: str
) -> None:
    sheet = f"s-{room}"
    async with server.connect(server.token("ann")) as ann:
        await greet(ann)
        await join(ann, room)
        await request(
            ann, {"type": "cell_update", "sheet_id": sheet, "cell_id": "A1", "value": 1, "room": room}
        )
        await request(ann, {"type": "cell_update", "sheet_id": sheet, "cell_id": "A1", "value": 2})
        before = len(await store.read_stream(room_stream(room)))
        cells = [{"cell_id": "A1", "value": 9, "version": 1}, {"cell_id": "B1", "value": 9}]
        refusal = await request(
            ann, {"type": "cells_update", "sheet_id": sheet, "cells": cells, "client_msg_id": f"{room}-p"}
        )
        assert (refusal["type"], refusal["code"], refusal["client_msg_id"]) == (
            "error",
            "VERSION_CONFLICT",
            f"{room}-p",
        )
        assert refusal["conflicts"] == [
            {"cell_id": "A1", "current": {"value": 2, "formula": None, "version": 2, "user_id": "ann"}}
        ]
        assert len(await store.read_stream(room_stream(room))) == before


async def test_a_bad_range_is_refused_with_a_clear_error_and_changes_nothing(
    database_url: str, store: EventStore, room: str
) -> None:
    settings = make_settings(database_url, max_cells_per_update=5)
    async with serve(settings) as node, node.connect(node.token("ann")) as ann:
        await greet(ann)
        await join(ann, room)
        before = len(await store.read_stream(room_stream(room)))
        empty = await request(ann, {"type": "cells_update", "sheet_id": "s", "cells": []})
        twice = await request(
            ann,
            {
                "type": "cells_update",
                "sheet_id": "s",
                "cells": [{"cell_id": "A1", "value": 1}, {"cell_id": "A1", "value": 2}],
            },
        )
        too_many = await request(ann, paste("s", 2, 3))
        assert [m["code"] for m in (empty, twice, too_many)] == ["VALIDATION_ERROR"] * 3
        assert twice["details"][0]["msg"] == "each cell_id may appear once"
        assert too_many["limit"] == 5 and "at most 5 cells" in too_many["error"]
        viewer_token = node.token("vic", roles=["viewer"])
        async with node.connect(viewer_token) as vic:
            await greet(vic)
            await join(vic, room)
            denied = await request(vic, paste("s", 1, 1, room=room))
            assert denied["code"] == "PERMISSION_DENIED"
        # The viewer's join and the leave its closed socket records: nothing of the refused ranges.
        events = await wait_for_events(store, room_stream(room), before + 2)
        assert [e.type for e in events[before:]] == [USER_JOINED_ROOM, USER_LEFT_ROOM]


async def test_a_range_past_the_schemas_cap_gets_the_limit_error_and_costs_no_bad_frame(
    database_url: str, store: EventStore, room: str
) -> None:
    """Only a raised MAX_MESSAGE_BYTES admits a `cells_update` of more than 10,000 cells: it is
    refused as one over MAX_CELLS_PER_UPDATE is, VALIDATION_ERROR with the `limit`, and like that
    refusal it is no bad frame, so a client that sends a few keeps its connection."""
    settings = make_settings(database_url, max_message_bytes=1024 * 1024, bad_frames_per_window=1)
    huge = [{"cell_id": f"A{n}", "value": n} for n in range(1, 10_002)]
    async with serve(settings) as node, node.connect(node.token("ann")) as ann:
        await greet(ann)
        await join(ann, room)
        before = len(await store.read_stream(room_stream(room)))
        over_setting = await request(ann, paste("s", 101, 10, room=room))  # 1,010 cells
        assert (over_setting["code"], over_setting["limit"]) == ("VALIDATION_ERROR", 1000)
        for n in range(3):
            message = {"type": "cells_update", "sheet_id": "s", "room": room, "cells": huge}
            refused = await request(ann, {**message, "client_msg_id": f"huge-{n}"})
            assert (refused["type"], refused["code"], refused["limit"], refused["client_msg_id"]) == (
                "error",
                "VALIDATION_ERROR",
                1000,
                f"huge-{n}",
            )
            assert refused["error"] == "a cells_update carries at most 1000 cells, this one 10001"
        assert (await request(ann, {"type": "ping"}))["type"] == "pong"
        assert len(await store.read_stream(room_stream(room))) == before


async def test_load_sheet_answers_the_sheet_as_of_its_rooms_seq(server: Server, room: str) -> None:
    sheet = f"s-{room}"
    async with server.connect(server.token("ann")) as ann, server.connect(server.token("eve")) as eve:
        await greet(ann), await greet(eve)
        await join(ann, room)
        await send(ann, paste(sheet, 2, 2, room=room, client_msg_id=f"{room}-p1"))
        await until(ann, of_type("ack", client_msg_id=f"{room}-p1"))
        await send(
            ann,
            {
                "type": "cell_update",
                "sheet_id": sheet,
                "cell_id": "A1",
                "value": "new",
                "client_msg_id": f"{room}-c",
            },
        )
        await until(ann, of_type("ack", client_msg_id=f"{room}-c"))
        state = await request(ann, {"type": "load_sheet", "sheet_id": sheet})
        assert (state["type"], state["sheet_id"], state["room_id"], state["seq"]) == (
            "sheet_state",
            sheet,
            room,
            3,
        )
        assert sorted(state["cells"]) == ["A1", "A2", "B1", "B2"]
        assert {k: v for k, v in state["cells"]["A1"].items() if k != "updated_at"} == {
            "value": "new",
            "formula": None,
            "version": 2,
            "user_id": "ann",
        }
        never = await request(ann, {"type": "load_sheet", "sheet_id": f"never-{room}"})
        assert (never["room_id"], never["seq"], never["cells"]) == (None, 0, {})
        outsider = await request(eve, {"type": "load_sheet", "sheet_id": sheet})
        assert outsider["code"] == "PERMISSION_DENIED"


async def test_a_version_past_two_to_the_53_is_refused(server: Server, store: EventStore, room: str) -> None:
    async with server.connect(server.token("ann")) as ann:
        await greet(ann)
        await join(ann, room)
        update = {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": "A1", "room": room}
        refused = await request(ann, {**update, "value": 1, "version": 2**53 - 1})
        assert refused["code"] == "VALIDATION_ERROR" and "2**53" in refused["error"]
        accepted = await request(ann, {**update, "value": 1, "version": 2**53 - 2})
        assert (accepted["type"], accepted["version"]) == ("cell_updated", 2**53 - 1)
        assert (await request(ann, {**update, "value": 2}))["code"] == "VALIDATION_ERROR"


async def test_a_refused_first_edit_leaves_the_sheet_unclaimed(
    server: Server, store: EventStore, room: str
) -> None:
    sheet, other = f"s-{room}", f"{room}-other"
    async with server.connect(server.token("ann")) as ann:
        await greet(ann)
        await join(ann, room)
        await join(ann, other)
        single = {"type": "cell_update", "sheet_id": sheet, "cell_id": "A1", "room": room, "value": 1}
        refused = await request(ann, {**single, "version": 2**53 - 1})
        assert refused["code"] == "VALIDATION_ERROR" and "2**53" in refused["error"]
        cells = [{"cell_id": "A1", "value": 1}, {"cell_id": "A2", "value": 2, "version": 2**53 - 1}]
        ranged = {"type": "cells_update", "sheet_id": sheet, "room": room, "cells": cells}
        assert (await request(ann, ranged))["code"] == "VALIDATION_ERROR"
        assert await store.read_stream(f"sheet:{sheet}") == []
        # Still free: the first edit that is accepted decides the room, here the other one.
        accepted = await request(ann, {**single, "room": other})
        assert (accepted["type"], accepted["room_id"]) == ("cell_updated", other)


async def test_rest_state_without_seq_or_at_is_the_state_at_head(server: Server, room: str) -> None:
    sheet = f"s-{room}"
    async with server.connect(server.token("ann")) as ann:
        await greet(ann)
        await join(ann, room)
        await send(ann, paste(sheet, 1, 3, room=room, client_msg_id=f"{room}-p"))
        await until(ann, of_type("ack", client_msg_id=f"{room}-p"))
        cells = await rest(server, "GET", f"/sheets/{sheet}/cells", roles=["auditor"])
        assert cells.status_code == 200, cells.text
        assert cells.json()["seq"] == 2
        assert sorted(cells.json()["cells"]) == ["A1", "B1", "C1"]
        state = await rest(server, "GET", f"/rooms/{room}/state", roles=["auditor"])
        assert state.status_code == 200 and state.json()["seq"] == 2
        assert [u["user_id"] for u in state.json()["users"]] == ["ann"]
        both = await rest(
            server,
            "GET",
            f"/rooms/{room}/state",
            roles=["auditor"],
            params={"seq": 1, "at": "2026-01-01T00:00:00Z"},
        )
        assert both.status_code == 422
    history = await rest(server, "GET", f"/sheets/{sheet}/cells/B1/history", roles=["auditor"])
    assert [(v["version"], v["user_id"]) for v in history.json()["versions"]] == [(1, "ann")]
