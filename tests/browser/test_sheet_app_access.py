"""The sheet app (/app) when access changes under a person: a room their refreshed token no longer
allows, a history that is not the one the page saw, a session (token) that is about to end or has
ended. What they see is checked on screenshots as well as in the page."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import cell, open_app, open_app_with, type_into, unique
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
    await expect(carol.page.locator("#connection")).to_have_attribute("data-queued", "0")

    # Her new token (as the page is given one) allows other rooms only: the refresh takes her out.
    second = web.token(user, username="carol", roles=["editor"], rooms=["elsewhere-*"])
    await carol.page.evaluate("(token) => sessionStorage.setItem('collab.token', token)", second)

    banner = carol.page.locator("#banner")
    await expect(banner).to_be_visible(timeout=20_000)
    await expect(banner).to_contain_text(f"You no longer have access to {room}")
    await expect(carol.page.locator("#connection")).to_have_text("No access")
    await expect(carol.page.locator("#people li")).to_have_count(0)
    # Analysing the sheet or uploading a file to the room would be refused as well.
    await expect(carol.page.locator("#ai-run")).to_be_disabled()
    await expect(carol.page.locator("#upload-input")).to_be_disabled()
    await carol.page.screenshot(path=tmp_path / "room-revoked.png")

    # The sheet stays readable, but typing in it no longer edits it.
    await type_into(carol.page, "A2", "lost")
    await expect(cell(carol.page, "A2")).to_have_text("")
    assert await cell_versions(web, sheet, "A1") == [("mine", user)]
    assert carol.problems() == []
    await carol.context.close()


async def test_after_a_history_reset_the_sheet_shows_the_servers_values_and_an_edit_on_the_old_is_refused(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(bob.page, "A1", "on the server")
    await expect(cell(alice.page, "A1")).to_have_text("on the server")

    # What Alice's page saw is a history the server no longer has (it was restored from an older
    # backup): a later seq, and cells the server never had or no longer has, shown on her screen.
    await alice.page.evaluate(
        """(room) => {
            const { client, sheet, grid } = window.collab;
            client.rooms.get(room).seq += 100;
            sheet.cells.set('A1', { value: 'lost history', formula: null, version: 7, user_id: null });
            sheet.cells.set('B2', { value: 'gone', formula: null, version: 3, user_id: null });
            for (const id of ['A1', 'B2']) grid.render(id, sheet.get(id));
        }""",
        room,
    )
    await expect(cell(alice.page, "B2")).to_have_text("gone")

    # Offline, she changes the value she sees; its version would pass the server's check.
    await alice.context.set_offline(True)
    await expect(alice.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await type_into(alice.page, "A1", "alice")
    await alice.context.set_offline(False)

    notice = alice.page.locator(".toast.conflict", has_text="not applied")
    await expect(notice).to_contain_text("A1")
    await expect(notice).to_contain_text("on the server")
    await expect(alice.page.locator(".toast.info", has_text="reloaded")).to_be_visible()
    await expect(cell(alice.page, "A1")).to_have_text("on the server")
    await expect(cell(alice.page, "B2")).to_have_text("")
    await alice.page.screenshot(path=tmp_path / "room-reset.png")
    assert await cell_versions(web, sheet, "A1") == [("on the server", "bob")]

    # Her next edit is made on the server's version, and is saved.
    await type_into(alice.page, "A1", "alice again")
    await expect(cell(bob.page, "A1")).to_have_text("alice again")
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_after_a_history_reset_someone_who_left_meanwhile_and_came_back_is_told_as_joined(
    browser: Any, web: Server
) -> None:
    """A rejoin after a reset replays nothing: a person who left while the page was away is not told
    as leaving, and when they come back the activity says they joined, not nothing."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    activity = alice.page.locator("#activity")
    await expect(activity).to_contain_text("bob joined")
    await alice.page.evaluate("(room) => { window.collab.client.rooms.get(room).seq += 100; }", room)
    await alice.context.set_offline(True)
    await expect(alice.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await bob.context.close()
    await alice.context.set_offline(False)
    await expect(alice.page.locator(".toast.info", has_text="reloaded")).to_be_visible()
    await expect(alice.page.locator('#people li[data-user="bob"]')).to_have_count(0)

    bob = await open_app(browser, web, "bob", room, sheet)
    await expect(alice.page.locator('#people li[data-user="bob"]')).to_be_visible()
    await expect(activity.locator("li", has_text="bob joined")).to_have_count(2)
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_session_about_to_end_is_announced_and_edits_typed_after_it_ended_are_kept_for_a_new_token(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    user = unique("dana")
    # token_expiring comes at half the lifetime, 8 s after the page opened; the token ends at 16 s.
    first = web.token(user, username="dana", roles=["editor"], ttl=timedelta(seconds=16))
    dana = await open_app_with(browser, web, first, room, sheet)
    page = dana.page

    banner = page.locator("#banner")
    await expect(banner).to_contain_text("Your session ends at", timeout=15_000)
    await expect(banner.locator("input")).to_be_visible()
    await page.screenshot(path=tmp_path / "session-ending.png")

    # She does not act in time: the token expires. The sheet stays, and what she types is kept.
    await expect(banner).to_contain_text("Your session ended", timeout=15_000)
    await type_into(page, "A1", "typed after the end")
    await expect(cell(page, "A1")).to_have_text("typed after the end")
    await expect(page.locator("#connection")).to_contain_text("1 edit queued")
    await expect(banner).to_contain_text("1 unsent edit")
    await page.screenshot(path=tmp_path / "session-ended.png")
    assert await page.locator(".token-gate").count() == 0

    # Another user's token is refused on the spot; her own new one sends the kept edit.
    await banner.locator("input").fill(web.token(unique("someone"), roles=["editor"]))
    await banner.get_by_role("button", name="Use this token").click()
    await expect(banner).to_contain_text("not for dana")
    await page.screenshot(path=tmp_path / "session-token-refused.png")
    await banner.locator("input").fill(web.token(user, username="dana", roles=["editor"]))
    await banner.get_by_role("button", name="Use this token").click()
    await expect(banner).to_be_hidden()
    await expect(page.locator("#connection")).to_have_text("Live")
    await expect(page.locator("#connection")).to_have_attribute("data-queued", "0")
    assert await cell_versions(web, sheet, "A1") == [("typed after the end", user)]
    assert dana.problems() == []
    await dana.context.close()


async def test_while_the_session_has_ended_the_person_is_not_shown_online_in_their_own_people_list(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    user = unique("erin")
    first = web.token(user, username="erin", roles=["editor"], ttl=timedelta(seconds=6))
    erin = await open_app_with(browser, web, first, room, sheet)
    page = erin.page
    mine = page.locator(f'#people li[data-user="{user}"]')
    await expect(mine).to_contain_text("Online")

    banner = page.locator("#banner")
    await expect(banner).to_contain_text("Your session ended", timeout=15_000)
    await expect(mine).to_contain_text("Disconnected")
    await expect(mine).not_to_contain_text("Online")
    await expect(mine).to_have_attribute("data-status", "offline")
    await expect(page.locator('#presence .avatar[title^="erin"] .status-dot')).to_have_class(
        "status-dot offline"
    )
    await page.screenshot(path=tmp_path / "session-ended-presence.png")

    # A new token resumes the session: she is online again.
    await banner.locator("input").fill(web.token(user, username="erin", roles=["editor"]))
    await banner.get_by_role("button", name="Use this token").click()
    await expect(page.locator("#connection")).to_have_text("Live")
    await expect(mine).to_contain_text("Online")
    await expect(mine).to_have_attribute("data-status", "online")
    assert erin.problems() == []
    await erin.context.close()


async def test_while_the_connection_is_being_restored_the_person_is_not_shown_online(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    user = unique("hal")
    hal = await open_app(browser, web, user, room, sheet)
    page = hal.page
    mine = page.locator(f'#people li[data-user="{user}"]')
    await expect(mine).to_contain_text("Online")

    # The socket drops while the browser stays online: the client reconnects after its backoff,
    # which the page sets long here so that the time in between can be looked at.
    await page.evaluate(
        """() => {
            const { client } = window.collab;
            client.backoff = { initial: 600_000, max: 600_000, jitter: 0 };
            client._ws.close(4000, 'dropped');
        }"""
    )
    await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    await expect(mine).to_contain_text("Reconnecting")
    await expect(mine).not_to_contain_text("Online")
    await expect(mine).to_have_attribute("data-status", "offline")
    await expect(page.locator('#presence .avatar[title^="hal"] .status-dot')).to_have_class(
        "status-dot offline"
    )
    await page.screenshot(path=tmp_path / "reconnecting-presence.png")

    # The network comes and goes, which reconnects at once: she is online again.
    await hal.context.set_offline(True)
    await hal.context.set_offline(False)
    await expect(page.locator("#connection")).to_have_text("Live")
    await expect(mine).to_contain_text("Online")
    await expect(mine).to_have_attribute("data-status", "online")
    assert hal.problems() == []
    await hal.context.close()


async def test_closing_the_tab_warns_only_while_edits_are_unsent(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    user = unique("fay")
    fay = await open_app(browser, web, user, room, sheet)
    page = fay.page
    await type_into(page, "A1", "saved")
    await expect(page.locator("#connection")).to_have_attribute("data-queued", "0")

    # Offline, an edit waits in the tab: closing it asks first, and staying keeps the page.
    await fay.context.set_offline(True)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    await type_into(page, "A2", "unsent")
    await expect(page.locator("#connection")).to_have_attribute("data-queued", "1")
    async with page.expect_event("dialog", timeout=10_000) as asked:
        await page.close(run_before_unload=True)
    dialog = await asked.value
    assert dialog.type == "beforeunload"
    await dialog.dismiss()
    assert not page.is_closed()

    # Back online the edit is acknowledged: closing no longer asks (an unanswered dialog would keep
    # the page open).
    await fay.context.set_offline(False)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "ready")
    await expect(page.locator("#connection")).to_have_attribute("data-queued", "0")
    assert await cell_versions(web, sheet, "A2") == [("unsent", user)]
    async with page.expect_event("close", timeout=10_000):
        await page.close(run_before_unload=True)
    await fay.context.close()


async def test_closing_the_tab_warns_while_an_editor_holds_unsaved_text(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    hal = await open_app(browser, web, unique("hal"), room, sheet)
    page = hal.page

    async def closing_asks() -> bool:
        """Try to close the tab; True if the page asked first (the question is declined)."""
        try:
            async with page.expect_event("dialog", timeout=3_000) as asked:
                await page.close(run_before_unload=True)
        except PlaywrightTimeoutError:
            return False
        dialog = await asked.value
        assert dialog.type == "beforeunload"
        await dialog.dismiss()
        return True

    # Text typed into a cell, not saved yet (no edit has been sent): closing asks first.
    await cell(page, "A1").click()
    await page.keyboard.type("half-typed")
    await expect(page.locator("#grid .editor")).to_have_value("half-typed")
    assert await closing_asks()
    await page.keyboard.press("Escape")
    # The same in the formula bar.
    await page.locator("#formula").click()
    await page.keyboard.type("draft")
    assert await closing_asks()
    # Discarded, nothing is lost: the tab closes without asking.
    await page.keyboard.press("Escape")
    await expect(page.locator("#formula")).to_have_value("")
    async with page.expect_event("close", timeout=10_000):
        await page.close(run_before_unload=True)
    await hal.context.close()


async def test_the_queued_count_includes_an_edit_waiting_behind_another_of_its_cell(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    user = unique("gus")
    gus = await open_app(browser, web, user, room, sheet)
    page = gus.page
    pill = page.locator("#connection")

    # Offline, he corrects A1 ("one", then "two": the second waits for the first) and sets A2. Three
    # edits are unsent, and closing the tab would lose each of them.
    await gus.context.set_offline(True)
    await expect(pill).to_have_attribute("data-state", "offline")
    await type_into(page, "A1", "one")
    await type_into(page, "A1", "two")
    await type_into(page, "A2", "three")
    await expect(pill).to_have_attribute("data-queued", "3")
    await expect(pill).to_have_text("Offline · 3 edits queued")
    await page.screenshot(path=tmp_path / "three-queued.png")

    await gus.context.set_offline(False)
    await expect(pill).to_have_attribute("data-state", "ready")
    await expect(pill).to_have_attribute("data-queued", "0")
    assert await cell_versions(web, sheet, "A1") == [("one", user), ("two", user)]
    assert await cell_versions(web, sheet, "A2") == [("three", user)]
    assert gus.problems() == []
    await gus.context.close()


async def test_a_viewer_sees_the_sheet_live_and_is_offered_no_edit(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    """A viewer's every edit is refused by the server: typing over a cell, Delete, a paste or the
    formula bar each ended in an 'Edit refused' notice. The page says the viewer may only look, offers
    no editor, analysis or upload, and still shows the others' changes live."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    await type_into(alice.page, "B2", "budget")
    vera = await open_app_with(
        browser, web, web.token("vera", username="vera", roles=["viewer"]), room, sheet
    )
    page = vera.page
    await expect(page.locator("#view-only")).to_be_visible()
    await expect(cell(page, "B2")).to_have_text("budget")

    await cell(page, "B2").click()
    await page.keyboard.type("x")
    await page.keyboard.press("Enter")
    await page.keyboard.press("F2")
    await cell(page, "B2").click()
    await page.keyboard.press("Delete")
    await expect(page.locator("#grid .editor")).to_have_count(0)
    await expect(page.locator("#formula")).to_have_js_property("readOnly", True)
    await expect(page.locator("#ai-run")).to_be_disabled()
    await expect(page.locator("#upload-input")).to_be_disabled()

    # The others' changes still arrive; nothing the viewer did was sent, so nothing was refused.
    await type_into(alice.page, "B2", "budget v2")
    await expect(cell(page, "B2")).to_have_text("budget v2")
    await page.screenshot(path=str(tmp_path / "viewer.png"))
    await expect(page.locator(".toast")).to_have_count(0)
    assert await cell_versions(web, sheet, "B2") == [("budget", "alice"), ("budget v2", "alice")]
    assert vera.problems() == [] and alice.problems() == []
    for opened in (alice, vera):
        await opened.context.close()


async def test_a_viewers_analyze_stays_disabled_when_their_editor_tab_runs_an_analysis(
    browser: Any, web: Server
) -> None:
    """One person, two tabs: one under an editor's token, one under a viewer's. The analysis the
    editor tab runs is told to every tab of theirs, and its end enabled Analyze sheet in the viewer
    tab too, where the server refuses it."""
    room, sheet = unique("room"), unique("sheet")
    user = unique("vera")
    editing_token = web.token(user, username="vera", roles=["editor"])
    editing = await open_app_with(browser, web, editing_token, room, sheet)
    viewing_token = web.token(user, username="vera", roles=["viewer"])
    viewing = await open_app_with(browser, web, viewing_token, room, sheet)
    await expect(viewing.page.locator("#ai-run")).to_be_disabled()
    await type_into(editing.page, "A1", "12")
    await type_into(editing.page, "A2", "30")

    await editing.page.locator("#ai-run").click()
    await expect(editing.page.locator("#ai-status")).to_contain_text("Done", timeout=20_000)
    await expect(viewing.page.locator("#ai-status")).to_contain_text("Done")
    await expect(viewing.page.locator("#ai-run")).to_be_disabled()
    assert editing.problems() == [] and viewing.problems() == []
    for opened in (editing, viewing):
        await opened.context.close()


async def test_a_refreshed_token_that_makes_the_person_a_viewer_makes_the_page_view_only(
    browser: Any, web: Server
) -> None:
    """The page read the roles of the token it opened with: an editor whose refreshed token made them a
    viewer kept an editable sheet, and every edit ended in a refusal notice."""
    room, sheet = unique("room"), unique("sheet")
    user = unique("fred")
    # token_expiring comes at half the lifetime: 8 s after the page opened.
    first = web.token(user, username="fred", roles=["editor"], ttl=timedelta(seconds=16))
    fred = await open_app_with(browser, web, first, room, sheet)
    page = fred.page
    await type_into(page, "A1", "mine")
    await expect(cell(page, "A1")).to_have_text("mine")
    await expect(page.locator("#view-only")).to_be_hidden()

    second = web.token(user, username="fred", roles=["viewer"])
    await page.evaluate("(token) => sessionStorage.setItem('collab.token', token)", second)
    await expect(page.locator("#view-only")).to_be_visible(timeout=20_000)
    await expect(page.locator("#ai-run")).to_be_disabled()
    await expect(page.locator("#upload-input")).to_be_disabled()
    await cell(page, "A2").click()
    await page.keyboard.type("lost")
    await expect(page.locator("#grid .editor")).to_have_count(0)
    await expect(page.locator(".toast")).to_have_count(0)
    await expect(cell(page, "A2")).to_have_text("")
    assert await cell_versions(web, sheet, "A1") == [("mine", user)]
    assert fred.problems() == []
    await fred.context.close()
