"""The sheet app (/app) where copy, paste and undo meet the edges of what a person does: a column whose
last cells are empty, copied and pasted back."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import cell, copy, open_app, paste, unique
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
