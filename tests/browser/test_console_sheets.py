"""The console's audit tab on a room with several sheets: what the replay grid and a cell's history
show is always the sheet the sheet picker names, whatever the auditor clicked before."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import open_console, unique, write_cells


async def test_a_timeline_row_of_another_sheet_replays_that_sheet(browser: Any, web: Server) -> None:
    room, first, second = unique("room"), unique("first"), unique("second")
    # seq 1 alice joined, 2 first!A1, 3 second!B2, 4 first!A1 again, 5 alice left
    await write_cells(
        web, "alice", room, [(first, "A1", "one"), (second, "B2", "two"), (first, "A1", "three")]
    )
    auditor = await open_console(browser, web, "audra", "auditor", f"?tab=audit&room={room}")
    page = auditor.page
    grid = page.locator("#replay-grid")
    await expect(page.locator("#audit-summary")).to_contain_text("seq 5")
    await expect(grid).to_have_attribute("aria-busy", "false")
    await page.locator("#audit-sheet").select_option(first)
    await expect(grid.locator('td[data-cell="A1"]')).to_have_text("three")

    # The auditor clicks the edit of the other sheet: they are shown that sheet, the edit in it.
    await page.locator("#timeline tr[data-seq='3']").click()
    await expect(grid).to_have_attribute("data-seq", "3")
    await expect(page.locator("#audit-sheet")).to_have_value(second)
    await expect(grid.locator('td[data-cell="B2"]')).to_have_text("two")
    await expect(grid.locator('td[data-cell="B2"]')).to_have_class("changed")

    # And back: an edit of the first sheet shows the first sheet as it was then.
    await page.locator("#timeline tr[data-seq='2']").click()
    await expect(page.locator("#audit-sheet")).to_have_value(first)
    await expect(grid).to_have_attribute("data-seq", "2")
    await expect(grid.locator('td[data-cell="A1"]')).to_have_text("one")
    await expect(grid.locator('td[data-cell="B2"]')).to_have_text("")

    # A row that belongs to no sheet (a join) moves the scrubber and keeps the sheet shown.
    await page.locator("#timeline tr[data-seq='1']").click()
    await expect(grid).to_have_attribute("data-seq", "1")
    await expect(page.locator("#audit-sheet")).to_have_value(first)
    assert auditor.problems() == []
    await auditor.context.close()


async def test_a_cell_history_follows_the_sheet_and_the_room_shown(browser: Any, web: Server) -> None:
    room, other_room = unique("room"), unique("room")
    first, second, third = unique("first"), unique("second"), unique("third")
    await write_cells(
        web, "alice", room, [(first, "A1", "one"), (first, "A1", "two"), (second, "B2", "else")]
    )
    await write_cells(web, "bob", other_room, [(third, "A1", "elsewhere")])
    auditor = await open_console(browser, web, "audra", "auditor", f"?tab=audit&room={room}")
    page = auditor.page
    grid = page.locator("#replay-grid")
    versions = page.locator("#history-list tbody tr")
    await expect(page.locator("#audit-summary")).to_contain_text("seq 5")
    await expect(grid).to_have_attribute("aria-busy", "false")
    await page.locator("#audit-sheet").select_option(first)
    await grid.locator('td[data-cell="A1"]').click()
    await expect(versions).to_have_count(2)
    await expect(versions.nth(1)).to_contain_text("two")

    # Another sheet of the room: A1 there was never written, and the history must not say otherwise.
    await page.locator("#audit-sheet").select_option(second)
    await expect(grid.locator('td[data-cell="B2"]')).to_have_text("else")
    await expect(page.locator("#history-list")).to_contain_text("A1 was never written")
    await expect(versions).to_have_count(0)
    await expect(page.locator("#history-title")).to_contain_text(second)

    # Back on the first sheet, its own history again.
    await page.locator("#audit-sheet").select_option(first)
    await expect(versions).to_have_count(2)
    await expect(page.locator("#history-title")).to_contain_text(first)

    # Another room: nothing of the first room's cell stays on screen.
    await page.locator("#audit-room").fill(other_room)
    await page.locator("#audit-form button[type=submit]").click()
    await expect(page.locator("#audit-summary")).to_contain_text("seq 3")
    await expect(grid.locator('td[data-cell="A1"]')).to_have_text("elsewhere")
    await expect(page.locator("#history")).to_be_hidden()
    await expect(grid.locator("td.picked")).to_have_count(0)
    # A cell never written is a 404 by the API's design, which the browser logs as a failed load.
    assert [p for p in auditor.problems() if "status of 404" not in p] == []
    await auditor.context.close()
