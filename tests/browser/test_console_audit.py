"""The console's audit tab against the real server: what it shows is always of the room that is open,
its time filter keeps the seconds it names whole, its scrubber reaches every event its timeline
lists, and a large room opens at its newest events."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.api.conftest import Server, fresh_database, receive, serve
from tests.api.rest_helpers import rest
from tests.browser.conftest import web_settings
from tests.browser.pages import open_console, open_page, unique, write_cells

# What the browser logs for an answer of 403 or 404 the page asked for on purpose.
REFUSED = re.compile(r"status of 40[34]")


def unexpected(problems: list[str]) -> list[str]:
    return [p for p in problems if not REFUSED.search(p)]


async def settled(page: Any) -> None:
    await expect(page.locator("#replay-grid")).to_have_attribute("aria-busy", "false")


async def open_room(page: Any, room: str) -> None:
    await page.locator("#audit-room").fill(room)
    await page.locator("#audit-form button[type=submit]").click()


async def test_a_room_that_fails_to_open_leaves_the_open_room_on_screen_and_in_every_control(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, elsewhere, sheet = unique("audited"), unique("other"), unique("sheet")
    # seq 1 alice joined, 2 A1, 3 A2, 4 alice left
    await write_cells(web, "alice", room, [(sheet, "A1", "kept"), (sheet, "A2", "too")])
    await write_cells(web, "bob", elsewhere, [(unique("sheet"), "A1", "not yours")])
    # An auditor whose token admits the audited rooms only.
    token = web.token("audra", username="audra", roles=["auditor"], rooms=["audited-*"])
    auditor = await open_page(browser, web, f"/console?tab=audit&room={room}", token, wait="#connection.ok")
    page = auditor.page
    grid = page.locator("#replay-grid")
    await settled(page)
    await expect(page.locator("#audit-summary")).to_contain_text("seq 4")
    await expect(grid.locator('td[data-cell="A1"]')).to_have_text("kept")

    for asked, code in ((unique("audited-never"), "NOT_FOUND"), (elsewhere, "PERMISSION_DENIED")):
        await open_room(page, asked)
        await expect(page.locator(".toast").last).to_contain_text(code)
        await expect(page.locator(".toast").last).to_contain_text(asked)
        await settled(page)
        await page.screenshot(path=tmp_path / f"failed-open-{code}.png")
        # Everything still names the room on screen: the field, the address, the summary, the replay.
        assert f"room={room}" in page.url
        await expect(page.locator("#audit-room")).to_have_value(room)
        await expect(page.locator("#audit-summary")).to_contain_text("seq 4")
        await expect(grid).to_have_attribute("data-seq", "4")
        await expect(page.locator("#timeline tbody tr")).to_have_count(4)

        # And every control acts on it.
        async with page.expect_download() as download_info:
            await page.locator("#export").click()
        assert (await download_info.value).suggested_filename == f"{room}.ndjson"
        await page.locator("#filter-type").select_option("CellUpdated")
        await page.locator("#timeline-filter button[type=submit]").click()
        await expect(page.locator("#timeline tbody tr")).to_have_count(2)
        await page.locator("#filter-type").select_option("")
        await page.locator("#timeline-filter button[type=submit]").click()
        await expect(page.locator("#timeline tbody tr")).to_have_count(4)
        await page.locator("#scrub-prev").click()
        await expect(grid).to_have_attribute("data-seq", "3")
        await page.locator("#scrub-latest").click()
        await expect(grid).to_have_attribute("data-seq", "4")
        await settled(page)
        await expect(grid.locator('td[data-cell="A2"]')).to_have_text("too")

    # Switching tabs writes the address from the room open too.
    await page.locator("#tabs button[data-tab=rooms]").click()
    await page.locator("#tabs button[data-tab=audit]").click()
    assert f"room={room}" in page.url
    # The only failed requests are the two opens refused.
    assert unexpected(auditor.problems()) == []
    await auditor.context.close()


async def test_a_room_that_fails_to_open_first_leaves_no_room_open(browser: Any, web: Server) -> None:
    missing = unique("never")
    auditor = await open_console(browser, web, "audra", "auditor", f"?tab=audit&room={missing}")
    page = auditor.page
    await expect(page.locator(".toast").last).to_contain_text("NOT_FOUND")
    await settled(page)
    await expect(page.locator("#export")).to_be_disabled()
    assert "room=" not in page.url
    assert unexpected(auditor.problems()) == []
    await auditor.context.close()


# The second a time was recorded in, as a datetime-local field in the browser's zone holds it.
LOCAL_SECOND = """(ts) => {
    const d = new Date(ts);
    const two = (n) => String(n).padStart(2, '0');
    const day = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`;
    return `${day}T${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}"""


async def test_a_to_time_keeps_every_event_of_the_second_it_names(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    await write_cells(web, "alice", room, [(sheet, "A1", "within the second")])
    events = (await rest(web, "GET", f"/rooms/{room}/events")).json()["events"]
    edit = next(e for e in events if e["seq"] == 2)
    # Recorded part of the way into its second, as nearly every event is: the page shows it as that second.
    assert not re.search(r"\.0+Z$", edit["ts"]), edit["ts"]

    auditor = await open_console(browser, web, "audra", "auditor", f"?tab=audit&room={room}")
    page = auditor.page
    await settled(page)
    second = await page.evaluate(LOCAL_SECOND, edit["ts"])
    rows = page.locator("#timeline tbody tr")

    # To alone, then From and To both naming the edit's second: the edit is in either.
    await page.locator("#filter-until").fill(second)
    await page.locator("#timeline-filter button[type=submit]").click()
    await expect(page.locator("#timeline tr[data-seq='2']")).to_be_visible()
    await page.locator("#filter-since").fill(second)
    await page.locator("#timeline-filter button[type=submit]").click()
    await expect(page.locator("#timeline tr[data-seq='2']")).to_be_visible()
    await page.screenshot(path=tmp_path / "to-filter.png")
    # Every row shown was recorded in that second.
    for shown in await rows.all():
        recorded = await shown.locator("td").nth(1).locator("span").get_attribute("title")
        assert await page.evaluate(LOCAL_SECOND, recorded) == second
    assert auditor.problems() == []
    await auditor.context.close()


@pytest.fixture
async def lagging(server_url: str) -> AsyncIterator[Server]:
    """A server whose projection tables follow the log in steps 5 s apart: the room listing's seq
    trails the log for that long after an edit, as it does for up to 100 ms by default."""
    async with (
        fresh_database(server_url) as database_url,
        serve(web_settings(database_url, projection_interval_ms=5000)) as running,
    ):
        yield running


async def listed_seq(server: Server, room: str) -> int:
    found = await rest(server, "GET", f"/ws/rooms/{room}")
    return int(found.json()["seq"]) if found.status_code == 200 else 0


async def test_the_scrubber_reaches_the_newest_event_the_listing_has_not_folded_yet(
    browser: Any, lagging: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    async with lagging.connect(lagging.token("alice", username="alice", roles=["editor"])) as ws:
        assert (await receive(ws))["type"] == "connected"
        sent = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal sent
            sent += 1
            await ws.send(json.dumps({**message, "client_msg_id": f"m{sent}"}))
            while (await receive(ws)).get("type") != "ack":
                pass

        async def edit(cell: str, value: str) -> None:
            await send(
                {"type": "cell_update", "room": room, "sheet_id": sheet, "cell_id": cell, "value": value}
            )

        await send({"type": "join_room", "room_id": room})
        await edit("A1", "first")  # seq 2
        # Just after the listing folded seq 2, two more edits: it shows seq 2 for the next 5 s.
        async with asyncio.timeout(15):
            while True:
                if await listed_seq(lagging, room) >= 2:
                    break
                await asyncio.sleep(0.02)
        await edit("A1", "second")  # seq 3
        await edit("B1", "newest")  # seq 4
        auditor = await open_console(browser, lagging, "audra", "auditor", f"?tab=audit&room={room}")
        page = auditor.page
        grid = page.locator("#replay-grid")
        await settled(page)
        # The page read the room while the listing still said seq 2 (it only moves forward).
        assert await listed_seq(lagging, room) == 2, "the listing caught up before the page read it"

        await page.screenshot(path=tmp_path / "scrubber-end.png")
        await expect(page.locator("#timeline tr[data-seq='4']")).to_be_visible()
        await expect(page.locator("#scrubber")).to_have_attribute("max", "4")
        await expect(page.locator("#scrubber")).to_have_value("4")
        await expect(grid).to_have_attribute("data-seq", "4")
        await expect(grid.locator('td[data-cell="B1"]')).to_have_text("newest")
        await expect(page.locator("#audit-summary")).to_contain_text("seq 4")
        await page.locator("#timeline tr[data-seq='1']").click()
        await expect(grid).to_have_attribute("data-seq", "1")
        await page.locator("#timeline tr[data-seq='4']").click()  # the newest row replays its edit
        await expect(grid).to_have_attribute("data-seq", "4")
        await expect(grid.locator('td[data-cell="B1"]')).to_have_class("changed")
        await expect(grid.locator('td[data-cell="A1"]')).to_have_text("second")
        assert auditor.problems() == []
        await auditor.context.close()


async def test_a_large_room_opens_at_its_newest_events_and_loads_older_ones(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    # seq 1 alice joined, 2 A1, 3 alice left, 4 the broadcast, 5 bob joined, 6-155 his edits, 156 bob left
    await write_cells(web, "alice", room, [(sheet, "A1", "early")])
    notice = {"type": "notice", "title": "Audit", "message": "soon"}
    sent = await rest(web, "POST", f"/ws/rooms/{room}/broadcast", json=notice)
    assert sent.json()["seq"] == 4
    await write_cells(web, "bob", room, [(sheet, f"B{n % 50 + 1}", f"edit {n}") for n in range(150)])

    auditor = await open_console(browser, web, "audra", "auditor", f"?tab=audit&room={room}")
    page = auditor.page
    grid = page.locator("#replay-grid")
    rows = page.locator("#timeline tbody tr")
    older = page.locator("#timeline-older")
    await settled(page)
    await page.screenshot(path=tmp_path / "large-room-opened.png")
    # The newest 100 events, the scrubber at the latest and its label saying what happened there.
    await expect(rows).to_have_count(100)
    await expect(rows.first).to_have_attribute("data-seq", "57")
    await expect(rows.last).to_have_attribute("data-seq", "156")
    await expect(grid).to_have_attribute("data-seq", "156")
    await expect(page.locator("#scrub-label")).to_contain_text("UserLeftRoom")
    await expect(page.locator("#timeline-more")).to_be_hidden()

    # A filter the API refuses (From after To) leaves the rows, and what they load, as they were.
    await page.locator("#filter-since").fill("2020-01-02T00:00:00")
    await page.locator("#filter-until").fill("2020-01-01T00:00:00")
    await page.locator("#timeline-filter button[type=submit]").click()
    await expect(page.locator(".toast").last).to_contain_text("VALIDATION_ERROR")
    await expect(older).to_be_visible()
    await expect(rows).to_have_count(100)
    await page.locator("#filter-since").fill("")
    await page.locator("#filter-until").fill("")

    # Older events on demand, down to the room's first.
    await older.click()
    await expect(rows).to_have_count(156)
    await expect(rows.first).to_have_attribute("data-seq", "1")
    await expect(older).to_be_hidden()
    await page.locator("#timeline tr[data-seq='2']").click()
    await expect(grid.locator('td[data-cell="A1"]')).to_have_text("early")
    await expect(page.locator("#scrub-label")).to_contain_text("CellUpdated by alice")

    # A type filter shows the newest events of that type the same way.
    await page.locator("#filter-type").select_option("CellUpdated")
    await page.locator("#timeline-filter button[type=submit]").click()
    await expect(rows).to_have_count(100)
    await expect(rows.first).to_have_attribute("data-seq", "56")
    await expect(rows.last).to_have_attribute("data-seq", "155")
    await older.click()
    await expect(rows).to_have_count(151)
    await expect(rows.first).to_have_attribute("data-seq", "2")
    await expect(older).to_be_hidden()
    # One rare event far back: found without a click per hundred events.
    await page.locator("#filter-type").select_option("RoomMessageBroadcast")
    await page.locator("#timeline-filter button[type=submit]").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-seq", "4")
    await expect(older).to_be_hidden()
    await page.screenshot(path=tmp_path / "large-room-filtered.png")

    # The label at any seq says what happened there, whether or not the timeline lists it.
    await page.locator("#scrub-latest").click()
    await settled(page)
    await expect(grid).to_have_attribute("data-seq", "156")
    await expect(page.locator("#scrub-label")).to_contain_text("UserLeftRoom")
    assert [p for p in auditor.problems() if "status of 422" not in p] == []
    await auditor.context.close()


async def room_log(server: Server, room: str) -> list[dict[str, Any]]:
    """Every event of the room, cursors and typing included, read page by page."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"include_volatile": "true", "limit": 1000}
    while True:
        page = (await rest(server, "GET", f"/rooms/{room}/events", params=params)).json()
        found += page["events"]
        if page["next_cursor"] is None:
            return found
        params["cursor"] = page["next_cursor"]


async def test_older_events_with_cursors_and_typing_join_those_shown_without_a_gap(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    # Each edit comes with a cursor move and typing in the cell: more events than seqs, so a window
    # of seqs holds more than a page and the page narrows it.
    async with web.connect(web.token("alice", username="alice", roles=["editor"])) as ws:
        assert (await receive(ws))["type"] == "connected"
        await ws.send(json.dumps({"type": "join_room", "room_id": room, "client_msg_id": "join"}))
        while (await receive(ws)).get("type") != "ack":
            pass
        for n in range(220):
            cell = f"C{n % 40 + 1}"
            for volatile in (
                {"type": "cursor_move", "room": room, "x": n, "y": n, "cell": cell},
                {"type": "typing_start", "room": room, "cell_id": cell},
                {"type": "typing_stop", "room": room, "cell_id": cell},
            ):
                await ws.send(json.dumps(volatile))
            edit = {"type": "cell_update", "room": room, "sheet_id": sheet, "cell_id": cell, "value": n}
            await ws.send(json.dumps({**edit, "client_msg_id": f"m{n}"}))
            while (await receive(ws)).get("type") != "ack":
                pass
    # The log once the leave and the last volatile events are in it.
    logged: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while True:
            again = await room_log(web, room)
            if again == logged and any(e["type"] == "UserLeftRoom" for e in again):
                break
            logged = again
            await asyncio.sleep(0.3)
    assert len(logged) > 3 * 222, len(logged)  # seq 1 the join, 2-221 the edits, 222 the leave

    auditor = await open_console(browser, web, "audra", "auditor", f"?tab=audit&room={room}")
    page = auditor.page
    rows = page.locator("#timeline tbody tr")
    older = page.locator("#timeline-older")
    await settled(page)
    await page.locator("#filter-volatile").check()
    await page.locator("#timeline-filter button[type=submit]").click()
    # The newest hundred seqs, with what happened between them.
    seqs = ["" if e["seq"] is None else str(e["seq"]) for e in logged]
    newest = seqs[seqs.index("122") + 1 :]
    await expect(rows).to_have_count(len(newest))
    assert await rows.evaluate_all("(rows) => rows.map((row) => row.dataset.seq)") == newest
    while await older.is_visible():
        await older.click()
        await expect(older).to_be_enabled()
    await page.screenshot(path=tmp_path / "volatile-timeline.png")
    await expect(rows).to_have_count(len(seqs))
    assert await rows.evaluate_all("(rows) => rows.map((row) => row.dataset.seq)") == seqs
    assert auditor.problems() == []
    await auditor.context.close()


async def test_leaving_out_cursors_and_typing_drops_a_cursor_type_picked_before(
    browser: Any, web: Server
) -> None:
    """A cursor type picked while cursors and typing were listed, then the box unchecked, asked the API
    for cursor events without cursors, which it refuses: the page answered with an error and kept the
    rows. The pick now goes back to every type."""
    room = unique("room")
    async with web.connect(web.token("alice", username="alice", roles=["editor"])) as ws:
        assert (await receive(ws))["type"] == "connected"
        await ws.send(json.dumps({"type": "join_room", "room_id": room, "client_msg_id": "join"}))
        while (await receive(ws)).get("type") != "ack":
            pass
        await ws.send(json.dumps({"type": "cursor_move", "room": room, "x": 1, "y": 2, "cell": "B2"}))
        edit = {"type": "cell_update", "room": room, "sheet_id": unique("sheet"), "cell_id": "B2", "value": 1}
        await ws.send(json.dumps({**edit, "client_msg_id": "m1"}))
        while (await receive(ws)).get("type") != "ack":
            pass

    auditor = await open_console(browser, web, "audra", "auditor", f"?tab=audit&room={room}")
    page = auditor.page
    rows = page.locator("#timeline tbody tr")
    filter_button = page.locator("#timeline-filter button[type=submit]")
    await settled(page)
    await page.locator("#filter-volatile").check()
    await filter_button.click()
    await expect(rows.filter(has_text="CursorMoved")).to_have_count(1)
    await page.locator("#filter-type").select_option("CursorMoved")
    await filter_button.click()
    await expect(rows).to_have_count(1)

    await page.locator("#filter-volatile").uncheck()
    await expect(page.locator("#filter-type")).to_have_value("")
    await filter_button.click()
    await expect(rows.filter(has_text="CellUpdated")).to_have_count(1)
    await expect(rows.filter(has_text="CursorMoved")).to_have_count(0)
    await expect(page.locator(".toast")).to_have_count(0)
    assert auditor.problems() == []
    await auditor.context.close()


async def test_a_timeline_row_is_picked_from_the_keyboard(browser: Any, web: Server, tmp_path: Path) -> None:
    """Rows that a click picks (timeline, cell history, rooms) were out of reach of the keyboard: each
    is now a stop of Tab, and Enter or Space picks it as a click does."""
    room, sheet = unique("room"), unique("sheet")
    await write_cells(
        web, "alice", room, [(sheet, "A1", "one"), (sheet, "A1", "two"), (sheet, "B1", "three")]
    )
    auditor = await open_console(browser, web, "audra", "auditor", f"?tab=audit&room={room}")
    page = auditor.page
    await settled(page)
    rows = page.locator("#timeline tbody tr")
    first_edit = rows.filter(has_text="= one")
    await expect(first_edit).to_have_count(1)
    seq = await first_edit.get_attribute("data-seq")
    await first_edit.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#scrubber")).to_have_value(str(seq))
    await expect(page.locator('#replay-grid td[data-cell="A1"]')).to_have_text("one")

    # Tab goes on to the next row; Space picks it.
    await page.keyboard.press("Tab")
    await expect(rows.filter(has_text="= two")).to_be_focused()
    await page.keyboard.press("Space")
    await expect(page.locator('#replay-grid td[data-cell="A1"]')).to_have_text("two")
    await page.screenshot(path=tmp_path / "keyboard-pick.png")
    assert unexpected(auditor.problems()) == []
    await auditor.context.close()
