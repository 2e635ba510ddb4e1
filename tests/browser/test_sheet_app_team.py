"""The sheet app (/app) as a small team uses it together for a while: three people on one budget
sheet, who change their status, reload, open a second tab, go offline and come back, and get
messages. Each test is something one of them would see on their own screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.api.rest_helpers import rest
from tests.browser.pages import cell, open_app, open_app_with, paste, type_into, unique


async def test_a_status_set_reads_alike_in_the_persons_own_entry_and_picker_in_every_tab_and_after_a_reload(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    user = unique("alice")
    token = web.token(user, username="alice", roles=["editor"])
    alice = await open_app_with(browser, web, token, room, sheet)
    bob = await open_app(browser, web, "bob", room, sheet)
    entry = f'#people li[data-user="{user}"]'  # hers, on every page

    await alice.page.locator("#status").select_option("busy")
    await expect(bob.page.locator(entry)).to_contain_text("Busy")
    # Her own entry and her avatar's dot say so too, as the others see her.
    await expect(alice.page.locator(entry)).to_contain_text("Busy")
    await expect(alice.page.locator(entry)).to_have_attribute("data-status", "busy")

    # She reloads: the page says she is busy, as everyone sees her, and so does the picker.
    await alice.page.reload()
    await alice.page.wait_for_selector("body[data-ready=true]")
    await expect(alice.page.locator(entry)).to_contain_text("Busy")
    await expect(alice.page.locator("#status")).to_have_value("busy")
    await alice.page.screenshot(path=tmp_path / "reloaded.png")

    # A second tab of hers opens with it too; back to Online there, and the first tab follows.
    second = await alice.context.new_page()
    await second.goto(f"{web.http_url}/app?room={room}&sheet={sheet}#token={token}")
    await second.wait_for_selector("body[data-ready=true]")
    await expect(second.locator("#status")).to_have_value("busy")
    await second.locator("#status").select_option("online")
    await expect(bob.page.locator(entry)).to_contain_text("Online")
    await expect(second.locator(entry)).to_contain_text("Online")
    await expect(alice.page.locator("#status")).to_have_value("online")
    await expect(alice.page.locator(entry)).to_contain_text("Online")

    # A status picked offline stays picked until it is sent, and everyone sees it then.
    await alice.context.set_offline(True)
    await expect(alice.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await alice.page.locator("#status").select_option("away")
    await cell(alice.page, "C3").click()  # the people list is drawn again, her entry at C3
    await expect(alice.page.locator(entry)).to_contain_text("Offline")
    await expect(alice.page.locator("#status")).to_have_value("away")
    await alice.context.set_offline(False)
    await expect(bob.page.locator(entry)).to_contain_text("Away")
    await expect(alice.page.locator(entry)).to_contain_text("Away")
    await expect(alice.page.locator("#status")).to_have_value("away")
    await expect(second.locator("#status")).to_have_value("away")

    # Picked once more in this tab, and no reconnect since: the picker and her entry follow the room.
    await alice.page.locator("#status").select_option("busy")
    await expect(alice.page.locator(entry)).to_contain_text("Busy")
    await second.locator("#status").select_option("online")
    await expect(alice.page.locator(entry)).to_contain_text("Online")
    await expect(alice.page.locator("#status")).to_have_value("online")
    assert alice.problems() == [] and bob.problems() == []
    for opened in (alice, bob):
        await opened.context.close()


async def test_a_burst_of_conflict_notices_stays_on_screen_below_the_top_bar(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    alice = await open_app(browser, web, "alice", room, sheet)
    chen = await open_app(browser, web, "chen", room, sheet)
    await cell(alice.page, "B2").click()
    await paste(alice.page, "\n".join(str(n) for n in range(12)))
    await expect(cell(chen.page, "B13")).to_have_text("11")

    # Chen types down column B offline while Alice pastes over it: each of his edits is a conflict.
    await chen.context.set_offline(True)
    await expect(chen.page.locator("#connection")).to_have_attribute("data-state", "offline")
    await cell(chen.page, "B2").click()
    for n in range(12):
        await chen.page.keyboard.type(f"chen {n}")
        await chen.page.keyboard.press("Enter")
    await cell(alice.page, "B2").click()
    await paste(alice.page, "\n".join(f"alice {n}" for n in range(12)))
    await chen.context.set_offline(False)
    notices = chen.page.locator(".toast.conflict")
    await expect(notices).to_have_count(12)
    await expect(cell(chen.page, "B13")).to_have_text("alice 11")
    await chen.page.screenshot(path=tmp_path / "notices.png")

    # The notices stay below the top bar, which stays usable, and inside the window; the newest is
    # in view, and every one can be scrolled to and read.
    top_bar = await chen.page.locator(".topbar").bounding_box()
    stack = await chen.page.locator("#toasts").bounding_box()
    assert top_bar is not None and stack is not None
    assert stack["y"] >= top_bar["y"] + top_bar["height"], (stack, top_bar)
    assert stack["y"] + stack["height"] <= chen.page.viewport_size["height"]
    await expect(notices.last).to_contain_text("Conflict on B13")
    await expect(notices.last).to_be_in_viewport()
    await expect(chen.page.locator("#connection")).to_be_in_viewport(ratio=1)
    await notices.first.scroll_into_view_if_needed()
    await expect(notices.first).to_contain_text("Conflict on B2")
    await expect(notices.first).to_be_in_viewport(ratio=1)
    assert alice.problems() == [] and chen.problems() == []
    for opened in (alice, chen):
        await opened.context.close()


async def test_a_direct_message_is_counted_in_the_bell_and_can_be_marked_read_at_once(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    user = unique("bob")
    token = web.token(user, username="bob", roles=["editor"])
    first = await open_app_with(browser, web, token, room, sheet)
    second = await open_app_with(browser, web, token, room, sheet)
    await type_into(first.page, "A1", "Budget")

    sent = await rest(
        web,
        "POST",
        f"/ws/users/{user}/notify",
        json={"type": "direct_message", "title": "Budget review", "message": "Check Q3 travel by Friday"},
    )
    assert sent.status_code == 200, sent.text
    message_id = sent.json()["notification_id"]
    await expect(first.page.locator(".toast", has_text="Check Q3 travel by Friday")).to_be_visible()

    # It is in the bell, as a reload would show it: counted, listed, and marked read from there.
    for tab in (first, second):
        await expect(tab.page.locator("#unread")).to_have_text("1")
    await first.page.locator("#bell").click()
    entry = first.page.locator(f'#notification-list li[data-id="{message_id}"]')
    await expect(entry).to_contain_text("Budget review")
    await expect(entry).to_contain_text("Check Q3 travel by Friday")
    await first.page.screenshot(path=tmp_path / "bell.png")
    await entry.locator("button", has_text="Mark read").click()
    for tab in (first, second):
        await expect(tab.page.locator("#unread")).to_be_hidden()
    listed = await rest(web, "GET", "/notifications", sub=user, roles=["editor"], params={"unread": "true"})
    assert listed.status_code == 200, listed.text
    assert message_id not in [n["id"] for n in listed.json()["notifications"]]
    await second.page.reload()
    await second.page.wait_for_selector("body[data-ready=true]")
    await expect(second.page.locator("#unread")).to_be_hidden()
    assert first.problems() == [] and second.problems() == []
    for opened in (first, second):
        await opened.context.close()
