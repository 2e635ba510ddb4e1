"""The sheet app (/app) when access changes under a person: a room their refreshed token no longer
allows, a history that is not the one the page saw, a session (token) that is about to end or has
ended. What they see is checked on screenshots as well as in the page."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import cell, open_app_with, type_into, unique
from tests.browser.test_sheet_app import cell_versions


async def test_a_room_the_new_token_no_longer_allows_shows_that_access_ended(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    user = unique("carol")
    # token_expiring comes at half the lifetime: 8 s after the page opened.
    first = web.token(user, username="carol", roles=["editor"], rooms=[room], ttl=timedelta(seconds=16))
    carol = await open_app_with(browser, web, first, room, sheet)
    await type_into(carol.page, "A1", "mine")
    await expect(cell(carol.page, "A1")).to_have_text("mine")
    await expect(carol.page.locator("#cell-meta")).not_to_contain_text("saving")

    # Her new token (as the page is given one) allows other rooms only: the refresh takes her out.
    second = web.token(user, username="carol", roles=["editor"], rooms=["elsewhere-*"])
    await carol.page.evaluate("(token) => sessionStorage.setItem('collab.token', token)", second)

    banner = carol.page.locator("#banner")
    await expect(banner).to_be_visible(timeout=20_000)
    await expect(banner).to_contain_text(f"You no longer have access to {room}")
    await expect(carol.page.locator("#connection")).to_have_text("No access")
    await expect(carol.page.locator("#people li")).to_have_count(0)
    await carol.page.screenshot(path=tmp_path / "room-revoked.png")

    # The sheet stays readable, but typing in it no longer edits it.
    await type_into(carol.page, "A2", "lost")
    await expect(cell(carol.page, "A2")).to_have_text("")
    assert await cell_versions(web, sheet, "A1") == [("mine", user)]
    assert carol.problems() == []
    await carol.context.close()
