"""The links `collab serve` prints open the right page as the right person: the token travels in the
URL fragment (never in a query string the server would log), and the page takes it out of the address
bar once read."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect

from api.cli import DEMO_PEOPLE, browser_links
from api.tokens import mint_token
from tests.api.conftest import SECRET, Server
from tests.browser.conftest import VIEWPORT


async def test_printed_links_sign_each_person_in(browser: Any, web: Server) -> None:
    people = {
        (user, role, page): mint_token(web.settings, sub=user, username=user, roles=[role], secret=SECRET)
        for user, role, page in DEMO_PEOPLE
    }
    lines = browser_links(web.http_url, people)
    urls = {line.split()[0]: line.split()[-1] for line in lines}
    assert set(urls) == {"alice", "bob", "audra", "root"}
    for url in urls.values():
        assert "?token=" not in url and "&token=" not in url and re.search(r"#token=\S+$", url)

    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    await page.goto(urls["alice"])
    await page.wait_for_selector("body[data-ready=true]")
    await expect(page.locator("#me")).to_have_text("ALalice")
    assert "token" not in page.url
    await page.reload()  # the token stays with the tab, not in the address bar
    await page.wait_for_selector("body[data-ready=true]")

    admin = await context.new_page()
    await admin.goto(urls["root"])
    await expect(admin.locator("#me .role")).to_have_text("admin")
    await expect(admin.locator("#tabs button[data-tab=connections]")).to_be_visible()
    auditor = await context.new_page()
    await auditor.goto(urls["audra"])
    await expect(auditor.locator("#me .role")).to_have_text("auditor")
    await expect(auditor.locator("#tab-audit")).to_be_visible()
    await context.close()
