"""The console (/console) when its token ends: the page stays where the person was, says the session
ended, and takes a new token pasted into the banner, as the sheet app does."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import open_app, open_page, type_into, unique


async def test_the_console_keeps_its_place_when_the_token_expires_and_takes_a_new_one(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    await type_into(alice.page, "B2", "100")
    await type_into(alice.page, "B2", "250")
    await expect(alice.page.locator("#connection")).to_have_attribute("data-queued", "0")

    # token_expiring comes at half the lifetime; the token ends 10 s after it was minted.
    user = unique("root")
    first = web.token(user, username="root", roles=["admin"], ttl=timedelta(seconds=10))
    admin = await open_page(browser, web, f"/console?tab=audit&room={room}", first, wait="#connection.ok")
    page = admin.page
    grid = page.locator("#replay-grid")
    await expect(grid).to_have_attribute("data-seq", "3")
    await page.locator("#scrubber").focus()
    await page.keyboard.press("ArrowLeft")
    await expect(grid).to_have_attribute("data-seq", "2")
    await expect(grid.locator('td[data-cell="B2"]')).to_have_text("100")

    banner = page.locator("#banner")
    await expect(banner).to_contain_text("Your session ends at", timeout=15_000)
    await expect(banner).to_contain_text("Your session ended", timeout=15_000)
    await expect(page.locator("#connection")).to_have_text("Session ended")
    await page.screenshot(path=tmp_path / "console-session-ended.png")
    # The page is where it was: same tab, same room, same position in its history.
    assert await page.locator(".token-gate").count() == 0
    await expect(page.locator("#tab-audit")).to_be_visible()
    await expect(grid).to_have_attribute("data-seq", "2")
    await expect(grid.locator('td[data-cell="B2"]')).to_have_text("100")
    # Figures asked for meanwhile are not answered with a token the server refuses: no error notices.
    await page.locator("#tabs button[data-tab=overview]").click()
    await page.locator("#tabs button[data-tab=audit]").click()
    await expect(page.locator(".toast.conflict")).to_have_count(0)

    # A token for someone else is refused on the spot; the person's own new one reconnects.
    await banner.locator("input").fill(web.token(unique("someone"), roles=["admin"]))
    await banner.get_by_role("button", name="Use this token").click()
    await expect(banner).to_contain_text("not for root")
    await banner.locator("input").fill(web.token(user, username="root", roles=["admin"]))
    await banner.get_by_role("button", name="Use this token").click()
    await expect(banner).to_be_hidden()
    await expect(page.locator("#connection")).to_have_text("Live")
    await page.locator("#scrub-next").click()  # the new token reads the room's history again
    await expect(grid).to_have_attribute("data-seq", "3")
    await expect(grid.locator('td[data-cell="B2"]')).to_have_text("250")
    assert admin.problems() == []
    for opened in (alice, admin):
        await opened.context.close()
