"""`make screenshots`: real screenshots of the sheet app and the console, for the README and docs/.

Serves the app on a fresh database of the embedded test PostgreSQL, lets two people work on a small
budget in headless Chromium (edits, a cursor, typing, an AI analysis, an upload, a notification), then
photographs the app and the console's overview, connections and audit views.

    python -m tests.browser.screenshots docs/screenshots
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import async_playwright, expect

from engine.log.embedded_postgres import database_url_for, start_embedded_postgres
from engine.log.migrate import upgrade_to_head
from tests.api.conftest import ROOT, Server, serve
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, web_settings
from tests.conftest import admin_execute

ROOM, SHEET = "q3-planning", "budget"
BUDGET = [
    ["Month", "Revenue", "Costs", "Profit", "Customers"],
    ["Jan", 48200, 31900, 16300, 412],
    ["Feb", 51800, 33100, 18700, 438],
    ["Mar", 57400, 34800, 22600, 471],
    ["Apr", 55100, 36200, 18900, 480],
    ["May", 61900, 37000, 24900, 515],
    ["Jun", 66300, 38400, 27900, 548],
    ["Jul", 70800, 39900, 30900, 590],
]


def _cells() -> list[dict[str, Any]]:
    return [
        {"cell_id": f"{'ABCDE'[c]}{r + 1}", "value": value}
        for r, row in enumerate(BUDGET)
        for c, value in enumerate(row)
    ]


async def _app(browser: Any, server: Server, user: str) -> Any:
    context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = await context.new_page()
    token = server.token(user, username=user, roles=["editor"])
    await page.goto(f"{server.http_url}/app?room={ROOM}&sheet={SHEET}#token={token}")
    await page.wait_for_selector("body[data-ready=true]")
    return page


async def _console(browser: Any, server: Server, user: str, role: str, query: str) -> Any:
    context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = await context.new_page()
    token = server.token(user, username=user, roles=[role])
    await page.goto(f"{server.http_url}/console{query}#token={token}")
    await page.wait_for_selector("#connection.ok")
    return page


async def take(out: Path, server: Server) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        alice = await _app(browser, server, "alice")
        bob = await _app(browser, server, "bob")
        await _app(browser, server, "chen")
        # The first version of the numbers, then corrections: the audit view has history to show.
        for cell in _cells():
            await alice.evaluate(
                "([id, v]) => window.collab.sheet.set(id, v)", [cell["cell_id"], cell["value"]]
            )
        await bob.evaluate("() => window.collab.sheet.set('B5', 55900)")
        await bob.evaluate("() => window.collab.sheet.set('D5', 19700)")
        await alice.evaluate("() => window.collab.sheet.set('F1', 'Notes')")
        await alice.evaluate("() => window.collab.sheet.set('F7', 'Best month so far')")

        await alice.locator("#ai-run").click()
        await expect(alice.locator("#ai-status")).to_contain_text("Done")
        csv = "month,revenue\n" + "".join(f"m{i},{i * 37}\n" for i in range(40_000))
        await alice.locator("#upload-input").set_input_files(
            {"name": "q3-forecast.csv", "mimeType": "text/csv", "buffer": csv.encode()}
        )
        await expect(alice.locator("#files li.done")).to_have_count(1)
        admin_token = server.token("root", roles=["admin"])
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            for title, message, priority in (
                ("Budget review", "Finance asked for the Q3 numbers by Friday", "high"),
                ("New comment", "chen commented on C6", "normal"),
            ):
                await http.post(
                    "/api/v1/ws/broadcast/notification",
                    json={"user_id": "alice", "title": title, "message": message, "priority": priority},
                    headers={"Authorization": f"Bearer {admin_token}"},
                )

        await bob.locator('#grid td[data-cell="C6"]').click()
        await bob.mouse.move(330, 330)
        await bob.locator('#grid td[data-cell="E4"]').click()
        await bob.keyboard.type("49")  # typing, not committed
        await alice.locator('#grid td[data-cell="D8"]').click()
        await alice.mouse.move(620, 420)
        await expect(alice.locator('.remote-selection[data-user="bob"].typing')).to_be_visible()
        await expect(alice.locator("#unread")).to_have_text("2")
        await alice.wait_for_timeout(400)
        await alice.screenshot(path=str(out / "app.png"))

        admin = await _console(browser, server, "root", "admin", "?tab=overview")
        for i in range(12):  # some traffic for the chart, one point every two seconds
            await bob.mouse.move(300 + 20 * i, 300 + 10 * i)
            await alice.evaluate("(i) => window.collab.sheet.set('G2', i)", i)
            await admin.wait_for_timeout(700)
        await expect(admin.locator("#rate-chart")).not_to_have_attribute("data-points", "0")
        await admin.screenshot(path=str(out / "console-overview.png"))
        await admin.locator("#tabs button[data-tab=connections]").click()
        await expect(admin.locator("#connections tbody tr")).not_to_have_count(0)
        await admin.screenshot(path=str(out / "console-connections.png"))

        auditor = await _console(browser, server, "audra", "auditor", f"?tab=audit&room={ROOM}")
        await auditor.locator("#audit-form button[type=submit]").click()
        await expect(auditor.locator("#replay-grid table")).to_be_visible()
        await auditor.locator("#timeline tr[data-seq='14']").click()
        await expect(auditor.locator("#replay-grid")).to_have_attribute("data-seq", "14")
        await auditor.locator('#replay-grid td[data-cell="B5"]').click()
        await expect(auditor.locator("#history-list tbody tr")).to_have_count(2)
        await auditor.screenshot(path=str(out / "console-audit.png"))
        await browser.close()


async def main(out: Path) -> None:
    server_url = start_embedded_postgres(ROOT / ".data" / "test")
    name = f"collab_shots_{uuid.uuid4().hex[:8]}"
    await admin_execute(server_url, f'CREATE DATABASE "{name}"')
    try:
        url = database_url_for(server_url, name)
        await asyncio.to_thread(upgrade_to_head, url)
        async with serve(web_settings(url)) as server:
            await take(out, server)
    finally:
        await admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
    for shot in sorted(target.glob("*.png")):
        print(shot)
