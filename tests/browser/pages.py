"""Opening the app and the console as a person would (a token in the URL fragment), and what a test
needs to watch: console errors and Content-Security-Policy violations, which fail the test."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect

from tests.api.conftest import Server, receive
from tests.api.rest_helpers import rest
from tests.browser.conftest import VIEWPORT


@dataclass
class Opened:
    """A page and what its browser console said."""

    page: Any
    context: Any
    errors: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Errors, uncaught exceptions and CSP refusals seen so far."""
        return list(self.errors)


async def window_switcher(opened: Opened) -> Callable[[], Awaitable[None]]:
    """What switching to another window and back does to the page: it really loses the focus (not
    only as emulated for a headless page), then gets it back."""
    page = opened.page
    cdp = await opened.context.new_cdp_session(page)
    await cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": False})

    async def switch_away_and_back() -> None:
        other = await opened.context.new_page()
        await other.bring_to_front()
        await page.wait_for_function("() => !document.hasFocus()")
        await page.bring_to_front()
        await page.wait_for_function("() => document.hasFocus()")
        await other.close()

    return switch_away_and_back


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def open_page(
    browser: Any, server: Server, path: str, token: str, *, wait: str | None = None
) -> Opened:
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    opened = Opened(page, context)
    page.on("console", lambda m: m.type == "error" and opened.errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: opened.errors.append(f"page error: {e}"))
    await page.goto(f"{server.http_url}{path}#token={token}")
    if wait:
        await page.wait_for_selector(wait, timeout=15_000)
    return opened


async def open_app(browser: Any, server: Server, user: str, room: str, sheet: str) -> Opened:
    token = server.token(user, username=user, roles=["editor"])
    return await open_app_with(browser, server, token, room, sheet)


async def open_app_with(browser: Any, server: Server, token: str, room: str, sheet: str) -> Opened:
    return await open_page(
        browser, server, f"/app?room={room}&sheet={sheet}", token, wait="body[data-ready=true]"
    )


async def open_console(browser: Any, server: Server, user: str, role: str, query: str = "") -> Opened:
    token = server.token(user, username=user, roles=[role])
    return await open_page(browser, server, f"/console{query}", token, wait="#connection.ok")


async def write_cells(server: Server, user: str, room: str, edits: list[tuple[str, str, str]]) -> None:
    """`user` joins `room` over a WebSocket, writes each (sheet, cell, value), one seq each, and
    leaves; the console's listing of the room has every one of them before this returns."""
    async with server.connect(server.token(user, username=user, roles=["editor"])) as ws:
        assert (await receive(ws))["type"] == "connected"
        messages: list[dict[str, Any]] = [{"type": "join_room", "room_id": room}]
        messages += [
            {"type": "cell_update", "room": room, "sheet_id": sheet, "cell_id": cell, "value": value}
            for sheet, cell, value in edits
        ]
        for n, message in enumerate(messages):
            await ws.send(json.dumps({**message, "client_msg_id": f"m{n}"}))
            while (await receive(ws)).get("type") != "ack":
                pass
    # The leave is recorded after the close; and the console opens a room at the seq its listing has
    # folded, a moment behind the log.
    async with asyncio.timeout(5):
        while True:
            if (await rest(server, "GET", f"/ws/rooms/{room}")).json().get("seq", 0) > len(messages):
                return
            await asyncio.sleep(0.05)


def cell(page: Any, cell_id: str) -> Any:
    return page.locator(f'#grid td[data-cell="{cell_id}"]')


async def type_into(page: Any, cell_id: str, text: str, *, enter: bool = True) -> None:
    """Click the cell and type, as a person does (typing replaces the value, Enter commits)."""
    await cell(page, cell_id).click()
    await page.keyboard.type(text)
    if enter:
        await page.keyboard.press("Enter")


async def server_supports(server: Server, message: dict[str, Any]) -> bool:
    """Whether the server knows a message type: protocol 1.1 pieces may not have landed yet."""
    async with connect(f"{server.ws_url}?token={server.token(unique('probe'))}") as ws:
        await ws.recv()  # connected
        await ws.send(json.dumps(message))
        reply = json.loads(await ws.recv())
    return not (reply.get("type") == "error" and reply.get("code") == "UNKNOWN_MESSAGE_TYPE")


async def paste(page: Any, text: str) -> None:
    """A paste event with `text` on the clipboard, as Ctrl+V from a spreadsheet delivers it."""
    await page.evaluate(
        """(text) => {
            const data = new DataTransfer();
            data.setData('text/plain', text);
            const event = new ClipboardEvent('paste', {clipboardData: data, bubbles: true});
            document.activeElement.dispatchEvent(event);
        }""",
        text,
    )


async def copy(page: Any) -> str:
    """What Ctrl+C puts on the clipboard as text: a copy event on the focused element, read back."""
    return await page.evaluate(
        """() => {
            const data = new DataTransfer();
            const event = new ClipboardEvent('copy', {clipboardData: data, bubbles: true, cancelable: true});
            document.activeElement.dispatchEvent(event);
            return data.getData('text/plain');
        }"""
    )
