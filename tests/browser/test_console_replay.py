"""The console's replay grid shows every column the sheet app can write, and only real column names."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import open_app, open_console, type_into, unique


async def test_the_replay_grid_of_a_sheet_written_up_to_column_z(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    await type_into(alice.page, "Z3", "last column")
    auditor = await open_console(browser, web, "audra", "auditor", f"?tab=audit&room={room}")
    grid = auditor.page.locator("#replay-grid")
    await expect(grid.locator('td[data-cell="Z3"]')).to_have_text("last column")
    headers = await grid.locator("thead th").all_text_contents()
    assert headers == ["", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    for opened in (alice, auditor):
        await opened.context.close()
