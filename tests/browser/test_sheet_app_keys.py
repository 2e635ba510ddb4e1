"""The sheet app (/app) from the keyboard, as a person moves about a spreadsheet: Tab and Shift+Tab,
Home and End, Ctrl+Home and Ctrl+End, Page Up and Page Down, with Shift extending the selection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import cell, open_app, unique


async def test_tab_shift_tab_home_end_and_page_keys_move_the_selection(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    dora = await open_app(browser, web, unique("dora"), room, sheet)
    page = dora.page
    await page.evaluate(
        "() => Promise.all([['B3', 'x'], ['E3', 5], ['C9', 'far']]"
        ".map(([id, v]) => window.collab.sheet.set(id, v)))"
    )
    name = page.locator("#cell-name")

    async def press(key: str, expected: str) -> None:
        await page.keyboard.press(key)
        await expect(name).to_have_text(expected, timeout=2000)

    await cell(page, "C3").click()
    await press("Tab", "D3")
    await press("Shift+Tab", "C3")  # back to the left, as in any spreadsheet
    await press("Shift+Tab", "B3")
    await press("Home", "A3")
    await press("End", "E3")  # the row's last cell holding a value
    await press("Control+Home", "A1")
    await press("Control+End", "E9")  # the last row and column holding values
    await press("Home", "A9")
    await press("PageUp", "A1")
    await press("PageDown", "A" + str(1 + await page.evaluate("() => window.collab.grid.pageRows()")))
    await page.screenshot(path=tmp_path / "page-down.png")

    # With Shift, Home and End extend the selection from where it was.
    await cell(page, "C3").click()
    await page.keyboard.press("Shift+End")
    await expect(name).to_have_text("E3")
    await expect(cell(page, "D3")).to_have_class("in-range")
    await expect(cell(page, "C3")).to_have_class("in-range")
    await page.keyboard.press("Shift+Home")
    await expect(name).to_have_text("A3")
    await expect(cell(page, "B3")).to_have_class("in-range")
    await expect(cell(page, "D3")).not_to_have_class("in-range")
    await page.screenshot(path=tmp_path / "shift-home.png")
    assert await page.evaluate("() => document.activeElement.id") == "grid-scroller"
    assert dora.problems() == []
    await dora.context.close()
