"""The sheet app (/app) from the keyboard, as a person moves about a spreadsheet: Tab and Shift+Tab,
Home and End, Ctrl+Home and Ctrl+End, Page Up and Page Down, with Shift extending the selection; Enter
after a run of Tabs back to the column the run started in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import cell, open_app, unique


async def press(page: Any, key: str, expected: str) -> None:
    """Press a key on the page and wait for the selected cell's name to read `expected`."""
    await page.keyboard.press(key)
    await expect(page.locator("#cell-name")).to_have_text(expected, timeout=2000)


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

    await cell(page, "C3").click()
    await press(page, "Tab", "D3")
    await press(page, "Shift+Tab", "C3")  # back to the left, as in any spreadsheet
    await press(page, "Shift+Tab", "B3")
    await press(page, "Home", "A3")
    await press(page, "End", "E3")  # the row's last cell holding a value
    await press(page, "Control+Home", "A1")
    await press(page, "Control+End", "E9")  # the last row and column holding values
    await press(page, "Home", "A9")
    await press(page, "PageUp", "A1")
    await press(page, "PageDown", "A" + str(1 + await page.evaluate("() => window.collab.grid.pageRows()")))
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


async def test_enter_after_a_run_of_tabs_goes_to_the_next_row_where_the_run_started(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    dora = await open_app(browser, web, unique("dora"), room, sheet)
    page = dora.page
    editor = page.locator("#grid input.editor")

    # A row typed as a person types one: a value, Tab, a value, Tab, a value, Enter. Each is saved,
    # and the next row starts under the first value, not the last.
    await cell(page, "B2").click()
    await page.keyboard.type("name")
    await press(page, "Tab", "C2")
    await page.keyboard.type("12")
    await press(page, "Tab", "D2")
    await page.keyboard.type("ok")
    await press(page, "Enter", "B3")
    for cell_id, text in (("B2", "name"), ("C2", "12"), ("D2", "ok")):
        await expect(cell(page, cell_id)).to_have_text(text)
    # The next run starts afresh from where Enter left the selection.
    await page.keyboard.type("next")
    await press(page, "Tab", "C3")
    await page.keyboard.type("13")
    await press(page, "Enter", "B4")
    await page.screenshot(path=tmp_path / "after-tab-run.png")

    # Tabs from the grid, with a Shift+Tab back inside the run: Enter on the grid still opens the
    # editor, and Enter in it goes to the run's first column.
    await cell(page, "B6").click()
    await press(page, "Tab", "C6")
    await press(page, "Tab", "D6")
    await press(page, "Shift+Tab", "C6")
    await page.keyboard.press("Enter")
    await expect(editor).to_be_focused()
    await press(page, "Enter", "B7")

    # Shift+Enter in the editor goes up, to the run's first column too.
    await cell(page, "B10").click()
    await press(page, "Tab", "C10")
    await press(page, "Tab", "D10")
    await page.keyboard.press("F2")
    await expect(editor).to_be_focused()
    await press(page, "Shift+Enter", "B9")

    # The formula bar's Enter goes where the editor's does.
    await cell(page, "B12").click()
    await press(page, "Tab", "C12")
    await page.locator("#formula").click()
    await page.keyboard.type("bar")
    await press(page, "Enter", "B13")
    await expect(cell(page, "C12")).to_have_text("bar")

    # Any other move ends the run: an arrow, a click, Home. Enter then goes straight down.
    for row, end_run, at in ((15, "ArrowRight", "E15"), (17, "ArrowDown", "D18"), (20, "Home", "A20")):
        await cell(page, f"B{row}").click()
        await press(page, "Tab", f"C{row}")
        await press(page, "Tab", f"D{row}")
        await press(page, end_run, at)
        await page.keyboard.press("Enter")
        await expect(editor).to_be_focused()
        await press(page, "Enter", f"{at[0]}{int(at[1:]) + 1}")
    await cell(page, "B22").click()
    await press(page, "Tab", "C22")
    await cell(page, "F22").click()
    await page.keyboard.type("x")
    await press(page, "Enter", "F23")

    assert dora.problems() == []
    await dora.context.close()
