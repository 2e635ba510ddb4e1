"""/docs and /redoc render with no internet: every request the pages make goes to this server (any
other is aborted and fails the test), and their Content-Security-Policy refuses nothing they load."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import expect

from tests.api.conftest import Server
from tests.browser.conftest import VIEWPORT


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        ("/docs", ".swagger-ui .info .title"),
        ("/redoc", "h1:has-text('collab-engine')"),
        ("/", "text=Real-time collaboration"),
    ],
)
async def test_page_renders_from_this_server_alone(
    browser: Any, web: Server, path: str, rendered: str
) -> None:
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    elsewhere: list[str] = []
    problems: list[str] = []

    async def only_here(route: Any) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", None) or route.request.url.startswith(
            ("data:", "blob:")
        ):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_here)
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.goto(f"{web.http_url}{path}")
    await expect(page.locator(rendered).first).to_be_visible(timeout=20_000)
    if path == "/docs":
        await expect(page.locator(".opblock-tag").first).to_be_visible()
    await page.wait_for_timeout(300)
    assert elsewhere == []
    # ReDoc's bundle draws its "powered by" badge from its own CDN; the policy refuses it, as it should.
    assert [p for p in problems if "cdn.redoc.ly" not in p] == []
    await context.close()
