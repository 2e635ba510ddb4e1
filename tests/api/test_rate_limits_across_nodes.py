"""Rate limits hold per user across nodes: messages a user sent through one node count on the other,
and a block one node imposed refuses the user on the other too (docs/protocol.md, `RATE_LIMIT_EXCEEDED`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api.conftest import RECEIVE_TIMEOUT, Server, fresh_database, make_settings, receive, serve
from tests.api.live_helpers import greet

SYNC = 0.2
PER_MINUTE = 6


@pytest.fixture
async def nodes(server_url: str) -> AsyncIterator[tuple[Server, Server]]:
    async with fresh_database(server_url) as database_url:
        settings = make_settings(
            database_url,
            websocket_requests_per_minute=PER_MINUTE,
            websocket_requests_per_hour=1000,
            websocket_block_duration_minutes=1,
            rate_limit_sync_seconds=SYNC,
        )
        async with serve(settings) as first, serve(settings) as second:
            yield first, second


STATUSES = ("online", "away")


async def status(ws: Any, i: int) -> dict[str, Any]:
    """A counted message whose sender hears nothing back unless it is refused: follow it with a ping
    and return the refusal or the pong (skipping the user's own status changes from other tabs)."""
    await ws.send(f'{{"type": "status_update", "status": "{STATUSES[i % 2]}"}}')
    await ws.send('{"type": "ping"}')
    while True:
        message = await receive(ws)
        if message["type"] in ("pong", "error"):
            if message["type"] == "error":
                assert (await receive_until_pong(ws))["type"] == "pong"
            return message


async def receive_until_pong(ws: Any) -> dict[str, Any]:
    while (message := await receive(ws))["type"] != "pong":
        pass
    return message


async def until_shared(first: Server, second: Server, user: str, minute: float) -> None:
    """Until `second` has heard from `first` that `user` sent `minute` messages (a hang guard)."""
    sync = second.engine.node.rate_sync
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while sync.remote_of(user).minute < minute:
            await sync.exchange()


async def test_a_users_messages_on_one_node_count_on_the_other(nodes: tuple[Server, Server]) -> None:
    first, second = nodes
    async with (
        first.connect(first.token("hal")) as on_first,
        second.connect(second.token("hal")) as on_second,
    ):
        await greet(on_first)
        await greet(on_second)
        for i in range(4):  # 4 of the 6 a minute, through the first node
            assert (await status(on_first, i))["type"] == "pong"
        await until_shared(first, second, "hal", 4)
        # The second node has only 2 left for hal, not 6.
        assert (await status(on_second, 1))["type"] == "pong"
        assert (await status(on_second, 2))["type"] == "pong"
        refused = await status(on_second, 3)
        assert refused["type"] == "error" and refused["code"] == "RATE_LIMIT_EXCEEDED"
        assert refused["retry_after"] >= 1

        # The block the second node imposed reaches the first node: hal is refused there too.
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            while True:
                answer = await status(on_first, 4)
                if answer["type"] == "error":
                    break
                await asyncio.sleep(SYNC / 2)
        assert answer["code"] == "RATE_LIMIT_EXCEEDED"
        assert "per minute" in answer["error"]


async def test_other_users_are_not_limited_by_someone_elses_messages(nodes: tuple[Server, Server]) -> None:
    first, second = nodes
    async with first.connect(first.token("ivy")) as ivy, second.connect(second.token("jon")) as jon:
        await greet(ivy)
        await greet(jon)
        for i in range(5):
            assert (await status(ivy, i))["type"] == "pong"
        for node in (first, second):  # ivy's counts shared, and the second node has read the table
            await node.engine.node.rate_sync.exchange()
        assert second.engine.node.rate_sync.remote_of("jon").minute == 0
        for i in range(5):
            assert (await status(jon, i))["type"] == "pong"
