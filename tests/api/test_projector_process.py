"""`collab projections run`: the projection tables kept by a process of their own while a real server
process serves the traffic, equal to a rebuild from the log; when it stops, the server's runner takes
over from its checkpoint."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

from sqlalchemy import text
from websockets.asyncio.client import connect

from api.tokens import mint_token
from engine.log.store import EventStore, create_db_engine
from engine.readmodels.rebuild import diff_all
from engine.readmodels.runner import LOCK_CLASS
from tests.api.conftest import ROOT, SECRET, fresh_database, make_settings, start_node_process
from tests.api.live_helpers import greet, join, write_cell
from tests.integration.projection_helpers import caught_up, rows

HANG_GUARD = 30.0  # bounds a wait that would otherwise hang; not a speed check


async def start_projector(url: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "DATABASE_URL": url, "JWT_SECRET_KEY": SECRET, "PROJECTION_INTERVAL_MS": "20"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api.cli", "projections", "run",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(HANG_GUARD):
        line = await proc.stdout.readline()
    assert line.startswith(b"projecting"), line
    return proc


async def lock_is_held(url: str) -> bool:
    """Whether some session holds the projecting lock of every partition of this database's log
    (pg_locks lists every database's)."""
    db_engine = create_db_engine(url, pool_size=1)
    try:
        async with db_engine.connect() as conn:
            partitions = (await conn.execute(text("SELECT count(*) FROM log_head"))).scalar_one()
            held = await conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid = :c AND objsubid = 2 "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"c": LOCK_CLASS},
            )
            return bool(held.scalar_one() == partitions)
    finally:
        await db_engine.dispose()


async def until_lock_is_held(url: str) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while True:
            if await lock_is_held(url):
                return
            await asyncio.sleep(0.05)


async def test_a_projector_process_keeps_the_tables_and_the_server_takes_over(server_url: str) -> None:
    async with fresh_database(server_url) as url:
        projector = await start_projector(url)
        node = None
        db_engine = create_db_engine(url, pool_size=2)
        try:
            await until_lock_is_held(url)  # by the projector, the only process so far
            node, port = await start_node_process(url)
            token = mint_token(make_settings(url), sub="ada", username="ada", secret=SECRET)
            async with connect(f"ws://127.0.0.1:{port}/api/v1/ws?token={token}") as ws:
                await greet(ws)
                await join(ws, "r1")
                for number in range(5):
                    await write_cell(ws, "r1", "s1", f"A{number}", number, cmid=f"a{number}")
                head = await caught_up(db_engine)
                sent = (await rows(db_engine, "rooms", "room_id"))[0]["messages_sent"]
                assert sent >= 5
                assert await diff_all(db_engine) == []

                projector.send_signal(signal.SIGTERM)
                assert projector.stdout is not None
                async with asyncio.timeout(HANG_GUARD):
                    output = (await projector.stdout.read()).decode()
                    assert await projector.wait() == 0
                # It folded every event itself: the server's runner stood by until now.
                applied = re.search(r"stopped after (\d+) events", output)
                assert applied is not None, output
                assert int(applied[1]) == head == sum((await EventStore(db_engine).heads()).values())
                for number in range(5, 8):
                    await write_cell(ws, "r1", "s1", f"A{number}", number, cmid=f"a{number}")
                await caught_up(db_engine)  # the server's runner took the lock and went on
                assert (await rows(db_engine, "rooms", "room_id"))[0]["messages_sent"] == sent + 3
            assert await diff_all(db_engine) == []
        finally:
            for proc in (projector, node):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            await db_engine.dispose()
