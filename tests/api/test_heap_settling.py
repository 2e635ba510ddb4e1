"""A serving process settles its heap once started (api/server.py `settle_heap`: what startup built is
frozen, young collections come rarer); apps that share a process, as the tests' do, leave it alone."""

from __future__ import annotations

import gc

import orjson

from api.server import YOUNG_COLLECTION_THRESHOLD
from tests.api.conftest import make_settings, receive, serve


async def test_only_a_serving_process_freezes_what_its_startup_built(database_url: str) -> None:
    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        async with serve(make_settings(database_url)):
            assert gc.get_freeze_count() == 0
            assert gc.get_threshold() == thresholds
        async with serve(make_settings(database_url), serving_process=True) as node:
            # The modules, routes and engine objects: far more than any one request allocates.
            assert gc.get_freeze_count() > 50_000
            assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
            async with node.connect(node.token("heap-user")) as ws:
                assert (await receive(ws))["type"] == "connected"
                await ws.send(orjson.dumps({"type": "ping"}).decode())
                assert (await receive(ws))["type"] == "pong"
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
