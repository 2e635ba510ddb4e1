"""The console's audit tab against the real server: what it shows is always of the room that is open,
its time filter keeps the seconds it names whole, and its scrubber reaches every event its timeline
lists."""

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
