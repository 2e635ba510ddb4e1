"""The console (/console) in headless Chromium against the real server: an auditor replays a room
with the scrubber and reads a cell's history; an admin removes a connection and the app shows it."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import cell, open_app, open_console, type_into, unique


async def test_the_auditor_scrubs_back_to_an_earlier_value_and_reads_the_cell_history(
    browser: Any, web: Server
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(alice.page, "B2", "100")
    await expect(cell(bob.page, "B2")).to_have_text("100")
    await type_into(bob.page, "B2", "250")
    await expect(cell(alice.page, "B2")).to_have_text("250")
    # seq: 1 alice joined, 2 bob joined, 3 alice's 100, 4 bob's 250

    auditor = await open_console(browser, web, "audra", "auditor", f"?tab=audit&room={room}")
    page = auditor.page
    await expect(page.locator("#tabs button[data-tab=connections]")).to_be_hidden()  # admins only
    await page.locator("#audit-form button[type=submit]").click()
    grid = page.locator("#replay-grid")
    await expect(grid).to_have_attribute("aria-busy", "false")  # the last opening has settled
    await expect(grid).to_have_attribute("data-seq", "4")
    await expect(grid.locator('td[data-cell="B2"]')).to_have_text("250")

    await page.locator("#scrubber").focus()
    await page.keyboard.press("ArrowLeft")  # one seq back, as a person drags the slider
    await expect(grid).to_have_attribute("data-seq", "3")
    await expect(grid.locator('td[data-cell="B2"]')).to_have_text("100")
    await expect(page.locator("#scrub-label")).to_contain_text("CellUpdated by alice")
    await page.keyboard.press("ArrowLeft")
    await expect(grid.locator('td[data-cell="B2"]')).to_have_text("")

    await page.locator("#timeline tr[data-seq='4']").click()  # the timeline moves the scrubber too
    await expect(grid.locator('td[data-cell="B2"]')).to_have_text("250")
    await grid.locator('td[data-cell="B2"]').click()
    versions = page.locator("#history-list tbody tr")
    await expect(versions).to_have_count(2)
    await expect(versions.nth(0)).to_contain_text("v1")
    await expect(versions.nth(0)).to_contain_text("100")
    await expect(versions.nth(0)).to_contain_text("alice")
    await expect(versions.nth(1)).to_contain_text("250")
    await expect(versions.nth(1)).to_contain_text("bob")

    async with page.expect_download() as download_info:
        await page.locator("#export").click()
    download = await download_info.value
    assert download.suggested_filename == f"{room}.ndjson"
    assert auditor.problems() == []
    for opened in (alice, bob, auditor):
        await opened.context.close()


async def test_the_admin_removes_a_connection_and_the_app_says_so(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    user = unique("carol")
    app = await open_app(browser, web, user, room, sheet)
    admin = await open_console(browser, web, "root", "admin", "?tab=connections")
    page = admin.page
    await expect(page.locator("#stat-cards, #connections").first).to_be_attached()
    remove = page.locator(f'#connections button[data-user="{user}"]')
    await expect(remove).to_have_count(1)
    await remove.click()
    await expect(page.locator(".toast")).to_contain_text("Removed")

    await expect(app.page.locator("#banner")).to_contain_text("An administrator removed this connection")
    await expect(app.page.locator("#connection")).to_have_text("Removed")
    await expect(app.page.locator("#connection")).to_have_attribute("data-state", "closed")
    await expect(remove).to_have_count(0)  # the list was refreshed

    # Removing is not a ban: the person may come back.
    await app.page.locator("#banner button").click()
    await expect(app.page.locator("#connection")).to_have_attribute("data-state", "ready")
    for opened in (app, admin):
        await opened.context.close()


async def test_the_admin_overview_shows_live_figures_and_a_chart(browser: Any, web: Server) -> None:
    admin = await open_console(browser, web, "root", "admin")
    page = admin.page
    await expect(page.locator('.stat[data-stat="Connections"] .value')).not_to_have_text("")
    # One point per refresh (every 2 s): the chart grows while the page is open.
    await expect(page.locator("#rate-chart")).to_have_attribute("data-points", re.compile(r"^([2-9]|\d\d+)$"))
    await expect(page.locator("#nodes tbody tr")).to_have_count(1)
    assert admin.problems() == []
    await admin.context.close()
