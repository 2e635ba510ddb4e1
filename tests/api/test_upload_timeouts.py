"""Uploads that stall, against the real app on a real port with UPLOAD_IDLE_TIMEOUT_SECONDS=1: a PUT
body with no byte for a second is answered 408 and its upload ends in `file_upload_failed`
(idle_timeout) with nothing kept and the id free again; a body that is slow but keeps coming is never
timed out, and its upload is kept fresh in the log while it lasts."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.settings import Settings
from engine.features.storage import LocalFileStorage
from engine.model.catalogue import (
    FILE_UPLOAD_COMPLETED,
    FILE_UPLOAD_FAILED,
    FILE_UPLOAD_STARTED,
    UPLOAD_EVENTS,
)
from engine.model.events import RecordedEvent
from engine.model.streams import user_stream, volatile_stream
from tests.api.conftest import Server, fresh_database, make_settings, request, serve
from tests.api.live_helpers import greet, of_type, until

IDLE = 1.0
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
async def idle_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    settings = make_settings(
        database_url,
        data_dir=tmp_path_factory.mktemp("idle-data"),
        upload_idle_timeout_seconds=IDLE,
        websocket_requests_per_minute=1_000_000,
        websocket_requests_per_hour=1_000_000,
    )
    async with serve(settings) as running:
        yield running


def new_user() -> str:
    return f"idle-user-{uuid.uuid4().hex[:8]}"


def new_file_id() -> str:
    return f"i-{uuid.uuid4().hex[:12]}"


def png(size: int) -> bytes:
    return PNG + os.urandom(size - len(PNG))


def stored_names(server: Server) -> list[str]:
    folder = Path(server.settings.data_dir) / "files"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def upload_events(server: Server, user: str, file_id: str) -> list[RecordedEvent]:
    return await server.engine.store.upload_events(user, file_id)


class RawPut:
    """A PUT written by hand on a TCP connection, so a test decides when each byte is sent."""

    def __init__(self, server: Server, user: str, file_id: str, length: int, query: str = "") -> None:
        self.head = (
            f"PUT /api/v1/files/{file_id}{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {server.token(user)}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
        self.server = server

    async def __aenter__(self) -> RawPut:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        await self.send(self.head)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.writer.close()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, within: float) -> bytes:
        """Everything the server sends until it closes the connection (within `within` seconds)."""
        received = b""
        async with asyncio.timeout(within):
            while chunk := await self.reader.read(65536):
                received += chunk
        return received


async def test_a_stalled_body_is_answered_408_fails_its_upload_and_frees_the_id(idle_server: Server) -> None:
    user, file_id = new_user(), new_file_id()
    data = png(64 * 1024)
    async with idle_server.connect(idle_server.token(user)) as tab:
        await greet(tab)
        async with RawPut(idle_server, user, file_id, len(data), "?filename=stall.png") as put:
            await put.send(data[:10_000])
            stalled = time.monotonic()
            answer = await put.answer(within=IDLE + 5)  # the server closes the connection itself
            waited = time.monotonic() - stalled
        [*_, failed] = await until(tab, of_type("file_upload_failed"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in head.lower()
    assert b'"code":"UPLOAD_TIMEOUT"' in body
    assert IDLE <= waited < IDLE + 2, waited
    assert (failed["reason"], failed["filename"], failed["bytes_uploaded"]) == (
        "idle_timeout",
        "stall.png",
        10_000,
    )
    events = await upload_events(idle_server, user, file_id)
    assert (events[0].type, events[-1].type, events[-1].data["reason"]) == (
        FILE_UPLOAD_STARTED,
        FILE_UPLOAD_FAILED,
        "idle_timeout",
    )
    assert file_id not in stored_names(idle_server)
    assert not any(name.endswith(".part") for name in stored_names(idle_server))
    assert file_id not in idle_server.engine.files._uploading

    headers = {"Authorization": f"Bearer {idle_server.token(user)}", "Content-Type": "image/png"}
    async with httpx.AsyncClient(base_url=idle_server.http_url, timeout=10) as http:
        again = await http.put(
            f"/api/v1/files/{file_id}", content=data, headers=headers, params={"filename": "a.png"}
        )
    assert again.status_code == 201, again.text


async def test_a_body_that_never_starts_records_nothing_unless_the_upload_was_started(
    idle_server: Server,
) -> None:
    """Before its first bytes a PUT claimed nothing: a stall then is a 408 and no event. A
    `file_upload_start` put the upload in the log, so its body stalling ends it."""
    user, lone, started = new_user(), new_file_id(), new_file_id()
    async with RawPut(idle_server, user, lone, 1000, "?filename=a.png") as put:
        assert (await put.answer(within=IDLE + 5)).startswith(b"HTTP/1.1 408 ")
    assert await upload_events(idle_server, user, lone) == []
    async with idle_server.connect(idle_server.token(user)) as tab:
        await greet(tab)
        start = {"type": "file_upload_start", "file_id": started, "filename": "b.png", "file_size": 1000}
        assert (await request(tab, {**start, "client_msg_id": "s"}))["type"] == "ack"
        async with RawPut(idle_server, user, started, 1000) as put:
            assert (await put.answer(within=IDLE + 5)).startswith(b"HTTP/1.1 408 ")
        [*_, failed] = await until(tab, of_type("file_upload_failed"))
    assert (failed["file_id"], failed["reason"], failed["bytes_uploaded"]) == (started, "idle_timeout", 0)


async def test_a_slow_body_that_keeps_coming_is_stored_and_kept_fresh_in_the_log(idle_server: Server) -> None:
    """Gaps shorter than the timeout never fail a body, however long it takes; and while it lasts its
    upload has an event at least every half timeout (what the sweeper of abandoned uploads reads)."""
    user, file_id = new_user(), new_file_id()
    data = png(8 * 1024)
    pieces = [data[i : i + 1024] for i in range(0, len(data), 1024)]
    gap = IDLE * 0.6
    async with RawPut(idle_server, user, file_id, len(data), "?filename=slow.png") as put:
        for piece in pieces:
            await put.send(piece)
            await asyncio.sleep(gap)
        answer = await asyncio.wait_for(put.reader.readuntil(b"\r\n\r\n"), 5)
    assert answer.startswith(b"HTTP/1.1 201 "), answer
    events = await upload_events(idle_server, user, file_id)
    assert (events[0].type, events[-1].type) == (FILE_UPLOAD_STARTED, FILE_UPLOAD_COMPLETED)
    span = (events[-1].recorded_at - events[0].recorded_at).total_seconds()
    assert span > 3 * IDLE  # much longer than the timeout
    gaps = [(b.recorded_at - a.recorded_at).total_seconds() for a, b in itertools.pairwise(events)]
    assert max(gaps) < IDLE * 0.75, gaps
    progress = [e.data["bytes_uploaded"] for e in events if e.stream_id == volatile_stream(user_stream(user))]
    assert progress == sorted(progress)
    assert all(e.type in UPLOAD_EVENTS for e in events)


async def test_a_slow_body_reports_no_more_than_its_start_announced(idle_server: Server) -> None:
    """A socket start announced 100 bytes; the body brings more, slowly. The reports that keep the
    upload fresh while the body waits never tell the tabs more bytes than `total_bytes`: the body
    is refused (413, the upload failed too_large) as soon as it passes the announced size."""
    user, file_id = new_user(), new_file_id()
    head = png(150)

    async def slow() -> AsyncIterator[bytes]:
        yield head
        await asyncio.sleep(IDLE * 0.8)  # past half the timeout: a report is due meanwhile
        yield os.urandom(150)

    async with idle_server.connect(idle_server.token(user)) as tab:
        await greet(tab)
        start = {"type": "file_upload_start", "file_id": file_id, "filename": "b.png", "file_size": 100}
        assert (await request(tab, {**start, "client_msg_id": "s"}))["type"] == "ack"
        async with httpx.AsyncClient(base_url=idle_server.http_url, timeout=10) as http:
            headers = {"Authorization": f"Bearer {idle_server.token(user)}", "Content-Type": "image/png"}
            reply = await http.put(f"/api/v1/files/{file_id}", content=slow(), headers=headers)
        assert reply.status_code == 413, reply.text
        seen = await until(tab, of_type("file_upload_failed"))
    assert seen[-1]["reason"] == "too_large"
    progress = [m for m in seen if m["type"] == "file_upload_progress"]
    assert all(m["bytes_uploaded"] <= m["total_bytes"] for m in progress), progress


def start_message(file_id: str, **extra: object) -> dict[str, object]:
    return {
        "type": "file_upload_start",
        "file_id": file_id,
        "filename": "never.csv",
        "file_size": 100,
        **extra,
    }


async def test_a_socket_start_whose_put_never_comes_expires_for_every_tab(idle_server: Server) -> None:
    """No PUT, no progress: after the idle timeout (plus at most a sweep interval) the upload ends in
    `file_upload_failed` (idle_timeout), which the starting tab hears too, and its owner may start
    the id again while it stays refused to anyone else."""
    user, other, file_id = new_user(), new_user(), new_file_id()
    async with (
        idle_server.connect(idle_server.token(user)) as tab,
        idle_server.connect(idle_server.token(user)) as other_tab,
        idle_server.connect(idle_server.token(other)) as stranger,
    ):
        for ws in (tab, other_tab, stranger):
            await greet(ws)
        ack = await request(tab, start_message(file_id, client_msg_id="s1"))
        started = time.monotonic()
        assert ack["type"] == "ack"
        [failed] = await until(tab, of_type("file_upload_failed"))
        waited = time.monotonic() - started
        [*_, seen] = await until(other_tab, of_type("file_upload_failed"))
        assert seen == failed
        assert failed == {
            "type": "file_upload_failed",
            "file_id": file_id,
            "filename": "never.csv",
            "reason": "idle_timeout",
            "bytes_uploaded": 0,
            "user_id": user,
            "seq": ack["seq"] + 1,
            "ts": failed["ts"],
        }
        assert IDLE <= waited < IDLE + 1.5, waited
        refused = await request(stranger, start_message(file_id, client_msg_id="x"))
        assert (refused["type"], refused["code"]) == ("error", "VALIDATION_ERROR")
        assert (await request(tab, start_message(file_id, client_msg_id="s2")))["type"] == "ack"
    events = await upload_events(idle_server, user, file_id)
    assert [e.type for e in events] == [FILE_UPLOAD_STARTED, FILE_UPLOAD_FAILED, FILE_UPLOAD_STARTED]


async def test_progress_over_the_socket_keeps_an_upload_alive_until_it_stops(idle_server: Server) -> None:
    user, file_id = new_user(), new_file_id()
    progress = {"type": "file_upload_progress", "file_id": file_id, "total_bytes": 100, "percentage": 1}
    async with idle_server.connect(idle_server.token(user)) as tab:
        await greet(tab)
        assert (await request(tab, start_message(file_id, client_msg_id="s")))["type"] == "ack"
        for done in range(1, 6):  # 2.5 timeouts in all, never a whole one without news
            await asyncio.sleep(IDLE / 2)
            reply = await request(tab, {**progress, "bytes_uploaded": done, "client_msg_id": f"p{done}"})
            assert reply["type"] == "ack", reply
        stopped = time.monotonic()
        [*_, failed] = await until(tab, of_type("file_upload_failed"))
        assert IDLE - 0.1 <= time.monotonic() - stopped < IDLE + 1.5
    assert (failed["reason"], failed["bytes_uploaded"]) == ("idle_timeout", 5)


async def test_expiry_is_decided_from_the_log_so_it_survives_a_restart(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A node that never saw the upload start (its predecessor on a database of their own did, then
    stopped) expires it: nothing of the decision lives in a node's memory."""
    user, file_id = new_user(), new_file_id()
    async with fresh_database(server_url) as database_url:
        first = make_settings(database_url, data_dir=tmp_path_factory.mktemp("restart-a"))  # 30 s
        async with serve(first) as before, before.connect(before.token(user)) as tab:
            await greet(tab)
            assert (await request(tab, start_message(file_id, client_msg_id="s")))["type"] == "ack"
        second = make_settings(
            database_url, data_dir=tmp_path_factory.mktemp("restart-b"), upload_idle_timeout_seconds=IDLE
        )
        await _restarted(second, user, file_id)


async def _restarted(settings: Settings, user: str, file_id: str) -> None:
    async with serve(settings) as after, after.connect(after.token(user)) as tab:
        await greet(tab)
        [*_, failed] = await until(tab, of_type("file_upload_failed"))
        assert (failed["file_id"], failed["reason"]) == (file_id, "idle_timeout")
        failures = [e for e in await upload_events(after, user, file_id) if e.type == FILE_UPLOAD_FAILED]
        assert len(failures) == 1
        assert failures[0].metadata["node"] == after.engine.node_id


async def test_a_body_whose_file_another_process_is_storing_is_503_and_its_upload_stays_open(
    server_url: str, tmp_path: Path
) -> None:
    """Another process sharing the storage folder holds the id's lock for longer than a body may wait
    (a quarter of the idle timeout): the PUT answers 503, retryable, records no end, and the same
    upload completes when the PUT is tried again. On a database of its own: the sweepers of this
    module's other servers (idle after 1 s) would expire the upload meanwhile."""
    user, file_id, data = new_user(), new_file_id(), png(4096)
    async with fresh_database(server_url) as url:
        settings = make_settings(url, data_dir=tmp_path, upload_idle_timeout_seconds=8.0)
        async with serve(settings) as server, httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
            headers = {"Authorization": f"Bearer {server.token(user)}", "Content-Type": "image/png"}
            url_path, named = f"/api/v1/files/{file_id}", {"filename": "a.png"}
            other_process = LocalFileStorage(tmp_path / "files")
            async with other_process.exclusive(file_id, wait_seconds=5.0):
                held = await http.put(url_path, content=data, headers=headers, params=named)
            assert (held.status_code, held.json()["retryable"]) == (503, True)
            assert FILE_UPLOAD_FAILED not in [e.type for e in await upload_events(server, user, file_id)]
            assert file_id not in stored_names(server)
            again = await http.put(url_path, content=data, headers=headers)
            assert again.status_code == 201, again.text
            kinds = [e.type for e in await upload_events(server, user, file_id)]
    assert (kinds.count(FILE_UPLOAD_STARTED), kinds[-1]) == (1, FILE_UPLOAD_COMPLETED)
