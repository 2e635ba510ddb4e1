"""The sheet app (/app) when an edit meets someone else's: a value typed in a cell while another
person changed that cell is a conflict, never a silent overwrite of a change its author never saw."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import cell, open_app, open_app_with, paste, type_into, unique, window_switcher
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
    await expect(bob.page.locator("#grid .editor")).to_have_value("first")
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


async def test_a_conflicting_clear_is_told_as_one_not_as_empty_quotes(browser: Any, web: Server) -> None:
    """A cell cleared offline while someone changed it conflicts; the notice names the clear as such,
    where it read 'before your “” arrived'."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(alice.page, "E5", "first")
    await expect(cell(bob.page, "E5")).to_have_text("first")

    await bob.context.set_offline(True)
    await expect(bob.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await cell(bob.page, "E5").click()
    await bob.page.keyboard.press("Delete")
    await type_into(alice.page, "E5", "alice's")
    await bob.context.set_offline(False)

    notice = bob.page.locator(".toast.conflict")
    await expect(notice).to_contain_text("alice changed it to “alice's” before your (empty) arrived")
    await expect(notice).not_to_contain_text("“”")
    assert await cell_versions(web, sheet, "E5") == [("first", "alice"), ("alice's", "alice")]
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_conflict_with_someone_who_left_names_them_not_their_id(browser: Any, web: Server) -> None:
    """The person whose change won may have left by the time the conflict is told: the notice named
    them by their user id, which the page no longer found in the room, though it knew their name."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bobby_id = unique("u")
    bobby = await open_app_with(
        browser, web, web.token(bobby_id, username="Bobby", roles=["editor"]), room, sheet
    )
    await expect(alice.page.locator(f'#people li[data-user="{bobby_id}"]')).to_be_visible()

    await alice.context.set_offline(True)
    await expect(alice.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await type_into(alice.page, "E5", "alice's")
    await type_into(bobby.page, "E5", "Bobby's")
    await bobby.context.close()
    await alice.context.set_offline(False)

    notice = alice.page.locator(".toast.conflict")
    await expect(notice).to_contain_text("Conflict on E5: Bobby changed it")
    await expect(notice).not_to_contain_text(bobby_id)
    assert alice.problems() == []
    await alice.context.close()


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


async def test_the_formula_bar_saves_to_its_cell_when_left_by_a_click_or_tab_and_escape_discards(
    browser: Any, web: Server, tmp_path: Any
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    formula = alice.page.locator("#formula")

    # Alice types B2's value in the formula bar and clicks D4 without pressing Enter: as in any
    # spreadsheet, what she typed is saved to B2, the cell the bar was opened on, not thrown away.
    await cell(alice.page, "B2").click()
    await formula.click()
    await alice.page.keyboard.type("draft")
    await cell(alice.page, "D4").click()
    await expect(cell(alice.page, "B2")).to_have_text("draft")
    await expect(cell(bob.page, "B2")).to_have_text("draft")
    await expect(alice.page.locator("#cell-name")).to_have_text("D4")
    await expect(formula).to_have_value("")

    # Tab leaves the bar too: D4 keeps what she typed.
    await formula.click()
    await alice.page.keyboard.type("tabbed")
    await alice.page.keyboard.press("Tab")
    await expect(cell(bob.page, "D4")).to_have_text("tabbed")

    # Escape discards: the bar shows the cell's value again, and a click elsewhere saves nothing.
    await formula.click()
    await alice.page.keyboard.type(" more")
    await alice.page.keyboard.press("Escape")
    await expect(formula).to_have_value("tabbed")
    await type_into(alice.page, "F6", "after")
    await expect(cell(bob.page, "F6")).to_have_text("after")  # sent after anything D4 could have had
    await alice.page.screenshot(path=str(tmp_path / "alice.png"))
    assert await cell_versions(web, sheet, "B2") == [("draft", "alice")]
    assert await cell_versions(web, sheet, "D4") == [("tabbed", "alice")]
    await expect(cell(alice.page, "D4")).to_have_text("tabbed")
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_leaving_the_formula_bar_over_someone_elses_change_is_a_conflict(
    browser: Any, web: Server
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(alice.page, "E5", "first")
    await expect(cell(bob.page, "E5")).to_have_text("first")

    # Bob replaces "first" in E5's formula bar; Alice changes E5 before he leaves the bar by a click
    # on another cell. His value is saved as Enter would save it: on the version he saw, a conflict.
    await cell(bob.page, "E5").click()
    await bob.page.locator("#formula").click()
    await bob.page.keyboard.press("Control+A")
    await bob.page.keyboard.type("bob's")
    await type_into(alice.page, "E5", "alice's")
    await expect(bob.page.locator("#activity")).to_contain_text("alice set E5 = alice's")
    await cell(bob.page, "G7").click()

    notice = bob.page.locator(".toast.conflict")
    await expect(notice).to_contain_text("Conflict on E5")
    await expect(notice).to_contain_text("bob's")
    await expect(cell(bob.page, "E5")).to_have_text("alice's")
    assert await cell_versions(web, sheet, "E5") == [("first", "alice"), ("alice's", "alice")]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_the_in_cell_editor_saves_to_its_cell_when_left_and_escape_discards(
    browser: Any, web: Server
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)

    # Opened by a double-click, left by a click on another cell.
    await cell(alice.page, "A2").dblclick()
    await expect(alice.page.locator("#grid .editor")).to_be_visible()
    await alice.page.keyboard.type("double")
    await cell(alice.page, "C3").click()
    await expect(cell(bob.page, "A2")).to_have_text("double")
    # Opened by typing on the selected cell, left by a click on another cell, then for the formula bar.
    await type_into(alice.page, "B2", "typed", enter=False)
    await cell(alice.page, "C4").click()
    await expect(cell(bob.page, "B2")).to_have_text("typed")
    await type_into(alice.page, "C4", "kept", enter=False)
    await alice.page.locator("#formula").click()
    await expect(cell(bob.page, "C4")).to_have_text("kept")
    await expect(alice.page.locator("#formula")).to_have_value("kept")

    # Escape discards.
    await alice.page.locator("#formula").press("Escape")
    await type_into(alice.page, "C4", "gone", enter=False)
    await alice.page.keyboard.press("Escape")
    await cell(alice.page, "D5").click()
    await expect(cell(alice.page, "C4")).to_have_text("kept")
    await type_into(alice.page, "F6", "after")
    await expect(cell(bob.page, "F6")).to_have_text("after")
    assert await cell_versions(web, sheet, "C4") == [("kept", "alice")]
    assert await cell_versions(web, sheet, "A2") == [("double", "alice")]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_switching_windows_keeps_the_formula_bar_edit_open(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    page = alice.page
    await type_into(page, "A1", "kept")
    await type_into(page, "B1", "old")
    await expect(cell(bob.page, "B1")).to_have_text("old")
    switch_away_and_back = await window_switcher(alice)

    # She types over A1 in the formula bar, switches to another window and back, and presses Escape:
    # the bar kept its focus and text meanwhile, so nothing was saved, and Escape discards it.
    await cell(page, "A1").click()
    await page.locator("#formula").click()
    await page.keyboard.press("ControlOrMeta+A")
    await page.keyboard.type("draft")
    await switch_away_and_back()
    await expect(page.locator("#formula")).to_be_focused()
    await expect(page.locator("#formula")).to_have_value("draft")
    await page.keyboard.press("Escape")
    await expect(page.locator("#formula")).to_have_value("kept")

    # The same in B1, and Enter this time: what she typed before switching is saved.
    await cell(page, "B1").click()
    await page.locator("#formula").click()
    await page.keyboard.press("ControlOrMeta+A")
    await page.keyboard.type("new")
    await switch_away_and_back()
    await page.keyboard.press("Enter")
    await expect(cell(bob.page, "B1")).to_have_text("new")
    await expect(page.locator("#connection")).to_have_attribute("data-queued", "0")

    await expect(cell(page, "A1")).to_have_text("kept")
    await expect(cell(bob.page, "A1")).to_have_text("kept")
    assert await cell_versions(web, sheet, "A1") == [("kept", "alice")]
    assert await cell_versions(web, sheet, "B1") == [("old", "alice"), ("new", "alice")]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_switching_windows_keeps_the_in_cell_editor_open(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    page = alice.page
    editor = page.locator("#grid .editor")
    await type_into(page, "A1", "kept")
    await type_into(page, "B1", "old")
    await expect(cell(bob.page, "B1")).to_have_text("old")
    switch_away_and_back = await window_switcher(alice)

    # She opens A1's editor by a double-click, types over it, switches to another window and back,
    # and presses Escape: the editor stayed open with its text meanwhile, nothing was saved.
    await cell(page, "A1").dblclick()
    await expect(editor).to_have_value("kept")
    await page.keyboard.press("ControlOrMeta+A")
    await page.keyboard.type("draft")
    await switch_away_and_back()
    await expect(editor).to_be_focused()
    await expect(editor).to_have_value("draft")
    await page.keyboard.press("Escape")
    await expect(editor).to_have_count(0)
    await expect(cell(page, "A1")).to_have_text("kept")

    # The editor opened by typing on B1, and Enter this time: what she typed before switching is saved.
    await type_into(page, "B1", "new", enter=False)
    await switch_away_and_back()
    await expect(editor).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(cell(bob.page, "B1")).to_have_text("new")
    await expect(page.locator("#connection")).to_have_attribute("data-queued", "0")

    await expect(cell(bob.page, "A1")).to_have_text("kept")
    assert await cell_versions(web, sheet, "A1") == [("kept", "alice")]
    assert await cell_versions(web, sheet, "B1") == [("old", "alice"), ("new", "alice")]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


# The parts of a page that spill out of their own box or off the screen: text wider than its box,
# or a box (a notice, its close button) reaching past the window's edge.
SPILLED = """() => {
    const spilled = [];
    for (const node of document.querySelectorAll('.toast, .toast span, .toast .close, #activity li')) {
        const box = node.getBoundingClientRect();
        const name = node.className || node.tagName;
        if (node.scrollWidth > node.clientWidth + 1) spilled.push(`${name} is too wide`);
        if (box.right > innerWidth || box.bottom > innerHeight || box.left < 0 || box.top < 0)
            spilled.push(`${name} is off the screen`);
    }
    return spilled;
}"""


async def test_a_long_value_in_a_conflict_notice_and_the_activity_stays_inside_them(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    """A cell holds up to 32,767 characters: quoted whole, a long value ran out of the notice and off
    the screen, with the notice's close button, and out of the activity panel."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    theirs, mine = "y" * 300, "lorem ipsum " * 300
    await type_into(alice.page, "G3", "z", enter=False)
    await alice.page.keyboard.press("Backspace")
    await alice.page.evaluate("(text) => { document.activeElement.value = text; }", mine)
    await type_into(bob.page, "G3", theirs)
    await expect(alice.page.locator("#activity li").first).to_contain_text("bob set G3 = yyy")
    await alice.page.keyboard.press("Enter")

    notice = alice.page.locator(".toast.conflict")
    await expect(notice).to_contain_text("Conflict on G3")
    await expect(cell(alice.page, "G3")).to_have_text(theirs)
    await alice.page.screenshot(path=tmp_path / "long-conflict.png")
    assert await alice.page.evaluate(SPILLED) == []
    box = await notice.bounding_box()
    assert box and box["height"] < 160, box  # a notice, not a wall of text
    await notice.locator(".close").click()
    await expect(notice).to_have_count(0)
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_long_number_is_kept_as_typed_and_a_cleared_range_says_so(browser: Any, web: Server) -> None:
    """A card or account number has more digits than a number can hold exactly: it is kept as the text
    typed, not refused (nor rounded). Clearing a range with Delete is told as clearing, not pasting."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    typed_values = (
        ("B2", "12345678901234567890"),
        ("B3", "9007199254740993"),
        ("B4", "42"),
        ("B5", "1e-400"),
    )
    for cell_id, typed in typed_values:
        await type_into(alice.page, cell_id, typed)
        await expect(cell(bob.page, cell_id)).to_have_text(typed)
    assert await cell_versions(web, sheet, "B2") == [("12345678901234567890", "alice")]
    assert await cell_versions(web, sheet, "B4") == [(42, "alice")]
    assert await cell_versions(web, sheet, "B5") == [("1e-400", "alice")]
    await expect(alice.page.locator(".toast")).to_have_count(0)

    await cell(alice.page, "B2").click()
    await cell(alice.page, "B4").click(modifiers=["Shift"])
    await alice.page.keyboard.press("Delete")
    await expect(cell(bob.page, "B3")).to_have_text("")
    activity = alice.page.locator("#activity")
    await expect(activity).to_contain_text("You cleared 3 cells")
    await expect(activity).not_to_contain_text("pasted")
    # The others are told of the range once, as clearing, not once per cell.
    theirs = bob.page.locator("#activity li", has_text="alice cleared")
    await expect(theirs).to_have_text(re.compile("alice cleared 3 cells, B2 to B4$"))
    await expect(bob.page.locator("#activity li", has_text="= (empty)")).to_have_count(0)
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_person_who_comes_back_under_another_name_is_shown_renamed_not_arrived(
    browser: Any, web: Server
) -> None:
    """A second tab opened with a newer token carrying another name changes how the room shows the
    person: the others' activity says so, instead of announcing a new arrival."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    activity = alice.page.locator("#activity")
    await expect(activity).to_contain_text("bob joined")
    renamed = await open_app_with(
        browser, web, web.token("bob", username="Robert", roles=["editor"]), room, sheet
    )
    await expect(activity).to_contain_text("bob is now Robert")
    await expect(alice.page.locator('#people li[data-user="bob"]')).to_contain_text("Robert")
    await expect(activity).not_to_contain_text("Robert joined")
    assert alice.problems() == [] and bob.problems() == [] and renamed.problems() == []
    for opened in (alice, bob, renamed):
        await opened.context.close()


async def test_a_renamed_persons_marker_on_the_grid_shows_their_new_name(browser: Any, web: Server) -> None:
    """The marker drawn for a person (their selection's tag, their pointer's name) names them as the
    room does: after a newer tab renamed them, the new name, also when the tab under the old name moves
    (its cursor still carries the old one)."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    selection = alice.page.locator('.remote-selection[data-user="bob"]')
    tag = selection.locator(".tag")
    pointer_name = alice.page.locator('.remote-pointer[data-user="bob"] .name')
    await expect(tag).to_have_text("bob")
    renamed = await open_app_with(
        browser, web, web.token("bob", username="Robert", roles=["editor"]), room, sheet
    )
    await expect(alice.page.locator("#activity")).to_contain_text("bob is now Robert")
    await expect(tag).to_have_text("Robert")
    await expect(pointer_name).to_have_text("Robert")
    await cell(bob.page, "D4").click()  # the tab that joined as "bob"
    await expect(selection).to_have_attribute("data-cell", "D4")
    await expect(tag).to_have_text("Robert")
    await expect(pointer_name).to_have_text("Robert")
    assert alice.problems() == [] and bob.problems() == [] and renamed.problems() == []
    for opened in (alice, bob, renamed):
        await opened.context.close()
