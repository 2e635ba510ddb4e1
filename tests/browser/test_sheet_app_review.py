"""The sheet app (/app) at the edges of what people do: a column whose last cells are empty, copied and
pasted back; another person's name tag moving below their cell as the grid is scrolled, under their
pointer's name; a range of a thousand cells someone else filled, flashed on the others' pages; typing
on a selected cell the grid was scrolled away from."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import cell, copy, open_app, open_app_with, paste, unique
from tests.browser.test_sheet_app import LABEL_OVER_TAG
from tests.browser.test_sheet_app_keys import in_view
from tests.browser.test_sheet_app_paste import select, server_values


async def test_a_copied_column_ending_in_empty_cells_pastes_back_with_them(browser: Any, web: Server) -> None:
    """A column copied with empty cells at its end is that many rows: pasted, the empty cells clear
    theirs, and onto a range twice its height the column fills it twice. Its text must say so: rows
    joined by line breaks alone end in one that reads as closing the last row, not as an empty one."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    page = alice.page
    await page.evaluate(
        "() => Promise.all([['A1', 'x'], ['C1', 1], ['C2', 2], ['C3', 3], ['C4', 4], ['E2', 'keep']]"
        ".map(([id, v]) => window.collab.sheet.set(id, v)))"
    )

    # A1:A2, "x" over an empty cell, onto C1:C4: repeated twice, every second cell cleared.
    await select(page, "A1", "A2")
    copied = await copy(page)
    await select(page, "C1", "C4")
    await paste(page, copied)
    await expect(cell(page, "C2")).to_have_text("")
    await expect(cell(page, "C3")).to_have_text("x")
    # A1:A3, "x" over two empty cells, onto E1: E2 and E3 are cleared, as copied.
    await select(page, "A1", "A3")
    copied = await copy(page)
    await cell(page, "E1").click()
    await paste(page, copied)
    await expect(cell(page, "E2")).to_have_text("")

    assert await server_values(web, sheet) == {"A1": "x", "C1": "x", "C3": "x", "E1": "x"}
    assert alice.problems() == []
    await alice.context.close()


async def test_a_pointer_name_gives_way_to_a_tag_moved_below_its_cell_by_a_scroll(
    browser: Any, web: Server, tmp_path: Any
) -> None:
    """Alice's pointer rests over the cell she selected, its name just below the cell. Bob scrolls
    until that cell is his top visible row: her tag goes below the cell, where her pointer's name is,
    and the tag alone names her there, as it does when her pointer comes to rest over her tag;
    scrolled back, the tag goes above the cell and the pointer has its name again."""
    room, sheet = unique("room"), unique("sheet")
    alice_id = unique("u")
    alice_token = web.token(alice_id, username="Alexandra", roles=["editor"])
    alice = await open_app_with(browser, web, alice_token, room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await cell(bob.page, "H20").click()
    await cell(alice.page, "E10").click()
    box = await cell(alice.page, "E10").bounding_box()
    assert box
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6
    await alice.page.mouse.move(x, y)

    selection = bob.page.locator(f'.remote-selection[data-user="{alice_id}"]')
    pointer = bob.page.locator(f'.remote-pointer[data-user="{alice_id}"]')
    await expect(selection).to_have_attribute("data-cell", "E10")
    # Her pointer on Bob's screen where hers is on her own, at the end of its movement's transition.
    await bob.page.wait_for_function(
        """([user, x, y]) => {
            const pointer = document.querySelector(`.remote-pointer[data-user="${user}"]`);
            const box = pointer.getBoundingClientRect();
            return Math.abs(box.left - x) < 2 && Math.abs(box.top - y) < 2;
        }""",
        arg=[alice_id, x, y],
    )
    await expect(pointer.locator(".name")).to_be_visible()
    assert not await bob.page.evaluate(LABEL_OVER_TAG, alice_id)

    scroll_to_row_10 = """() => {
        const grid = window.collab.grid;
        grid.scroller.scrollTo(0, grid.rect('E10').y - grid.rect('A1').y);
    }"""
    await bob.page.evaluate(scroll_to_row_10)
    await expect(selection).to_have_class(re.compile(r"\btag-below\b"))
    await bob.page.screenshot(path=str(tmp_path / "scrolled.png"))
    assert not await bob.page.evaluate(LABEL_OVER_TAG, alice_id)

    await bob.page.evaluate("() => window.collab.grid.scroller.scrollTo(0, 0)")
    await expect(selection).not_to_have_class(re.compile(r"\btag-below\b"))
    await expect(pointer.locator(".name")).to_be_visible()
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_range_someone_else_fills_flashes_without_freezing_the_page(
    browser: Any, web: Server
) -> None:
    """One value pasted onto A1:Z38 is 988 cells changed in one message, each flashed on Bob's page.
    Restarting each cell's flash made the browser lay out the whole grid once per cell: Bob's page
    stood still for over a second, every time anyone filled a range, where applying the cells
    themselves takes a tenth of that."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    # Counted by the browser itself (its layouts, not a time, which a loaded machine would stretch).
    devtools = await bob.context.new_cdp_session(bob.page)
    await devtools.send("Performance.enable")

    async def layouts() -> int:
        metrics = (await devtools.send("Performance.getMetrics"))["metrics"]
        return int(next(m["value"] for m in metrics if m["name"] == "LayoutCount"))

    before = await layouts()
    await select(alice.page, "A1", "Z38")
    await paste(alice.page, "x")
    await expect(cell(bob.page, "Z38")).to_have_text("x")
    await expect(cell(bob.page, "A1")).to_have_class(re.compile(r"\bflash\b"))
    await expect(cell(bob.page, "Z38")).to_have_class(re.compile(r"\bflash\b"))
    # A few layouts for the message (and the frames drawn meanwhile), not one for each of 988 cells.
    assert await layouts() - before < 50
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_typing_on_a_selected_cell_scrolled_out_of_view_brings_its_editor_into_view(
    browser: Any, web: Server, tmp_path: Any
) -> None:
    """A person selects B5, scrolls the grid away with the mouse wheel to look at something else, and
    types, or presses F2 or Enter: as in any spreadsheet the grid scrolls back to the cell, whose
    editor opened out of sight (under the headers), so that they typed blind."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    page = alice.page
    editor = page.locator("#grid .editor")
    for start in ("h", "F2", "Enter"):
        await cell(page, "B5").click()
        await page.evaluate("() => window.collab.grid.scroller.scrollTo(600, 900)")
        assert not await in_view(page, "B5")
        await page.keyboard.press(start)
        await expect(editor).to_be_focused()
        await page.screenshot(path=str(tmp_path / f"typed-{start}.png"))
        assert await in_view(page, "B5"), start
        await page.keyboard.type("ello")
        await page.keyboard.press("Enter")
        await expect(cell(page, "B5")).to_contain_text("ello")
    assert alice.problems() == []
    await alice.context.close()
