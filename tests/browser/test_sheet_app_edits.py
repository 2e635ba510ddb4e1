"""The sheet app (/app) when an edit meets someone else's: a value typed in a cell while another
person changed that cell is a conflict, never a silent overwrite of a change its author never saw."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import cell, open_app, open_app_with, paste, type_into, unique
from tests.browser.test_sheet_app import cell_versions


async def test_a_value_typed_over_someone_elses_change_is_a_conflict(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(alice.page, "E5", "first")
    await expect(cell(bob.page, "E5")).to_have_text("first")

    # Bob starts typing over "first"; before he presses Enter, Alice changes the cell. His editor
    # keeps showing what he types, so he never sees her value.
    await type_into(bob.page, "E5", "bob's", enter=False)
    await type_into(alice.page, "E5", "alice's")
    await expect(bob.page.locator("#activity")).to_contain_text("alice set E5 = alice's")
    await bob.page.keyboard.press("Enter")

    notice = bob.page.locator(".toast.conflict")
    await expect(notice).to_contain_text("Conflict on E5")
    await expect(notice).to_contain_text("alice's")
    await expect(cell(bob.page, "E5")).to_have_text("alice's")
    await expect(cell(alice.page, "E5")).to_have_text("alice's")
    assert await cell_versions(web, sheet, "E5") == [("first", "alice"), ("alice's", "alice")]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_an_editor_closed_unchanged_after_someone_elses_change_writes_nothing(
    browser: Any, web: Server, tmp_path: Any
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(alice.page, "E5", "first")
    await type_into(alice.page, "F5", "second")
    await expect(cell(bob.page, "F5")).to_have_text("second")

    # Bob opens E5's editor and then the formula bar of F5, only to look; Alice changes both cells
    # meanwhile. He leaves each with Enter without having typed a thing: that is no edit of his.
    await cell(bob.page, "E5").dblclick()
    await expect(bob.page.locator("#grid input.editor")).to_have_value("first")
    await type_into(alice.page, "E5", "alice's")
    await expect(bob.page.locator("#activity")).to_contain_text("alice set E5 = alice's")
    await bob.page.keyboard.press("Enter")
    await cell(bob.page, "F5").click()
    await bob.page.locator("#formula").click()
    await type_into(alice.page, "F5", "alice's too")
    await expect(bob.page.locator("#activity")).to_contain_text("alice set F5 = alice's too")
    await bob.page.locator("#formula").press("Enter")

    await expect(cell(bob.page, "E5")).to_have_text("alice's")
    await expect(cell(bob.page, "F5")).to_have_text("alice's too")
    await bob.page.wait_for_timeout(500)  # a write, or its conflict, would be back by now
    await bob.page.screenshot(path=str(tmp_path / "bob.png"))
    await expect(bob.page.locator(".toast.conflict")).to_have_count(0)
    assert await cell_versions(web, sheet, "E5") == [("first", "alice"), ("alice's", "alice")]
    assert await cell_versions(web, sheet, "F5") == [("second", "alice"), ("alice's too", "alice")]
    await expect(cell(alice.page, "E5")).to_have_text("alice's")
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_the_activity_shows_their_value_not_a_pending_edit(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(alice.page, "E5", "first")
    await expect(cell(bob.page, "E5")).to_have_text("first")

    # Bob's offline edit of E5 is still pending when Alice's change of it reaches him on resume.
    await bob.context.set_offline(True)
    await expect(bob.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await type_into(bob.page, "E5", "bob's")
    await type_into(alice.page, "E5", "alice's")
    await bob.context.set_offline(False)

    await expect(bob.page.locator(".toast.conflict")).to_contain_text("Conflict on E5")
    activity = bob.page.locator("#activity")
    await expect(activity).to_contain_text("alice set E5 = alice's")
    await expect(activity).not_to_contain_text("alice set E5 = bob's")
    for opened in (alice, bob):
        await opened.context.close()


async def test_every_queued_value_of_a_conflicting_cell_is_told_not_only_the_first(
    browser: Any, web: Server, tmp_path: Any
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(alice.page, "E5", "first")
    await expect(cell(bob.page, "E5")).to_have_text("first")

    # Offline, Bob corrects himself: "x", then "y" in the same cell. Alice changes it meanwhile, so
    # his "x" conflicts, and his "y", made on it, cannot be applied either: he must hear of both.
    await bob.context.set_offline(True)
    await expect(bob.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await type_into(bob.page, "E5", "x")
    await type_into(bob.page, "E5", "y")
    await type_into(alice.page, "E5", "alice's")
    await bob.context.set_offline(False)

    await expect(cell(bob.page, "E5")).to_have_text("alice's")
    await expect(bob.page.locator(".toast.conflict", has_text="your “x”")).to_have_count(1)
    await expect(bob.page.locator(".toast.conflict", has_text="your “y”")).to_have_count(1)
    await bob.page.screenshot(path=str(tmp_path / "bob.png"))
    assert await cell_versions(web, sheet, "E5") == [("first", "alice"), ("alice's", "alice")]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_the_activity_names_who_left_by_their_name(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob_id = unique("u")
    bob_token = web.token(bob_id, username="Bob Builder", roles=["editor"])
    bob = await open_app_with(browser, web, bob_token, room, sheet)
    activity = alice.page.locator("#activity")
    await expect(activity).to_contain_text("Bob Builder joined")
    await bob.context.close()
    await expect(activity).to_contain_text("Bob Builder left")
    await expect(activity).not_to_contain_text(f"{bob_id} left")
    await alice.context.close()


async def test_a_paste_refused_for_one_conflicting_cell_says_the_whole_paste_was_not_applied(
    browser: Any, web: Server
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(alice.page, "A1", "first")
    await expect(cell(bob.page, "A1")).to_have_text("first")

    # Bob pastes a row of three offline; meanwhile Alice changes one of its cells. A range is all or
    # nothing, so none of his three values is applied, and he must be told so, not just about A1.
    await bob.context.set_offline(True)
    await expect(bob.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await cell(bob.page, "A1").click()
    await paste(bob.page, "x\ty\tz")
    await expect(cell(bob.page, "C1")).to_have_text("z")
    await type_into(alice.page, "A1", "alice's")
    await bob.context.set_offline(False)

    await expect(cell(bob.page, "A1")).to_have_text("alice's")
    await expect(cell(bob.page, "C1")).to_have_text("")
    notice = bob.page.locator(".toast.conflict", has_text="not applied")
    await expect(notice).to_contain_text("3 cells")
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_resume_does_not_tell_a_person_that_they_left(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await bob.context.set_offline(True)
    await expect(bob.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await expect(alice.page.locator("#activity")).to_contain_text("bob left")
    await bob.context.set_offline(False)
    await expect(bob.page.locator("#activity")).to_contain_text("Back online")
    await expect(bob.page.locator("#activity")).not_to_contain_text("bob left")
    for opened in (alice, bob):
        await opened.context.close()
