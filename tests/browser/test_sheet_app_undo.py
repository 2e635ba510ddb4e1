"""The sheet app (/app): undo and redo of a person's own edits, as in spreadsheets edited together.
Ctrl+Z on the grid takes back the person's last step (a typed cell, a cleared or pasted range), as a
new edit everyone sees and the server keeps; Ctrl+Y and Ctrl+Shift+Z make it again. Nobody else's
edit is undone: a cell someone changed since keeps their value, and the person is told."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import cell, open_app, paste, type_into, unique
from tests.browser.test_sheet_app import cell_versions


async def count_ranges(page: Any) -> None:
    """From now on the page counts the range edits (`cells_updated`) it receives, in `window.ranges`."""
    await page.evaluate(
        "() => { window.ranges = []; window.collab.client.on('cells_updated',"
        " (m) => window.ranges.push(m.cells.map((c) => c.cell_id))); }"
    )


async def test_ctrl_z_undoes_a_typed_edit_and_ctrl_y_redoes_it_for_everyone(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(bob.page, "B2", "bob's")
    await expect(cell(alice.page, "B2")).to_have_text("bob's")
    await type_into(alice.page, "B2", "42")
    await expect(cell(bob.page, "B2")).to_have_text("42")

    # Alice moves on, then undoes: B2 has Bob's value again, for both, and her selection is on it.
    await cell(alice.page, "D5").click()
    await alice.page.keyboard.press("Control+z")
    await expect(cell(bob.page, "B2")).to_have_text("bob's")
    await expect(cell(alice.page, "B2")).to_have_text("bob's")
    await expect(alice.page.locator("#cell-name")).to_have_text("B2")
    await expect(alice.page.locator("#activity")).to_contain_text("You undid your edit of B2")
    await alice.page.screenshot(path=tmp_path / "undone.png")

    # Ctrl+Y makes it again; so does Ctrl+Shift+Z after another undo.
    await alice.page.keyboard.press("Control+y")
    await expect(cell(bob.page, "B2")).to_have_text("42")
    await alice.page.keyboard.press("Control+z")
    await expect(cell(bob.page, "B2")).to_have_text("bob's")
    await alice.page.keyboard.press("Control+Shift+z")
    await expect(cell(bob.page, "B2")).to_have_text("42")

    # Undone once more, her step is all there was: another Ctrl+Z leaves Bob's edit alone.
    await alice.page.keyboard.press("Control+z")
    await expect(cell(bob.page, "B2")).to_have_text("bob's")
    await alice.page.keyboard.press("Control+z")
    await alice.page.wait_for_timeout(500)  # a write would have reached Bob by now
    await expect(cell(bob.page, "B2")).to_have_text("bob's")

    # Each undo and redo is an ordinary edit of hers, stored with its version like any other.
    assert await cell_versions(web, sheet, "B2") == [
        ("bob's", "bob"),
        (42, "alice"),
        ("bob's", "alice"),
        (42, "alice"),
        ("bob's", "alice"),
        (42, "alice"),
        ("bob's", "alice"),
    ]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_pasted_range_is_undone_in_one_step_as_one_range_edit(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(alice.page, "A1", "before")
    await expect(cell(bob.page, "A1")).to_have_text("before")
    await count_ranges(bob.page)

    await cell(alice.page, "A1").click()
    await paste(alice.page, "x\ty\tz\n1\t2\t3\n")
    await expect(cell(bob.page, "C2")).to_have_text("3")
    await cell(alice.page, "E8").click()

    # One Ctrl+Z takes the whole paste back, in one range edit: A1 as it was, the rest empty.
    await alice.page.keyboard.press("Control+z")
    await expect(cell(bob.page, "A1")).to_have_text("before")
    for cell_id in ("B1", "C1", "A2", "B2", "C2"):
        await expect(cell(bob.page, cell_id)).to_have_text("")
    # The selection shows the range undone.
    await expect(alice.page.locator("#cell-name")).to_have_text("C2")
    for cell_id in ("A1", "C1", "B2", "C2"):
        await expect(cell(alice.page, cell_id)).to_have_class("in-range")
    await expect(alice.page.locator("#activity")).to_contain_text("You undid your edit of 6 cells")
    await alice.page.screenshot(path=tmp_path / "paste-undone.png")
    assert await bob.page.evaluate("window.ranges.length") == 2  # the paste and its undo
    assert sorted(await bob.page.evaluate("window.ranges[1]")) == ["A1", "A2", "B1", "B2", "C1", "C2"]

    # The next Ctrl+Z takes back the step before (A1 typed); Ctrl+Y twice brings both back.
    await alice.page.keyboard.press("Control+z")
    await expect(cell(bob.page, "A1")).to_have_text("")
    await expect(alice.page.locator("#cell-name")).to_have_text("A1")
    await alice.page.keyboard.press("Control+y")
    await expect(cell(bob.page, "A1")).to_have_text("before")
    await alice.page.keyboard.press("Control+y")
    await expect(cell(bob.page, "C2")).to_have_text("3")
    await expect(cell(bob.page, "A1")).to_have_text("x")

    assert await cell_versions(web, sheet, "A1") == [
        ("before", "alice"),
        ("x", "alice"),
        ("before", "alice"),
        (None, "alice"),
        ("before", "alice"),
        ("x", "alice"),
    ]
    assert await cell_versions(web, sheet, "B2") == [(2, "alice"), (None, "alice"), (2, "alice")]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_cell_someone_else_changed_since_is_not_undone_and_the_person_is_told(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await cell(alice.page, "A1").click()
    await paste(alice.page, "x\ty\tz")
    await expect(cell(bob.page, "C1")).to_have_text("z")

    # Bob changes one cell of Alice's paste; then she undoes the paste.
    await type_into(bob.page, "B1", "bob's")
    await expect(cell(alice.page, "B1")).to_have_text("bob's")
    await count_ranges(bob.page)
    await alice.page.keyboard.press("Control+z")

    # Her other two cells are undone, in one range edit; Bob's value stays, and she is told why.
    await expect(cell(bob.page, "A1")).to_have_text("")
    await expect(cell(bob.page, "C1")).to_have_text("")
    await expect(cell(alice.page, "C1")).to_have_text("")
    notice = alice.page.locator(".toast.conflict")
    await expect(notice).to_contain_text("Can't undo B1: bob changed it since")
    await expect(notice).to_contain_text("The other 2 cells were undone")
    await expect(alice.page.locator("#activity")).to_contain_text("Can't undo B1: bob changed it since")
    await alice.page.screenshot(path=tmp_path / "undo-skipped.png")
    await expect(cell(alice.page, "B1")).to_have_text("bob's")
    await expect(cell(bob.page, "B1")).to_have_text("bob's")
    assert await bob.page.evaluate("window.ranges") == [["A1", "C1"]]

    # Redone, the step is the two cells it undid: B1 stays Bob's, with no second notice.
    await alice.page.keyboard.press("Control+y")
    await expect(cell(bob.page, "A1")).to_have_text("x")
    await expect(cell(bob.page, "C1")).to_have_text("z")
    await expect(notice).to_have_count(1)

    assert await cell_versions(web, sheet, "B1") == [("y", "alice"), ("bob's", "bob")]
    assert await cell_versions(web, sheet, "A1") == [("x", "alice"), (None, "alice"), ("x", "alice")]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_ctrl_z_while_typing_in_a_cell_or_the_formula_bar_undoes_the_text_not_a_sheet_edit(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    page = alice.page
    await type_into(page, "A1", "one")
    editor = page.locator("#grid .editor")

    # In the cell's editor Ctrl+Z is the browser's: it takes back what was typed there, not A1.
    await cell(page, "A2").dblclick()
    await expect(editor).to_be_visible()
    await page.keyboard.type("abc")
    await page.keyboard.press("Control+z")
    await expect(editor).not_to_have_value("abc")
    await page.screenshot(path=tmp_path / "editor-undo.png")
    await page.keyboard.press("Escape")

    # So it is in the formula bar.
    await cell(page, "B1").click()
    await page.locator("#formula").click()
    await page.keyboard.type("def")
    await page.keyboard.press("Control+z")
    await expect(page.locator("#formula")).not_to_have_value("def")
    await page.keyboard.press("Escape")

    await page.wait_for_timeout(500)  # an undo of A1 would have been written by now
    await expect(cell(page, "A1")).to_have_text("one")
    assert await cell_versions(web, sheet, "A1") == [("one", "alice")]

    # Back on the grid, Ctrl+Z undoes A1.
    await page.keyboard.press("Control+z")
    await expect(cell(page, "A1")).to_have_text("")
    await expect(page.locator("#cell-name")).to_have_text("A1")
    assert alice.problems() == []
    await alice.context.close()


async def test_a_new_edit_after_an_undo_clears_what_could_be_redone(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    page = alice.page
    await type_into(page, "A1", "one")
    await page.keyboard.press("Control+z")
    await expect(cell(page, "A1")).to_have_text("")
    await expect(page.locator("#cell-name")).to_have_text("A1")

    # A new edit: "one" can no longer be redone, and undoing goes from the new edit.
    await type_into(page, "B1", "two")
    await page.keyboard.press("Control+y")
    await page.wait_for_timeout(300)
    await expect(cell(page, "A1")).to_have_text("")
    await page.keyboard.press("Control+z")
    await expect(cell(page, "B1")).to_have_text("")
    await page.keyboard.press("Control+z")
    await page.wait_for_timeout(300)
    assert await cell_versions(web, sheet, "A1") == [("one", "alice"), (None, "alice")]
    assert await cell_versions(web, sheet, "B1") == [("two", "alice"), (None, "alice")]

    # The history keeps the last 100 steps, no more.
    kept = await page.evaluate(
        """async () => {
            const { UndoHistory } = await import('/static/app/undo.js');
            const history = new UndoHistory(100);
            for (let i = 0; i < 150; i += 1) history.record([{ cell_id: 'A1', before: i, after: i + 1 }]);
            const undone = [];
            for (let move; (move = history.undo(() => null)); ) undone.push(move.write[0].value);
            return [undone.length, undone[0], undone[undone.length - 1]];
        }"""
    )
    assert kept == [100, 149, 50]
    assert alice.problems() == []
    await alice.context.close()


async def test_an_undo_that_meets_someone_elses_change_on_the_server_is_a_conflict(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(alice.page, "E5", "mine")
    await expect(cell(bob.page, "E5")).to_have_text("mine")

    # Offline, Alice undoes her edit; Bob changes the cell before her undo reaches the server.
    await alice.context.set_offline(True)
    await expect(alice.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await alice.page.keyboard.press("Control+z")
    await expect(cell(alice.page, "E5")).to_have_text("")
    await type_into(bob.page, "E5", "bob's")
    await alice.context.set_offline(False)

    notice = alice.page.locator(".toast.conflict")
    await expect(notice).to_contain_text("Conflict on E5")
    await expect(notice).to_contain_text("bob's")
    await expect(cell(alice.page, "E5")).to_have_text("bob's")
    await alice.page.screenshot(path=tmp_path / "undo-conflict.png")

    # The undo was never applied: there is nothing to redo, nor to undo again.
    await alice.page.keyboard.press("Control+y")
    await alice.page.keyboard.press("Control+z")
    await alice.page.wait_for_timeout(500)
    await expect(cell(bob.page, "E5")).to_have_text("bob's")
    assert await cell_versions(web, sheet, "E5") == [("mine", "alice"), ("bob's", "bob")]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_history_reset_clears_what_could_be_undone(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    page = alice.page
    await type_into(page, "A1", "before the reset")

    # What the page saw is a history the server no longer has (restored from an older backup): the
    # rejoin reloads the cells, and the steps made on the old history are gone.
    await page.evaluate("(room) => { window.collab.client.rooms.get(room).seq += 100; }", room)
    await alice.context.set_offline(True)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    await alice.context.set_offline(False)
    await expect(page.locator(".toast.info", has_text="reloaded")).to_be_visible()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "ready")

    # An edit after the reset is undone; the one before it is not.
    await type_into(page, "A2", "after the reset")
    await page.keyboard.press("Control+z")
    await expect(cell(page, "A2")).to_have_text("")
    await page.keyboard.press("Control+z")
    await page.wait_for_timeout(500)
    await expect(cell(page, "A1")).to_have_text("before the reset")
    assert await cell_versions(web, sheet, "A1") == [("before the reset", "alice")]
    assert alice.problems() == []
    await alice.context.close()


async def test_a_held_ctrl_z_undoes_once_not_at_the_keys_repeat_rate(browser: Any, web: Server) -> None:
    """A held key repeats some thirty times a second: each repeat an undo sent as an edit, a held
    Ctrl+Z would spend the edit rate limit (and earn its block) in seconds. A press undoes once."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    page = alice.page
    for n in range(3):
        await type_into(page, "B2", f"v{n}")
    await expect(cell(page, "B2")).to_have_text("v2")
    # A press and two of its repeats, as a held key sends them.
    await page.evaluate(
        """() => {
            const grid = document.getElementById('grid-scroller');
            grid.focus();
            for (const repeat of [false, true, true]) {
                grid.dispatchEvent(new KeyboardEvent('keydown', {
                    key: 'z', code: 'KeyZ', ctrlKey: true, repeat, bubbles: true, cancelable: true,
                }));
            }
        }"""
    )
    await expect(cell(page, "B2")).to_have_text("v1")
    await page.keyboard.press("Control+y")  # a round trip after the keys: anything they sent is in
    await expect(cell(page, "B2")).to_have_text("v2")
    versions = await cell_versions(web, sheet, "B2")
    assert [value for value, _ in versions] == ["v0", "v1", "v2", "v1", "v2"]
    assert alice.problems() == []
    await alice.context.close()
