"""The real app on a free port for browsers and the JavaScript client's own tests, and a headless
Chromium driven by Playwright.

Browser tests need Debian's Chromium (`apt-get install -y chromium`; `.ci/run` installs it) and the
`playwright` package (a dev dependency). Playwright's own browser downloads are never used: the
browser is launched from CHROMIUM_PATH (default /usr/bin/chromium). Without it the tests are
skipped, with that reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import SECRET, Server, fresh_database, make_settings, serve

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIP_NO_BROWSER = (
    f"browser tests skipped: no Chromium at {CHROMIUM}. Install it with `apt-get install -y chromium` "
    "(.ci/run does) or point CHROMIUM_PATH at one"
)
VIEWPORT = {"width": 1400, "height": 860}


def web_settings(database_url: str, **overrides: Any) -> Any:
    """A person edits faster than the seed's 60 messages a minute allows in a test run."""
    return make_settings(
        database_url,
        websocket_requests_per_minute=1_000_000,
        websocket_requests_per_hour=1_000_000,
        volatile_messages_per_second=1000,
        **overrides,
    )


@pytest.fixture(scope="session")
async def web(server_url: str) -> AsyncIterator[Server]:
    """A server on a database of its own: what browsers leave behind (departures as contexts close,
    typing that expires) is appended after a test ends, and must not land in the shared database
    that other tests count positions in."""
    async with fresh_database(server_url) as database_url, serve(web_settings(database_url)) as running:
        yield running


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not chromium_installed():
        pytest.skip(SKIP_NO_BROWSER)
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("browser tests skipped: the playwright package is missing (pip install -e '.[dev]')")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


def chromium_installed() -> bool:
    return CHROMIUM.is_file()


def node_binary() -> str | None:
    return shutil.which("node")


__all__ = ["CHROMIUM", "SECRET", "VIEWPORT", "node_binary", "web_settings"]
