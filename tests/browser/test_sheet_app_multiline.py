"""Values with line breaks in the sheet app (/app), as spreadsheets edit them: the in-cell editor and
the formula bar show a value's lines and grow over the cells below to show them, Alt+Enter or
Ctrl+Enter types a line break, Enter still saves, and a value edited there keeps its line breaks.
On the grid a cell still shows its value on one line, so no row grows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import Opened, cell, open_app, unique
from tests.browser.test_sheet_app import cell_versions

THREE_LINES = "line one\nline two\nline three"


async def server_value(server: Server, sheet: str, cell_id: str) -> Any:
    """A cell's value as the server stores it, from the sheet's cells."""
    token = server.token("auditor", roles=["auditor"])
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        found = await http.get(f"/api/v1/sheets/{sheet}/cells", headers={"Authorization": f"Bearer {token}"})
    assert found.status_code == 200, found.text
    stored = found.json()["cells"].get(cell_id)
    return stored and stored["value"]


async def set_values(opened: Opened, values: dict[str, Any]) -> None:
    """Cells set by the client library, as another program or person sets them."""
    await opened.page.evaluate(
        "(values) => Promise.all(Object.entries(values).map(([id, v]) => window.collab.sheet.set(id, v)))",
        values,
    )


async def shown_on_grid(page: Any, cell_id: str) -> str:
    """A cell's text as the grid draws it (innerText: line breaks as the layout renders them)."""
    return await cell(page, cell_id).evaluate("(td) => td.innerText")


async def row_tops(page: Any, cell_ids: list[str]) -> list[float]:
    return await page.evaluate(
        "(ids) => ids.map((id) => document.querySelector(`#grid td[data-cell=${id}]`)"
        ".getBoundingClientRect().top)",
        cell_ids,
    )


async def row_heights(page: Any, cell_ids: list[str]) -> set[int]:
    return set(
        await page.evaluate(
            "(ids) => ids.map((id) => document.querySelector(`#grid td[data-cell=${id}]`).offsetHeight)",
            cell_ids,
        )
    )


async def box(locator: Any) -> dict[str, float]:
    """Where a field is drawn, and whether its text fits in it (no scrolling needed to see it)."""
    return await locator.evaluate(
        """(e) => { const r = e.getBoundingClientRect();
            return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, height: r.height,
                    client: e.clientHeight, scroll: e.scrollHeight}; }"""
    )


async def on_top(page: Any, x: float, y: float, selector: str) -> bool:
    """Whether the element drawn on top at a point of the page (the one a click there reaches)
    matches `selector`."""
    return await page.evaluate(
        "([x, y, selector]) => Boolean(document.elementFromPoint(x, y)?.matches(selector))", [x, y, selector]
    )


async def test_a_multi_line_value_opens_with_its_lines_in_the_cell_editor_and_the_formula_bar(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    page = alice.page
    editor = page.locator("#grid .editor")
    formula = page.locator("#formula")
    await set_values(alice, {"B3": THREE_LINES, "C3": "one line", "D3": 7, "E3": "crlf one\r\ncrlf two"})
    await expect(cell(page, "C3")).to_have_text("one line")

    # On the grid the value is on one line, a line break as a space: its row is as high as any.
    assert await shown_on_grid(page, "B3") == "line one line two line three"
    rows = ["B2", "B3", "B4", "B5", "B6", "C3"]
    assert len(await row_heights(page, rows)) == 1
    tops = await row_tops(page, rows)

    # A one-line value opens in an editor as high as its cell, as before.
    await cell(page, "C3").click()
    await page.keyboard.press("F2")
    await expect(editor).to_have_value("one line")
    td = await box(cell(page, "C3"))
    one_line = await box(editor)
    assert abs(one_line["height"] - (td["height"] + 2)) <= 1, (one_line, td)
    await page.keyboard.press("Escape")

    # F2 on the multi-line value: the editor shows its three lines, all of them, growing over the
    # cells below rather than pushing the rows down.
    await cell(page, "B3").click()
    await page.keyboard.press("F2")
    await expect(editor).to_have_value(THREE_LINES)
    grown = await box(editor)
    assert grown["height"] > 2 * one_line["height"], grown
    assert grown["scroll"] <= grown["client"], grown  # every line in sight, none scrolled away
    assert await row_tops(page, rows) == tops
    below = await box(cell(page, "B4"))
    assert await on_top(page, below["left"] + 20, below["top"] + 10, "#grid textarea.editor")
    await page.screenshot(path=tmp_path / "cell-editor-grown.png")
    # Left unchanged, it writes nothing.
    await page.keyboard.press("Enter")
    await expect(editor).to_have_count(0)
    await expect(page.locator("#cell-name")).to_have_text("B4")
    assert len(await row_heights(page, rows)) == 1

    # The formula bar shows the lines too while it is edited, grown over the grid, which stays put.
    await cell(page, "B3").click()
    bar = await box(formula)
    grid_top = (await box(page.locator("#grid-scroller")))["top"]
    await formula.click()
    await expect(formula).to_have_value(THREE_LINES)
    open_bar = await box(formula)
    assert open_bar["height"] > 2 * bar["height"], open_bar
    assert open_bar["scroll"] <= open_bar["client"], open_bar
    assert (await box(page.locator("#grid-scroller")))["top"] == grid_top
    assert await on_top(page, open_bar["left"] + 40, open_bar["bottom"] - 6, "textarea#formula")
    await page.screenshot(path=tmp_path / "formula-bar-grown.png")
    # Left unchanged, it writes nothing, and is one line high again.
    await formula.press("Enter")
    await expect(page.locator("#cell-name")).to_have_text("B4")
    assert (await box(formula))["height"] == bar["height"]
    await cell(page, "B3").click()
    await expect(formula).to_have_value(THREE_LINES)
    # A value whose line break is "\r\n" (a textarea reads it as "\n") left unchanged writes nothing.
    await cell(page, "E3").click()
    await page.keyboard.press("F2")
    await expect(editor).to_have_value("crlf one\ncrlf two")
    await page.keyboard.press("Enter")
    await cell(page, "E3").click()
    await formula.click()
    await formula.press("Enter")

    await set_values(alice, {"F9": "after"})  # answered after anything B3 could have had
    assert await cell_versions(web, sheet, "B3") == [(THREE_LINES, "alice")]
    assert await cell_versions(web, sheet, "E3") == [("crlf one\r\ncrlf two", "alice")]
    assert await row_tops(page, rows) == tops
    assert alice.problems() == []
    await alice.context.close()


async def test_one_character_changed_keeps_every_line_break(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    page = alice.page
    await set_values(alice, {"A2": "line one\nline twp\nline three", "B2": "alpha\nbeta"})
    await expect(cell(bob.page, "B2")).to_have_text("alpha beta")

    # A typo fixed in the cell: F2 puts the caret at the end, Up takes it to the end of line two.
    await cell(page, "A2").click()
    await page.keyboard.press("F2")
    await page.keyboard.press("ArrowUp")
    await page.keyboard.press("Backspace")
    await page.keyboard.type("o")
    await page.keyboard.press("Enter")
    await expect(cell(bob.page, "A2")).to_have_text("line one line two line three")
    assert await server_value(web, sheet, "A2") == THREE_LINES
    assert await bob.page.evaluate("() => window.collab.sheet.get('A2').value") == THREE_LINES

    # One character added in the formula bar.
    await cell(page, "B2").click()
    await page.locator("#formula").click()
    await page.keyboard.press("Control+End")
    await page.keyboard.type("!")
    await page.keyboard.press("Enter")
    await expect(cell(bob.page, "B2")).to_have_text("alpha beta!")
    await expect(page.locator("#cell-name")).to_have_text("B3")
    assert await server_value(web, sheet, "B2") == "alpha\nbeta!"
    assert await bob.page.evaluate("() => window.collab.sheet.get('B2').value") == "alpha\nbeta!"

    # Bob opens what Alice saved: every line is there.
    await cell(bob.page, "A2").dblclick()
    await expect(bob.page.locator("#grid .editor")).to_have_value(THREE_LINES)
    await bob.page.screenshot(path=tmp_path / "bob-editor.png")
    await bob.page.keyboard.press("Escape")
    assert await cell_versions(web, sheet, "A2") == [
        ("line one\nline twp\nline three", "alice"),
        (THREE_LINES, "alice"),
    ]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_alt_enter_or_ctrl_enter_types_a_line_break_and_enter_still_saves_and_moves(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    page = alice.page
    editor = page.locator("#grid .editor")
    name = page.locator("#cell-name")
    rows = [f"C{row}" for row in range(2, 14)]
    tops = await row_tops(page, rows)

    # Typed over a selected cell: Alt+Enter and Ctrl+Enter each start a new line in the editor, which
    # grows to show it; Enter saves the three lines and moves down.
    await cell(page, "C3").click()
    await page.keyboard.type("first")
    await page.keyboard.press("Alt+Enter")
    await page.keyboard.type("second")
    await page.keyboard.press("Control+Enter")
    await page.keyboard.type("third")
    await expect(editor).to_have_value("first\nsecond\nthird")
    grown = await box(editor)
    assert grown["scroll"] <= grown["client"], grown
    assert grown["height"] > 2 * (await box(cell(page, "C3")))["height"], grown
    await page.screenshot(path=tmp_path / "typing-three-lines.png")
    await page.keyboard.press("Enter")
    await expect(name).to_have_text("C4")
    await expect(cell(bob.page, "C3")).to_have_text("first second third")
    assert await server_value(web, sheet, "C3") == "first\nsecond\nthird"

    # After a run of Tabs, Enter still goes to the next row where the run started; Shift+Enter up.
    await cell(page, "B6").click()
    await page.keyboard.type("a")
    await page.keyboard.press("Tab")
    await page.keyboard.type("b")
    await page.keyboard.press("Alt+Enter")
    await page.keyboard.type("c")
    await page.keyboard.press("Enter")
    await expect(name).to_have_text("B7")
    await cell(page, "D10").click()
    await page.keyboard.type("x")
    await page.keyboard.press("Alt+Enter")
    await page.keyboard.type("y")
    await page.keyboard.press("Shift+Enter")
    await expect(name).to_have_text("D9")

    # Escape still discards, line breaks and all.
    await cell(page, "C3").click()
    await page.keyboard.type("gone")
    await page.keyboard.press("Alt+Enter")
    await page.keyboard.press("Escape")
    await expect(editor).to_have_count(0)
    await expect(name).to_have_text("C3")

    # In the formula bar too: Alt+Enter and Ctrl+Enter type a line break, Enter saves and moves down.
    await cell(page, "E12").click()
    await page.locator("#formula").click()
    await page.keyboard.type("one")
    await page.keyboard.press("Alt+Enter")
    await page.keyboard.type("two")
    await page.keyboard.press("Control+Enter")
    await page.keyboard.type("three")
    await expect(page.locator("#formula")).to_have_value("one\ntwo\nthree")
    await page.screenshot(path=tmp_path / "formula-typing.png")
    await page.keyboard.press("Enter")
    await expect(name).to_have_text("E13")

    await expect(cell(bob.page, "E12")).to_have_text("one two three")
    assert await server_value(web, sheet, "C6") == "b\nc"
    assert await server_value(web, sheet, "D10") == "x\ny"
    assert await cell_versions(web, sheet, "C3") == [("first\nsecond\nthird", "alice")]
    assert await server_value(web, sheet, "E12") == "one\ntwo\nthree"
    # Saved, each shows on one line, and no row grew.
    assert await shown_on_grid(bob.page, "C3") == "first second third"
    for opened in (alice, bob):
        assert len(await row_heights(opened.page, rows)) == 1
    assert await row_tops(page, rows) == tops
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()
