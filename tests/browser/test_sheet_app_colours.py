"""People's colours in the sheet app (/app): two people whose ids fall on the same colour of the
palette are drawn in two colours, and everyone in the room sees each person in the same one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.pages import cell, open_app, open_console, unique

# The colours a page shows: each person's in the people list, its own selection's, and the others'
# selections'.
COLOURS = """() => {
    const of = (node) => node.style.getPropertyValue('--who');
    const people = Object.fromEntries(
        [...document.querySelectorAll('#people li')].map((li) => [li.dataset.user, of(li)])
    );
    const others = Object.fromEntries(
        [...document.querySelectorAll('.remote-selection')].map((node) => [node.dataset.user, of(node)])
    );
    return { people, own: of(document.querySelector('.selection-box')), others };
}"""


async def test_two_people_whose_ids_share_a_colour_are_told_apart_alike_on_every_page(
    browser: Any, web: Server, tmp_path: Path
) -> None:
    room, sheet = unique("room"), unique("sheet")
    eve = await open_app(browser, web, "eve", room, sheet)
    # "eve" and "fay" fall on the same colour of the palette by their ids.
    assert await eve.page.evaluate(
        """async () => {
            const { colourFor } = await import('/static/shared/session.js');
            return colourFor('eve') === colourFor('fay');
        }"""
    )
    fay = await open_app(browser, web, "fay", room, sheet)
    await cell(eve.page, "B2").click()
    await cell(fay.page, "D4").click()
    await expect(eve.page.locator('.remote-selection[data-user="fay"]')).to_have_attribute("data-cell", "D4")
    await expect(fay.page.locator('.remote-selection[data-user="eve"]')).to_have_attribute("data-cell", "B2")
    await expect(eve.page.locator("#people li")).to_have_count(2)
    await expect(fay.page.locator("#people li")).to_have_count(2)

    seen_by_eve = await eve.page.evaluate(COLOURS)
    seen_by_fay = await fay.page.evaluate(COLOURS)
    await eve.page.screenshot(path=str(tmp_path / "eve.png"))
    assert seen_by_eve["people"]["eve"] != seen_by_eve["people"]["fay"]
    # Each page draws a person in the colour the people list gives them, and both pages agree.
    assert seen_by_eve["people"] == seen_by_fay["people"]
    assert seen_by_eve["own"] == seen_by_eve["people"]["eve"] == seen_by_fay["others"]["eve"]
    assert seen_by_fay["own"] == seen_by_fay["people"]["fay"] == seen_by_eve["others"]["fay"]
    # The console's room detail shows the two in the same colours.
    admin = await open_console(browser, web, "root", "admin", "?tab=rooms")
    await admin.page.locator("#rooms tr", has_text=room).click()
    member = admin.page.locator("#room-detail .member")
    await expect(member).to_have_count(2)
    in_console = await member.evaluate_all(
        "(rows) => Object.fromEntries(rows.map((row) =>"
        " [row.dataset.user, row.querySelector('.avatar').style.getPropertyValue('--who')]))"
    )
    assert in_console == seen_by_eve["people"]
    assert eve.problems() == [] and fay.problems() == [] and admin.problems() == []
    for opened in (eve, fay, admin):
        await opened.context.close()
