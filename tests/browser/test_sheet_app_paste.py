"""Copy and paste in the sheet app (/app) as spreadsheets do them: a value or a block pasted onto a
larger selection that it fits a whole number of times fills it, as one edit; a value holding a tab, a
line break or a quote goes on the clipboard quoted, and comes back whole when pasted."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import Opened, cell, copy, open_app, paste, unique


async def server_values(server: Server, sheet: str) -> dict[str, Any]:
    """Every cell of the sheet that holds a value, as the server has it."""
    token = server.token("auditor", roles=["auditor"])
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        found = await http.get(f"/api/v1/sheets/{sheet}/cells", headers={"Authorization": f"Bearer {token}"})
    assert found.status_code == 200, found.text
    return {cell_id: c["value"] for cell_id, c in found.json()["cells"].items() if c["value"] is not None}


async def model_values(opened: Opened) -> dict[str, Any]:
    """Every cell that holds a value as a page's sheet has it (the server's values it was sent)."""
    return await opened.page.evaluate(
        "() => Object.fromEntries([...window.collab.sheet.cells]"
        ".filter(([, c]) => c.value !== null).map(([id, c]) => [id, c.value]))"
    )


async def select(page: Any, first: str, last: str) -> None:
    await cell(page, first).click()
    await cell(page, last).click(modifiers=["Shift"])


async def count_ranges(opened: Opened) -> None:
    """From now on `window.ranges` lists the size of each range update the page receives."""
    await opened.page.evaluate(
        "() => { window.ranges = [];"
        " window.collab.client.on('cells_updated', (m) => window.ranges.push(m.cells.length)); }"
    )


def block(columns: str, rows: range, values: list[list[Any]]) -> dict[str, Any]:
    """`values` tiled over the columns and rows given, keyed by cell."""
    return {
        f"{col}{row}": values[i % len(values)][j % len(values[0])]
        for i, row in enumerate(rows)
        for j, col in enumerate(columns)
    }


async def test_one_value_pasted_onto_a_selected_range_fills_every_cell_as_one_edit(
    browser: Any, web: Server
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await count_ranges(bob)

    # One cell copied from a spreadsheet (its line break included), pasted onto B2:D5.
    await select(alice.page, "B2", "D5")
    await paste(alice.page, "7\r\n")
    await expect(cell(bob.page, "D5")).to_have_text("7")

    filled = block("BCD", range(2, 6), [[7]])
    assert len(filled) == 12
    assert await server_values(web, sheet) == filled
    assert await model_values(bob) == filled
    assert await bob.page.evaluate("window.ranges") == [12]  # one message for the whole range
    activity = alice.page.locator("#activity li", has_text="pasted")
    await expect(activity).to_have_count(1)
    await expect(activity).to_contain_text("You pasted 12 cells")
    # Bob is told of it in one line, not twelve.
    await expect(bob.page.locator("#activity li", has_text="alice changed")).to_have_text(
        [re.compile("alice changed 12 cells, B2 to D5$")]
    )
    await expect(bob.page.locator("#activity li", has_text="alice set")).to_have_count(0)
    # The selection is still the range filled.
    assert await alice.page.evaluate("window.collab.grid.range") == [1, 1, 3, 4]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_fill_of_more_cells_than_one_message_may_carry_is_refused_whole_and_said(
    browser: Any, web: Server
) -> None:
    """The whole sheet is 1560 cells, more than the server's 1000 a range update may carry: filling it
    writes nothing, rather than part of it, and the person is told why."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await select(alice.page, "A1", "Z60")
    await paste(alice.page, "x")
    notice = alice.page.locator(".toast")
    await expect(notice).to_contain_text("a cells_update carries at most 1000 cells, this one 1560")
    await expect(cell(alice.page, "A1")).to_have_text("")
    await expect(cell(alice.page, "Z60")).to_have_text("")
    assert await model_values(bob) == {}
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_block_fills_a_range_it_fits_a_whole_number_of_times_and_is_written_once_otherwise(
    browser: Any, web: Server
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await count_ranges(bob)

    # 2 by 2 onto 4 by 4: tiled, four times.
    await select(alice.page, "A1", "D4")
    await paste(alice.page, "a\tb\nc\td\n")
    await expect(cell(bob.page, "D4")).to_have_text("d")
    tiled = block("ABCD", range(1, 5), [["a", "b"], ["c", "d"]])
    assert await server_values(web, sheet) == tiled

    # 2 by 2 onto 3 by 3: three is no multiple of two, so the block is written once from F1.
    await select(alice.page, "F1", "H3")
    await paste(alice.page, "1\t2\n3\t4")
    await expect(cell(bob.page, "G2")).to_have_text("4")
    once = {"F1": 1, "G1": 2, "F2": 3, "G2": 4}
    # 2 by 2 onto Z59:Z60, at the sheet's last column: written once, and what falls outside is dropped.
    await select(alice.page, "Z59", "Z60")
    await paste(alice.page, "p\tq\nr\ts")
    await expect(cell(bob.page, "Z60")).to_have_text("r")
    edge = {"Z59": "p", "Z60": "r"}

    assert await server_values(web, sheet) == tiled | once | edge
    assert await model_values(bob) == tiled | once | edge
    assert await bob.page.evaluate("window.ranges") == [16, 4, 2]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


# What a spreadsheet puts on the clipboard for two rows of five cells: a value holding a line break,
# a tab or a quote is quoted, with its quotes doubled; an empty cell is an empty field.
SPREADSHEET_ROWS = "".join(
    (
        '"line one\nline two"\t"tab\there"\t"say ""hi"""\tplain\t42\n',
        '"5"" screen"\t"""hi"" there"\t\t\t\n',
    )
)
PASTED_AS_TYPED = '5" screen\t"hi" there\tx "y" z\t"open\n'


async def test_values_with_tabs_line_breaks_and_quotes_survive_a_copy_and_a_paste(
    browser: Any, web: Server, tmp_path: Any
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)

    await cell(alice.page, "A1").click()
    await paste(alice.page, SPREADSHEET_ROWS)
    await expect(cell(bob.page, "E1")).to_have_text("42")
    pasted = {
        "A1": "line one\nline two",
        "B1": "tab\there",
        "C1": 'say "hi"',
        "D1": "plain",
        "E1": 42,
        "A2": '5" screen',
        "B2": '"hi" there',
    }
    assert await server_values(web, sheet) == pasted

    # Text that is not quoted the spreadsheets' way is taken as it reads, quotes and all.
    await cell(alice.page, "A3").click()
    await paste(alice.page, PASTED_AS_TYPED)
    await expect(cell(bob.page, "D3")).to_have_text('"open')
    as_typed = {"A3": '5" screen', "B3": '"hi" there', "C3": 'x "y" z', "D3": '"open'}
    assert await server_values(web, sheet) == pasted | as_typed

    # Copied back, the two rows are what the spreadsheet had put on the clipboard, and pasted at A6
    # they arrive whole.
    await select(alice.page, "A1", "E2")
    copied = await copy(alice.page)
    assert copied == SPREADSHEET_ROWS.removesuffix("\n")
    await cell(alice.page, "A6").click()
    await paste(alice.page, copied)
    await expect(cell(bob.page, "E6")).to_have_text("42")
    again = {f"{key[0]}{int(key[1:]) + 5}": value for key, value in pasted.items()}
    assert await server_values(web, sheet) == pasted | as_typed | again
    assert await model_values(bob) == pasted | as_typed | again

    # A value holding a line break shows on one line: its row is as high as any other.
    await bob.page.screenshot(path=str(tmp_path / "bob.png"))
    for opened in (alice, bob):
        heights = await opened.page.evaluate(
            "() => ['A1', 'B1', 'A6', 'A9']"
            ".map((id) => document.querySelector(`td[data-cell=${id}]`).offsetHeight)"
        )
        assert len(set(heights)) == 1, heights
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_paste_without_text_changes_nothing(browser: Any, web: Server) -> None:
    """An image (or a file) on the clipboard is nothing a sheet can take: pasted onto a selection, it
    leaves every cell as it was, where taking it as an empty value would clear the selection."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    await alice.page.evaluate(
        "() => Promise.all(['B2', 'C3'].map((id) => window.collab.sheet.set(id, 'keep')))"
    )
    await select(alice.page, "B2", "C3")
    await alice.page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.setData('image/png', 'not text');
            const event = new ClipboardEvent('paste', {clipboardData: data, bubbles: true});
            document.activeElement.dispatchEvent(event);
        }"""
    )
    # An edit sent after the paste is answered after anything the paste sent.
    await alice.page.evaluate("() => window.collab.sheet.set('E5', 'after')")
    assert await server_values(web, sheet) == {"B2": "keep", "C3": "keep", "E5": "after"}
    await expect(alice.page.locator("#activity li", has_text="pasted")).to_have_count(0)
    assert alice.problems() == []
    await alice.context.close()
