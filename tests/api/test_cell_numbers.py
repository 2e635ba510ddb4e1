"""A cell's number comes back as it was sent, on every read path (docs/protocol.md, numbers).

PostgreSQL's jsonb keeps a number as a decimal and forgets how it was written: `1e+16` comes back as
`10000000000000000`, an integer, which a typed client cannot send back (an integer beyond
+-(2^53 - 1) is refused). Each read here goes through the real database and a real client.
"""

from __future__ import annotations

from typing import Any

from engine.model.catalogue import CELLS_UPDATED
from engine.model.numbers import MAX_SAFE_INTEGER
from tests.api.conftest import Server, request
from tests.api.live_helpers import greet, join, of_type, resume, send, until, write_cell
from tests.api.rest_helpers import rest

# As written in the frame: the literal text matters (`5e15` is an exponent form of a float within
# the integer bound; the others are floats whose shortest form has an exponent).
SENT = {
    "A1": "5e15",
    "A2": "1e+16",
    "A3": "1.2345678901234567e19",
    "A4": "-1e300",
    "A5": "1e-7",
    "A6": "2.5",
    "A7": "1.0",
    "A8": str(MAX_SAFE_INTEGER),
    "A9": str(-MAX_SAFE_INTEGER),
}
EXPECTED = {
    cell: (type(v).__name__, v)
    for cell, v in {
        "A1": 5e15,
        "A2": 1e16,
        "A3": 1.2345678901234567e19,
        "A4": -1e300,
        "A5": 1e-7,
        "A6": 2.5,
        "A7": 1.0,
        "A8": MAX_SAFE_INTEGER,
        "A9": -MAX_SAFE_INTEGER,
    }.items()
}


def typed(values: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Each value with its JSON type as a typed client decodes it: 1e16 and 10000000000000000 differ."""
    return {cell: (type(v).__name__, v) for cell, v in values.items()}


def cells_frame(sheet: str, room: str, cmid: str) -> str:
    """A `cells_update` written by hand, so each number keeps its literal text."""
    cells = ", ".join(f'{{"cell_id": "{cell}", "value": {text}}}' for cell, text in SENT.items())
    return (
        f'{{"type": "cells_update", "sheet_id": "{sheet}", "room": "{room}", '
        f'"client_msg_id": "{cmid}", "cells": [{cells}]}}'
    )


async def test_a_cells_number_reads_back_as_sent_on_every_path(server: Server, room: str) -> None:
    sheet = f"s-{room}"
    async with server.connect(server.token("ann")) as ann, server.connect(server.token("bob")) as bob:
        await greet(ann), await greet(bob)
        since = (await join(ann, room))["seq"]
        await ann.send(cells_frame(sheet, room, f"{room}-w"))
        seen = await until(ann, of_type("ack", client_msg_id=f"{room}-w"))
        live = next(m for m in seen if m["type"] == "cells_updated")
        assert typed({c["cell_id"]: c["value"] for c in live["cells"]}) == EXPECTED
        written_at = live["seq"]

        state = await request(ann, {"type": "load_sheet", "sheet_id": sheet})
        assert typed({cell: c["value"] for cell, c in state["cells"].items()}) == EXPECTED, "load_sheet"

        replayed = await resume(bob, room, since)
        again = next(m for m in replayed if m["type"] == "cells_updated")
        assert typed({c["cell_id"]: c["value"] for c in again["cells"]}) == EXPECTED, "resume"

        for params in ({}, {"seq": written_at}):
            cells = await rest(server, "GET", f"/sheets/{sheet}/cells", roles=["auditor"], params=params)
            assert cells.status_code == 200, cells.text
            got = {cell: c["value"] for cell, c in cells.json()["cells"].items()}
            assert typed(got) == EXPECTED, f"REST cells {params}"
        history = {}
        for cell in SENT:
            page = await rest(server, "GET", f"/sheets/{sheet}/cells/{cell}/history", roles=["auditor"])
            assert page.status_code == 200, page.text
            history[cell] = page.json()["versions"][-1]["value"]
        assert typed(history) == EXPECTED, "REST cell history"
        events = await rest(server, "GET", f"/rooms/{room}/events", roles=["auditor"])
        logged = next(e for e in events.json()["events"] if e["type"] == CELLS_UPDATED)
        assert typed({c["cell_id"]: c["value"] for c in logged["data"]["cells"]}) == EXPECTED, "REST events"

        stale = {"type": "cell_update", "sheet_id": sheet, "room": room, "value": 0, "version": 0}
        for cell in EXPECTED:
            await send(ann, {**stale, "cell_id": cell, "client_msg_id": f"stale-{cell}"})
            refused = (await until(ann, of_type("error", client_msg_id=f"stale-{cell}")))[-1]
            assert refused["code"] == "VERSION_CONFLICT", refused
            assert typed({cell: refused["current"]["value"]}) == {cell: EXPECTED[cell]}, "VERSION_CONFLICT"

        # What a typed client read it may write back: the whole point of keeping the type.
        for cell, c in state["cells"].items():
            await write_cell(ann, room, sheet, cell, c["value"], cmid=f"back-{cell}")
