"""The sheet app (/app) from the keyboard, as a person moves about a spreadsheet: Tab and Shift+Tab,
Home and End, Ctrl+Home and Ctrl+End, Page Up and Page Down, with Shift extending the selection; Enter
after a run of Tabs back to the column the run started in; Ctrl+Arrow to the edge of the data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import cell, open_app, unique

# A cell in the selected range, whatever other classes it has (`num` for a number).
IN_RANGE = re.compile(r"\bin-range\b")


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
    editor = page.locator("#grid .editor")

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


async def in_view(page: Any, cell_id: str) -> bool:
    """Whether a cell lies whole in the grid's visible area, below the column headers and right of
    the row headers that stay over the cells scrolled under them."""
    return await page.evaluate(
        """(id) => {
            const scroller = document.getElementById('grid-scroller');
            const s = scroller.getBoundingClientRect();
            const c = document.querySelector(`#grid td[data-cell="${id}"]`).getBoundingClientRect();
            const head = document.querySelector('#grid thead th').getBoundingClientRect().height;
            const side = document.querySelector('#grid tbody th').getBoundingClientRect().width;
            // The scrollbars are not part of the visible area: clientHeight and clientWidth leave them out.
            const [top, left] = [s.top + scroller.clientTop, s.left + scroller.clientLeft];
            return c.top >= top + head - 1 && c.bottom <= top + scroller.clientHeight + 1
                && c.left >= left + side - 1 && c.right <= left + scroller.clientWidth + 1;
        }""",
        cell_id,
    )


async def test_ctrl_arrow_jumps_to_the_edge_of_the_data_and_ctrl_shift_arrow_extends(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    dora = await open_app(browser, web, unique("dora"), room, sheet)
    page = dora.page
    # Row 3: a block B3:E3 and H3 alone. Column B: a block B3:B5, then B9 and B20 alone.
    values = [["B3", 1], ["C3", 2], ["D3", 3], ["E3", 4], ["H3", "x"], ["B4", 5], ["B5", 6]]
    values += [["B9", "nine"], ["B20", 20]]
    await page.evaluate(
        "(values) => Promise.all(values.map(([id, v]) => window.collab.sheet.set(id, v)))", values
    )
    await expect(cell(page, "B20")).to_have_text("20")
    scroller = page.locator("#grid-scroller")
    # An arrow key the page leaves to the browser scrolls the grid too, on top of the page's own move.
    await page.evaluate(
        "() => { window.unprevented = []; window.addEventListener('keydown', (e) =>"
        " e.key.startsWith('Arrow') && !e.defaultPrevented && window.unprevented.push(e.key)); }"
    )

    # Along a block to its last value, over empty cells to the next value, else to the sheet's edge.
    await cell(page, "B3").click()
    for key, at in (
        ("Control+ArrowRight", "E3"),
        ("Control+ArrowRight", "H3"),
        ("Control+ArrowRight", "Z3"),
        ("Control+ArrowLeft", "H3"),
        ("Control+ArrowLeft", "E3"),
        ("Control+ArrowLeft", "B3"),
        ("Control+ArrowLeft", "A3"),
        ("Control+ArrowRight", "B3"),  # from an empty cell, the value next to it
        ("Control+ArrowDown", "B5"),
        ("Control+ArrowDown", "B9"),
        ("Control+ArrowDown", "B20"),
        ("Control+ArrowDown", "B60"),
        ("Control+ArrowUp", "B20"),
        ("Control+ArrowUp", "B9"),
        ("Control+ArrowUp", "B5"),
        ("Control+ArrowUp", "B3"),
        ("Control+ArrowUp", "B1"),
    ):
        await press(page, key, at)
        # Scrolled to show the cell, as every move is, and no further by the browser's own keys.
        assert await in_view(page, at), f"{at} is not in view after {key}"
        if at == "B60":
            await page.screenshot(path=tmp_path / "ctrl-down-to-the-edge.png")
    assert await scroller.evaluate("(s) => [s.scrollLeft, s.scrollTop]") == [0, 0]
    # Cmd on a Mac.
    await press(page, "Meta+ArrowDown", "B3")

    # With Shift the selection is extended there from where it started.
    await cell(page, "C3").click()
    await press(page, "Control+Shift+ArrowRight", "E3")
    await press(page, "Control+Shift+ArrowDown", "E60")
    for inside in ("C3", "D30", "E60", "C60"):
        await expect(cell(page, inside)).to_have_class(IN_RANGE)
    for outside in ("B3", "F3", "B60"):
        await expect(cell(page, outside)).not_to_have_class(IN_RANGE)
    await press(page, "Control+Shift+ArrowUp", "E3")
    await expect(cell(page, "D30")).not_to_have_class(IN_RANGE)
    await expect(cell(page, "D3")).to_have_class(IN_RANGE)
    await page.screenshot(path=tmp_path / "ctrl-shift-range.png")

    assert await page.evaluate("window.unprevented") == []
    assert await page.evaluate("() => document.activeElement.id") == "grid-scroller"
    assert dora.problems() == []
    await dora.context.close()
