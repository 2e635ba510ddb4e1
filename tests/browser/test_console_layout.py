"""The console with the longest ids the API allows and long cell values: every card keeps its content
inside it, and the page never scrolls sideways."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import open_console, unique, write_cells

# A value without a space to break it at (a link, a hash), and a long sentence.
LINK = "https://example.com/reports/" + "a1b2c3d4" * 50
SENTENCE = "The quarterly figures were revised after the audit found " + "a duplicated entry " * 30


async def right_edge(locator: Any) -> float:
    box = await locator.bounding_box()
    assert box is not None
    return float(box["x"] + box["width"])


async def assert_inside(inner: Any, outer: Any) -> None:
    assert await right_edge(inner) <= await right_edge(outer) + 1


async def assert_no_sideways_scroll(page: Any) -> None:
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px window"


async def test_long_ids_and_values_stay_inside_their_cards(browser: Any, web: Server) -> None:
    room, sheet = unique("r" * 110), unique("s" * 110)  # 119 characters, of at most 128
    await write_cells(
        web, "alice", room, [(sheet, "A1", LINK), (sheet, "B1", SENTENCE), (sheet, "C1", "short")]
    )
    auditor = await open_console(browser, web, "audra", "auditor", f"?tab=audit&room={room}")
    page = auditor.page
    grid = page.locator("#replay-grid")
    await expect(grid).to_have_attribute("aria-busy", "false")
    await expect(grid.locator('td[data-cell="C1"]')).to_have_text("short")

    # Every column of the replay is within reach: a long value does not push the others out of sight.
    for column in ("A", "B", "C", "D"):
        await assert_inside(grid.locator("thead th", has_text=column).first, grid)
    await assert_inside(grid.locator('td[data-cell="C1"]'), grid)
    # The value is whole in the cell (cut short only on screen) and in its history.
    await expect(grid.locator('td[data-cell="A1"]')).to_have_text(LINK)
    await grid.locator('td[data-cell="A1"]').click()
    history = page.locator("#history-list table")
    await expect(history).to_contain_text(LINK)
    await assert_inside(history, page.locator(".scrubber-card"))
    # The timeline quotes a value by its first 60 characters, as the sheet app's activity does.
    await expect(page.locator("#timeline tr[data-seq='2']")).to_contain_text(f"A1 = {LINK[:59]}… (v1)")
    await assert_inside(page.locator("#timeline table"), page.locator(".timeline-card"))
    await assert_inside(page.locator("#export"), page.locator("#audit-form"))
    await assert_no_sideways_scroll(page)

    await page.locator("#tabs button[data-tab=rooms]").click()
    await page.locator("#rooms tbody tr", has_text=room).click()
    detail = page.locator("#room-detail")
    await expect(detail).to_contain_text(sheet)
    await assert_inside(detail.locator("..").locator(".card-head"), page.locator("main"))
    await assert_inside(detail, page.locator("main"))
    await assert_no_sideways_scroll(page)
    assert auditor.problems() == []
    await auditor.context.close()
