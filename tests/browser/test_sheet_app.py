"""The sheet app (/app) in headless Chromium, two people in two browser contexts on one sheet, against
the real server and database: each sees the other's edits, cursor and typing; a pasted range arrives
whole; a conflict shows its notice; an offline editor's queued edits are applied once on reconnect."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.api.conftest import Server, fresh_database, serve
from tests.browser.conftest import web_settings
from tests.browser.pages import cell, open_app, open_app_with, paste, server_supports, type_into, unique


async def cell_versions(server: Server, sheet: str, cell_id: str) -> list[tuple[Any, str]]:
    token = server.token("auditor", roles=["auditor"])
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        found = await http.get(
            f"/api/v1/sheets/{sheet}/cells/{cell_id}/history", headers={"Authorization": f"Bearer {token}"}
        )
    assert found.status_code == 200, found.text
    return [(v["value"], v["user_id"]) for v in found.json()["versions"]]


async def test_two_people_see_each_others_edits_cursors_and_typing(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)

    await expect(alice.page.locator('#people li[data-user="bob"]')).to_be_visible()
    await type_into(alice.page, "B2", "42")
    await expect(cell(bob.page, "B2")).to_have_text("42")
    await expect(bob.page.locator("#activity")).to_contain_text("alice set B2 = 42")

    # Alice's selection and pointer appear on Bob's screen in her colour, with her name.
    await cell(alice.page, "C3").click()
    await alice.page.mouse.move(420, 300)
    selection = bob.page.locator('.remote-selection[data-user="alice"]')
    await expect(selection).to_have_attribute("data-cell", "C3")
    await expect(selection.locator(".tag")).to_have_text("alice")
    await expect(bob.page.locator('.remote-pointer[data-user="alice"]')).to_be_visible()

    # Bob types in D4 without committing: Alice sees him typing there, then his value.
    await type_into(bob.page, "D4", "hello", enter=False)
    typing = alice.page.locator('.remote-selection[data-user="bob"]')
    await expect(typing).to_have_class("remote-selection typing")
    await expect(typing).to_have_attribute("data-cell", "D4")
    await expect(alice.page.locator('#people li[data-user="bob"]')).to_contain_text("typing in D4")
    await bob.page.keyboard.press("Enter")
    await expect(cell(alice.page, "D4")).to_have_text("hello")
    await expect(typing).not_to_have_class("remote-selection typing")

    assert await cell_versions(web, sheet, "B2") == [(42, "alice")]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_pasted_10x10_range_arrives_whole(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    if not await server_supports(web, {"type": "cells_update", "sheet_id": sheet, "room": room, "cells": []}):
        pytest.skip("the server does not support cells_update yet (protocol 1.1)")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await bob.page.evaluate(
        "() => { window.ranges = [];"
        " window.collab.client.on('cells_updated', (m) => window.ranges.push(m.cells.length)); }"
    )
    rows = ["\t".join(f"{col}{row}" for col in "ABCDEFGHIJ") for row in range(1, 11)]
    await cell(alice.page, "A1").click()
    await paste(alice.page, "\n".join(rows) + "\n")
    await expect(cell(bob.page, "J10")).to_have_text("J10")
    await expect(cell(bob.page, "A1")).to_have_text("A1")
    assert await bob.page.evaluate("window.ranges") == [100]  # one message, all hundred cells
    assert await cell_versions(web, sheet, "E5") == [("E5", "alice")]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_an_offline_editor_keeps_editing_and_converges_once_back(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await expect(alice.page.locator('#people li[data-user="bob"]')).to_be_visible()

    await bob.context.set_offline(True)
    await expect(bob.page.locator("#connection")).to_have_attribute("data-state", "offline")
    for row in range(1, 6):
        await type_into(bob.page, f"F{row}", f"offline {row}")
    await type_into(bob.page, "F1", "offline 1 again")
    await expect(bob.page.locator("#connection")).to_contain_text("queued")
    await expect(cell(bob.page, "F5")).to_have_text("offline 5")  # shown at once, pending
    await type_into(alice.page, "G1", "while bob was away")
    await expect(cell(alice.page, "F1")).to_have_text("")

    await bob.context.set_offline(False)
    await expect(bob.page.locator("#connection")).to_have_attribute("data-state", "ready")
    await expect(bob.page.locator("#connection")).to_have_attribute("data-queued", "0")
    for row in range(2, 6):
        await expect(cell(alice.page, f"F{row}")).to_have_text(f"offline {row}")
    await expect(cell(alice.page, "F1")).to_have_text("offline 1 again")
    await expect(cell(bob.page, "G1")).to_have_text("while bob was away")

    # Each queued edit was applied exactly once, in order.
    assert await cell_versions(web, sheet, "F1") == [("offline 1", "bob"), ("offline 1 again", "bob")]
    for row in range(2, 6):
        assert await cell_versions(web, sheet, f"F{row}") == [(f"offline {row}", "bob")]
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_conflict_shows_its_notice_and_the_current_value(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await type_into(alice.page, "E5", "first")
    await expect(cell(bob.page, "E5")).to_have_text("first")

    # Bob edits E5 offline while Alice changes it: his edit is on a version that is no longer current.
    await bob.context.set_offline(True)
    await expect(bob.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await type_into(bob.page, "E5", "bob's")
    await type_into(alice.page, "E5", "alice's")
    await bob.context.set_offline(False)

    notice = bob.page.locator(".toast.conflict")
    await expect(notice).to_contain_text("Conflict on E5")
    await expect(notice).to_contain_text("alice's")
    await expect(cell(bob.page, "E5")).to_have_text("alice's")
    await expect(cell(alice.page, "E5")).to_have_text("alice's")
    assert await cell_versions(web, sheet, "E5") == [("first", "alice"), ("alice's", "alice")]
    for opened in (alice, bob):
        await opened.context.close()


async def test_uploads_and_notifications_reach_every_tab_of_the_user(browser: Any, web: Server) -> None:
    room, sheet = unique("room"), unique("sheet")
    user = unique("dana")
    token = web.token(user, username=user)
    first = await open_app_with(browser, web, token, room, sheet)
    second = await open_app_with(browser, web, token, room, sheet)
    await second.page.evaluate(
        "() => { window.seenProgress = [];"
        " window.collab.client.on('file_upload_progress', (m) => window.seenProgress.push(m.percentage)); }"
    )

    csv = "region,amount\n" + "".join(f"r{i},{i * 3}\n" for i in range(200_000))  # about 2.5 MB
    await first.page.locator("#upload-input").set_input_files(
        {"name": "regions.csv", "mimeType": "text/csv", "buffer": csv.encode()}
    )
    row = second.page.locator("#files li", has_text="regions.csv")
    await expect(row).to_have_class("done")
    await expect(row.locator("button", has_text="Download")).to_be_visible()
    seen = await second.page.evaluate("window.seenProgress")
    assert any(0 < p < 100 for p in seen), seen  # the other tab watched it progress
    await expect(first.page.locator("#files li.done", has_text="regions.csv")).to_be_visible()

    admin = {"Authorization": f"Bearer {web.token('root', roles=['admin'])}"}
    async with httpx.AsyncClient(base_url=web.http_url, timeout=10) as http:
        created = await http.post(
            "/api/v1/ws/broadcast/notification",
            json={"user_id": user, "title": "Budget review", "message": "Numbers due Friday"},
            headers=admin,
        )
    assert created.status_code == 200, created.text
    for tab in (first, second):
        await expect(tab.page.locator("#unread")).to_have_text("1")
    await first.page.locator("#bell").click()
    await first.page.locator("#notification-list button", has_text="Mark read").click()
    for tab in (first, second):
        await expect(tab.page.locator("#unread")).to_be_hidden()
    assert first.problems() == [] and second.problems() == []
    for opened in (first, second):
        await opened.context.close()


async def test_a_file_over_the_upload_limit_is_shown_failed_at_once(browser: Any, server_url: str) -> None:
    """The server refuses the `file_upload_start` of a file over MAX_UPLOAD_BYTES and records nothing,
    so no `file_upload_failed` comes: the row the app added for it says it failed, and why."""
    room, sheet = unique("room"), unique("sheet")
    async with (
        fresh_database(server_url) as database_url,
        serve(web_settings(database_url, max_upload_bytes=1000)) as small,
    ):
        opened = await open_app(browser, small, unique("erin"), room, sheet)
        await opened.page.locator("#upload-input").set_input_files(
            {"name": "big.csv", "mimeType": "text/csv", "buffer": b"a,b\n" * 1000}
        )
        row = opened.page.locator("#files li", has_text="big.csv")
        await expect(row).to_have_class("failed")
        await expect(row).to_contain_text("limit of 1000 bytes")
        assert opened.problems() == []
        await opened.context.close()


async def typing_of(server: Server, room: str, user: str) -> list[tuple[str, str, str | None]]:
    """A user's typing in a room as the log has it: start or stop, the cell, and why a stop came."""
    token = server.token("auditor", roles=["auditor"])
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        found = await http.get(
            f"/api/v1/rooms/{room}/events",
            params={"types": "TypingStarted,TypingStopped", "include_volatile": "true", "limit": "100"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert found.status_code == 200, found.text
    return [
        (e["type"], e["data"]["cell_id"], e["data"].get("reason"))
        for e in found.json()["events"]
        if e["user_id"] == user
    ]


async def test_leaving_the_formula_bar_for_another_cell_stops_the_typing_where_it_started(
    browser: Any, web: Server
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await expect(alice.page.locator('#people li[data-user="bob"]')).to_be_visible()

    # Alice types in A1's formula bar, then clicks C3 without pressing Enter, and types there.
    await cell(alice.page, "A1").click()
    await alice.page.locator("#formula").click()
    await alice.page.keyboard.type("draft")
    await expect(bob.page.locator('#people li[data-user="alice"]')).to_contain_text("typing in A1")
    await cell(alice.page, "C3").click()
    await type_into(alice.page, "C3", "x")
    await expect(cell(bob.page, "C3")).to_have_text("x")
    await expect(bob.page.locator('#people li[data-user="alice"]')).not_to_contain_text("typing")

    # Her typing in A1 was stopped when she left it (not left to expire), before C3's began.
    typing = await typing_of(web, room, "alice")
    for _ in range(100):  # the stop of C3 is committed before Bob hears of it; the log is read again
        if ("TypingStopped", "C3", "stopped") in typing:
            break
        await asyncio.sleep(0.05)
        typing = await typing_of(web, room, "alice")
    assert typing == [
        ("TypingStarted", "A1", None),
        ("TypingStopped", "A1", "stopped"),
        ("TypingStarted", "C3", None),
        ("TypingStopped", "C3", "stopped"),
    ]
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_typing_in_the_formula_bar_starts_with_the_first_key_and_is_kept_alive(
    browser: Any, web: Server
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    hers = bob.page.locator('#people li[data-user="alice"]')
    await expect(hers).to_be_visible()

    # Alice clicks into A1's formula bar, only to look, and moves her pointer over the grid: Bob
    # sees the pointer, sent after the click, and no typing, which the click did not start.
    await cell(alice.page, "A1").click()
    await alice.page.locator("#formula").click()
    await alice.page.mouse.move(400, 400)
    await expect(bob.page.locator('.remote-pointer[data-user="alice"]')).to_be_visible()
    assert "typing" not in await hers.inner_text()
    assert await typing_of(web, room, "alice") == []

    # She types, a key a second, for longer than the server keeps a typing_start (5 s): the bar
    # refreshes it as the in-cell editor does, so Bob still sees her typing at the end.
    await alice.page.keyboard.type("d")
    await expect(hers).to_contain_text("typing in A1")
    for key in "raft!!":
        await alice.page.wait_for_timeout(1000)
        await alice.page.keyboard.type(key)
    await expect(hers).to_contain_text("typing in A1")
    typing = await typing_of(web, room, "alice")
    assert ("TypingStopped", "A1", "expired") not in typing
    assert typing.count(("TypingStarted", "A1", None)) >= 2

    await alice.page.keyboard.press("Enter")
    await expect(cell(bob.page, "A1")).to_have_text("draft!!")
    await expect(hers).not_to_contain_text("typing")
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


# The parts of a person's marker (their selection, and its name tag) that reach under the grid's row
# or column headers, which are drawn above the cells and the markers: there they are hidden.
UNDER_HEADERS = """(user) => {
    const bottom = document.querySelector('#grid thead th').getBoundingClientRect().bottom;
    const right = document.querySelector('#grid tbody th').getBoundingClientRect().right;
    const selection = document.querySelector(`.remote-selection[data-user="${user}"]`);
    return [selection, selection.querySelector('.tag')]
        .filter((node) => {
            const box = node.getBoundingClientRect();
            return box.top < bottom || box.left < right;
        })
        .map((node) => node.className);
}"""


async def test_another_persons_marker_in_column_a_or_row_1_is_not_hidden_under_the_headers(
    browser: Any, web: Server, tmp_path: Any
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice_id = unique("u")
    alice_token = web.token(alice_id, username="Alexandra Konstantinopoulou", roles=["editor"])
    alice = await open_app_with(browser, web, alice_token, room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await cell(bob.page, "E8").click()  # Bob's own selection is elsewhere

    selection = bob.page.locator(f'.remote-selection[data-user="{alice_id}"]')
    for cell_id in ("A1", "C1", "A3", "C3"):
        await cell(alice.page, cell_id).click()
        await expect(selection).to_have_attribute("data-cell", cell_id)
        await expect(selection.locator(".tag")).to_have_text("Alexandra Konstantinopoulou")
        await bob.page.screenshot(path=str(tmp_path / f"bob-{cell_id}.png"))
        assert await bob.page.evaluate(UNDER_HEADERS, alice_id) == [], cell_id
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_name_tag_stays_clear_of_the_headers_when_the_grid_is_scrolled(
    browser: Any, web: Server, tmp_path: Any
) -> None:
    """Scrolled so that a person's cell is the top-left visible one, their tag went above it, under the
    column headers, and reached left under the row headers: it goes below the cell and starts at the
    first visible column, and back above once the grid is scrolled back."""
    room, sheet = unique("room"), unique("sheet")
    alice_id = unique("u")
    name = "Alexandra Konstantinopoulou"
    alice = await open_app_with(
        browser, web, web.token(alice_id, username=name, roles=["editor"]), room, sheet
    )
    bob = await open_app(browser, web, "bob", room, sheet)
    await cell(alice.page, "D10").click()
    selection = bob.page.locator(f'.remote-selection[data-user="{alice_id}"]')
    await expect(selection).to_have_attribute("data-cell", "D10")
    await expect(selection).not_to_have_class(re.compile("tag-below"))

    await bob.page.evaluate(
        """() => {
            const grid = window.collab.grid, cell = grid.rect('D10'), origin = grid.rect('A1');
            grid.scroller.scrollTo(cell.x - origin.x, cell.y - origin.y);
        }"""
    )
    await expect(selection).to_have_class(re.compile("tag-below"))
    await bob.page.screenshot(path=str(tmp_path / "scrolled.png"))
    tag_only = UNDER_HEADERS.replace(
        "[selection, selection.querySelector('.tag')]", "[selection.querySelector('.tag')]"
    )
    assert await bob.page.evaluate(tag_only, alice_id) == []

    await bob.page.evaluate("() => window.collab.grid.scroller.scrollTo(0, 0)")
    await expect(selection).not_to_have_class(re.compile("tag-below"))
    assert await bob.page.evaluate(UNDER_HEADERS, alice_id) == []
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_pointer_scrolled_under_the_headers_is_not_drawn(browser: Any, web: Server) -> None:
    """The headers cover the cells scrolled under them, but a pointer there still showed its name
    sticking out below the column headers: it is hidden while under them, and back once scrolled out."""
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await cell(alice.page, "C4").hover()
    pointer = bob.page.locator('.remote-pointer[data-user="alice"]')
    await expect(pointer).to_be_visible()
    # Bob scrolls so that row 6 is the first in view: C4, and the pointer over it, are under the headers.
    await bob.page.evaluate(
        """() => {
            const grid = window.collab.grid;
            grid.scroller.scrollTo(0, grid.rect('A6').y - grid.rect('A1').y);
        }"""
    )
    await expect(pointer).to_be_hidden()
    await bob.page.evaluate("() => window.collab.grid.scroller.scrollTo(0, 0)")
    await expect(pointer).to_be_visible()
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_long_name_tag_beside_column_b_is_not_hidden_under_the_row_headers(
    browser: Any, web: Server, tmp_path: Any
) -> None:
    """A tag ends at its cell's right edge and reaches left as far as the name needs: in column B a
    long name reached past column A, under the row headers, and was cut off there."""
    room, sheet = unique("room"), unique("sheet")
    alice_id = unique("u")
    name = "Maria-Alexandra Konstantinopoulou-Papadimitriou"
    alice_token = web.token(alice_id, username=name, roles=["editor"])
    alice = await open_app_with(browser, web, alice_token, room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await cell(bob.page, "E8").click()

    selection = bob.page.locator(f'.remote-selection[data-user="{alice_id}"]')
    tag = selection.locator(".tag")
    for cell_id in ("B3", "B1", "A3", "C3", "D5"):
        await cell(alice.page, cell_id).click()
        await expect(selection).to_have_attribute("data-cell", cell_id)
        await expect(tag).to_have_text(name)
        await bob.page.screenshot(path=str(tmp_path / f"bob-{cell_id}.png"))
        assert await bob.page.evaluate(UNDER_HEADERS, alice_id) == [], cell_id
        # Still beside her cell: the tag reaches over it.
        frame, label = await selection.bounding_box(), await tag.bounding_box()
        assert (
            frame
            and label
            and label["x"] < frame["x"] + frame["width"]
            and label["x"] + label["width"] > frame["x"]
        )

    # Typing there makes the tag longer ("is typing…") after it was placed: still clear of the headers.
    await type_into(alice.page, "B3", "draft", enter=False)
    await expect(selection).to_have_class(re.compile(r"\btyping\b"))
    await expect(selection).to_have_attribute("data-cell", "B3")
    await bob.page.screenshot(path=str(tmp_path / "bob-B3-typing.png"))
    assert await bob.page.evaluate(UNDER_HEADERS, alice_id) == [], "B3 typing"
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


# Whether a person's pointer name, where it is shown, lies over the name tag of their own selection:
# the two texts drawn over each other, neither readable.
LABEL_OVER_TAG = """(user) => {
    const pointer = document.querySelector(`.remote-pointer[data-user="${user}"]`);
    const label = pointer.querySelector('.name');
    const tag = document.querySelector(`.remote-selection[data-user="${user}"] .tag`);
    if (pointer.hidden || getComputedStyle(label).visibility === 'hidden') return false;
    const a = label.getBoundingClientRect();
    const b = tag.getBoundingClientRect();
    return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
}"""


async def test_a_persons_pointer_name_never_lies_over_their_selection_tag(
    browser: Any, web: Server, tmp_path: Any
) -> None:
    """At A1 the tag goes below the cell, where the name beside a pointer over the cell lands too;
    elsewhere a pointer just above the selected cell puts its name over the tag above it."""
    room, sheet = unique("room"), unique("sheet")
    alice_id = unique("u")
    alice_token = web.token(alice_id, username="Alexandra", roles=["editor"])
    alice = await open_app_with(browser, web, alice_token, room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    await cell(bob.page, "H12").click()

    selection = bob.page.locator(f'.remote-selection[data-user="{alice_id}"]')
    pointer = bob.page.locator(f'.remote-pointer[data-user="{alice_id}"]')
    # (cell selected, cell the pointer is over, where in it as fractions of its width and height)
    for selected, over, fx, fy in (("A1", "A1", 0.3, 0.5), ("E5", "E4", 0.6, 0.2), ("B1", "A1", 0.5, 0.6)):
        await cell(alice.page, selected).click()
        box = await cell(alice.page, over).bounding_box()
        assert box
        x, y = box["x"] + box["width"] * fx, box["y"] + box["height"] * fy
        await alice.page.mouse.move(x, y)
        await expect(selection).to_have_attribute("data-cell", selected)
        # The pointer on Bob's screen where Alice's is on hers (the two pages are laid out alike),
        # at the end of its movement's transition.
        await bob.page.wait_for_function(
            """([user, x, y]) => {
                const pointer = document.querySelector(`.remote-pointer[data-user="${user}"]`);
                const box = pointer.getBoundingClientRect();
                return Math.abs(box.left - x) < 2 && Math.abs(box.top - y) < 2;
            }""",
            arg=[alice_id, x, y],
        )
        await bob.page.screenshot(path=str(tmp_path / f"bob-{selected}-{over}.png"))
        assert not await bob.page.evaluate(LABEL_OVER_TAG, alice_id), (selected, over)
    await expect(selection.locator(".tag")).to_have_text("Alexandra")
    # Away from her tag, her pointer has its name again.
    await alice.page.mouse.move(700, 600)
    await expect(pointer).not_to_have_class(re.compile(r"\bbeside-tag\b"))
    await expect(pointer.locator(".name")).to_be_visible()
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_the_others_see_where_a_person_is_from_when_they_open_the_sheet_and_after_a_reconnect(
    browser: Any, web: Server, tmp_path: Any
) -> None:
    """A person's selection was told to the others only when it moved: one who opened the sheet, or
    whose connection was restored (the others see them leave and join again), was shown nowhere
    until they clicked."""
    room, sheet = unique("room"), unique("sheet")
    bob = await open_app(browser, web, "bob", room, sheet)
    alice = await open_app(browser, web, "alice", room, sheet)
    selection = bob.page.locator('.remote-selection[data-user="alice"]')
    hers = bob.page.locator('#people li[data-user="alice"]')
    await expect(selection).to_have_attribute("data-cell", "A1")
    await expect(hers).to_contain_text("at A1")
    # Her mouse has not been over the sheet: no pointer is drawn (nor its name over the headers).
    await bob.page.screenshot(path=str(tmp_path / "bob-as-alice-opened.png"))
    await expect(bob.page.locator('.remote-pointer[data-user="alice"]')).to_be_hidden()

    await cell(alice.page, "C4").click()
    await expect(selection).to_have_attribute("data-cell", "C4")
    # Her own entry says where she is too, not where she was when she joined.
    await expect(alice.page.locator('#people li[data-user="alice"]')).to_contain_text("at C4")
    await alice.context.set_offline(True)
    await expect(bob.page.locator("#activity")).to_contain_text("alice left")
    await expect(selection).to_have_count(0)
    await alice.context.set_offline(False)
    await expect(alice.page.locator("#connection")).to_have_attribute("data-state", "ready")
    await expect(bob.page.locator("#activity li").first).to_contain_text("alice joined")
    await expect(selection).to_have_attribute("data-cell", "C4")
    await expect(selection).to_be_visible()
    await expect(hers).to_contain_text("at C4")
    await bob.page.screenshot(path=str(tmp_path / "bob-after-alice-reconnected.png"))
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()
