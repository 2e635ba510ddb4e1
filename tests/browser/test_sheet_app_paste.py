"""Copy and paste in the sheet app (/app) as spreadsheets do them: a value holding a tab, a line break
or a quote goes on the clipboard quoted, and comes back whole when pasted."""

from __future__ import annotations

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
