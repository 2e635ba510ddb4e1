"""File bodies over REST against the real app and real sockets: a streamed upload reported to the
uploader's sockets (`file_upload_started`, `file_upload_progress` in order, `file_upload_complete`
with the sha256), the download's bytes and headers and who may have them, and every refusal
(size by Content-Length and streamed, type, traversal, someone else's id) keeping nothing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.model.catalogue import (
    FILE_UPLOAD_COMPLETED,
    FILE_UPLOAD_FAILED,
    FILE_UPLOAD_PROGRESSED,
    FILE_UPLOAD_STARTED,
)
from engine.model.streams import user_stream
from tests.api.conftest import Server, fresh_database, make_settings, request, serve, wait_for_events
from tests.api.live_helpers import greet, join, of_type, pending, send, until

LIMIT = 4 * 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n"
PDF = b"%PDF-1.7\n"


@pytest.fixture(scope="module")
async def files_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    settings = make_settings(
        database_url,
        data_dir=tmp_path_factory.mktemp("files-data"),
        max_upload_bytes=LIMIT,
        websocket_requests_per_minute=1_000_000,
        websocket_requests_per_hour=1_000_000,
    )
    async with serve(settings) as running:
        yield running


def new_user() -> str:
    return f"file-user-{uuid.uuid4().hex[:8]}"


def new_file_id() -> str:
    return f"f-{uuid.uuid4().hex[:12]}"


def auth(server: Server, user: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user, **claims)}"}


def png(size: int) -> bytes:
    return PNG + os.urandom(size - len(PNG))


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def put(
    server: Server, user: str, file_id: str, content: Any, *, content_type: str = "image/png", **params: Any
) -> httpx.Response:
    headers = {**auth(server, user), "Content-Type": content_type}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        return await http.put(f"/api/v1/files/{file_id}", content=content, headers=headers, params=params)


async def get(server: Server, file_id: str, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        return await http.get(f"/api/v1/files/{file_id}", headers=headers)


def stored_names(server: Server) -> list[str]:
    folder = Path(server.settings.data_dir) / "files"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_upload_reports_progress_in_order_then_complete_to_the_uploaders_sockets(
    files_server: Server, room: str
) -> None:
    user, other = new_user(), new_user()
    file_id, data = new_file_id(), png(3 * 1024 * 1024)
    async with (
        files_server.connect(files_server.token(user)) as tab,
        files_server.connect(files_server.token(other)) as stranger,
    ):
        await greet(tab)
        await greet(stranger)
        reply = await put(files_server, user, file_id, data, filename="chart.png", room_id=room)
        assert reply.status_code == 201, reply.text
        messages = await until(tab, of_type("file_upload_complete"))
        assert await pending(stranger) == []
    digest = hashlib.sha256(data).hexdigest()
    url = f"/api/v1/files/{file_id}"
    assert reply.headers["location"] == url
    assert reply.json() == {
        "file_id": file_id,
        "filename": "chart.png",
        "url": url,
        "user_id": user,
        "size": len(data),
        "sha256": digest,
        "content_type": "image/png",
        "room_id": room,
    }
    assert messages[0]["type"] == "file_upload_started"
    progress = [m for m in messages if m["type"] == "file_upload_progress"]
    assert 2 <= len(progress) <= 20  # throttled: not one per 64 KiB chunk
    done = [m["bytes_uploaded"] for m in progress]
    assert done == sorted(done) and len(set(done)) == len(done)
    assert all(m["total_bytes"] == len(data) and 0 < m["percentage"] < 100 for m in progress)
    assert [m["percentage"] for m in progress] == sorted(m["percentage"] for m in progress)
    complete = messages[-1]
    assert {k: complete[k] for k in ("file_id", "filename", "url", "user_id", "size", "sha256")} == {
        "file_id": file_id,
        "filename": "chart.png",
        "url": url,
        "user_id": user,
        "size": len(data),
        "sha256": digest,
    }
    assert isinstance(complete["seq"], int)


async def test_download_serves_the_same_bytes_with_safe_headers(files_server: Server) -> None:
    user, file_id, data = new_user(), new_file_id(), png(300 * 1024)
    reply = await put(files_server, user, file_id, chunked(data), filename='q3 "final" €.png')
    assert reply.status_code == 201, reply.text
    got = await get(files_server, file_id, auth(files_server, user))
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-type"] == "image/png"
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"q3 _final_ _.png\"; filename*=UTF-8''q3%20%22final%22%20%E2%82%AC.png"
    )
    again = await get(
        files_server, file_id, {**auth(files_server, user), "If-None-Match": got.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


async def test_text_declared_as_html_is_served_as_plain_text(files_server: Server) -> None:
    user, file_id = new_user(), new_file_id()
    reply = await put(
        files_server, user, file_id, b"<script>alert(1)</script>", content_type="text/html", filename="x.html"
    )
    assert reply.status_code == 201, reply.text
    got = await get(files_server, file_id, auth(files_server, user))
    assert got.headers["content-type"].startswith("text/plain")


async def test_only_owner_admins_and_readers_of_the_shared_room_may_download(
    files_server: Server, room: str
) -> None:
    owner, file_id = new_user(), new_file_id()
    shared, private = new_file_id(), new_file_id()
    assert (
        await put(files_server, owner, shared, png(1000), filename="s.png", room_id=room)
    ).status_code == 201
    assert (await put(files_server, owner, private, png(1000), filename="p.png")).status_code == 201
    member = auth(files_server, new_user(), rooms=[room])
    outsider = auth(files_server, new_user(), rooms=["elsewhere-*"])
    admin = auth(files_server, new_user(), roles=["admin"])
    async with httpx.AsyncClient(base_url=files_server.http_url) as http:
        assert (await http.get(f"/api/v1/files/{shared}", headers=member)).status_code == 200
        assert (await http.get(f"/api/v1/files/{shared}", headers=admin)).status_code == 200
        assert (await http.get(f"/api/v1/files/{private}", headers=admin)).status_code == 200
        for headers, fid in ((outsider, shared), (member, private), (outsider, private), (member, file_id)):
            denied = await http.get(f"/api/v1/files/{fid}", headers=headers)
            assert denied.status_code == 404
            assert denied.json()["code"] == "NOT_FOUND"
        assert (await http.get(f"/api/v1/files/{shared}")).status_code == 401


async def test_filename_comes_from_the_websocket_start(files_server: Server) -> None:
    user, file_id, data = new_user(), new_file_id(), png(2000)
    async with files_server.connect(files_server.token(user)) as tab:
        await greet(tab)
        start = {
            "type": "file_upload_start",
            "file_id": file_id,
            "filename": "from-socket.png",
            "file_size": len(data),
            "mime_type": "image/png",
            "client_msg_id": "start-1",
        }
        assert (await request(tab, start))["type"] == "ack"
        conflicting = await put(files_server, user, file_id, data, filename="other.png")
        assert conflicting.status_code == 422
        reply = await put(files_server, user, file_id, data)
        assert reply.status_code == 201, reply.text
        [*_, complete] = await until(tab, of_type("file_upload_complete"))
    assert reply.json()["filename"] == complete["filename"] == "from-socket.png"
    stream = await files_server.engine.store.read_stream(user_stream(user))
    assert [e.type for e in stream] == [FILE_UPLOAD_STARTED, FILE_UPLOAD_COMPLETED]


async def test_a_socket_start_while_a_put_of_its_id_awaits_its_body_makes_the_put_its_body(
    files_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PUT found the id free and waits for its body; meanwhile a tab starts the id over the socket
    and is acked. The PUT checks again before it begins an upload, under the lock the socket's start
    took: it is that upload's body, so the stream holds one start and the other tab hears one."""
    user, file_id, data = new_user(), new_file_id(), png(2000)
    files = files_server.engine.files
    checked, body = asyncio.Event(), asyncio.Event()
    read = files.shared_file

    async def shared_file(wanted: str) -> Any:
        found = await read(wanted)
        if wanted == file_id:
            checked.set()
        return found

    async def held() -> AsyncIterator[bytes]:
        await body.wait()
        yield data

    monkeypatch.setattr(files, "shared_file", shared_file)
    async with (
        files_server.connect(files_server.token(user)) as tab,
        files_server.connect(files_server.token(user)) as other,
    ):
        await greet(tab)
        await greet(other)
        putting = asyncio.create_task(put(files_server, user, file_id, held(), filename="a.png"))
        async with asyncio.timeout(5):
            await checked.wait()
        start = {"type": "file_upload_start", "file_id": file_id, "filename": "a.png", "file_size": 2000}
        assert (await request(tab, {**start, "client_msg_id": "s1"}))["type"] == "ack"
        body.set()
        reply = await putting
        assert reply.status_code == 201, reply.text
        heard = await until(other, of_type("file_upload_complete"))
    assert [m["type"] for m in heard if m["type"] != "file_upload_progress"] == [
        "file_upload_started",
        "file_upload_complete",
    ]
    stream = await files_server.engine.store.read_stream(user_stream(user))
    assert [e.type for e in stream] == [FILE_UPLOAD_STARTED, FILE_UPLOAD_COMPLETED]
    assert (await get(files_server, file_id, auth(files_server, user))).content == data


async def test_body_over_the_limit_by_content_length_is_413_before_reading(files_server: Server) -> None:
    user, file_id = new_user(), new_file_id()
    reader, writer = await asyncio.open_connection("127.0.0.1", files_server.port)
    try:
        head = (
            f"PUT /api/v1/files/{file_id}?filename=big.png HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {files_server.token(user)}\r\n"
            f"Content-Type: image/png\r\nContent-Length: {LIMIT + 1}\r\n\r\n"
        )
        writer.write(head.encode())  # no body at all: the answer must not wait for it
        await writer.drain()
        response = await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b'"code":"PAYLOAD_TOO_LARGE"' in response
    await _assert_nothing_of(files_server, user, file_id)


async def test_a_socket_started_upload_whose_body_is_too_large_by_content_length_ends_too_large(
    files_server: Server,
) -> None:
    """A `file_upload_start` within the limit (one over it is refused at once), then a PUT whose
    Content-Length says the body is over the limit (the file grew, or a restart lowered the limit in
    between). The 413 comes before a byte is read, and the upload the socket started ends there and
    then in `file_upload_failed` (too_large), as a streamed body would, rather than waiting for the
    idle timeout: every tab hears why, and the owner may start the id again at once."""
    user, file_id = new_user(), new_file_id()
    start = {"type": "file_upload_start", "file_id": file_id, "filename": "big.png", "file_size": LIMIT}
    async with (
        files_server.connect(files_server.token(user)) as tab,
        files_server.connect(files_server.token(user)) as other,
    ):
        await greet(tab)
        await greet(other)
        assert (await request(tab, {**start, "client_msg_id": "s1"}))["type"] == "ack"
        reply = await put(files_server, user, file_id, png(LIMIT + 1))
        assert (reply.status_code, reply.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
        [*_, failed] = await until(other, of_type("file_upload_failed"))
        assert (failed["file_id"], failed["reason"], failed["filename"], failed["bytes_uploaded"]) == (
            file_id,
            "too_large",
            "big.png",
            0,
        )
        await send(tab, {**start, "file_size": 100, "client_msg_id": "s2"})
        heard = await until(tab, lambda m: m.get("client_msg_id") == "s2")
        assert [m["type"] for m in heard] == ["file_upload_failed", "ack"]  # the starting tab hears it too
    types = [e.type for e in await files_server.engine.store.read_stream(user_stream(user))]
    assert types == [FILE_UPLOAD_STARTED, FILE_UPLOAD_FAILED, FILE_UPLOAD_STARTED]
    assert file_id not in stored_names(files_server)


async def test_streamed_body_over_the_limit_is_413_ends_the_upload_failed_and_frees_the_id(
    files_server: Server,
) -> None:
    """A chunked body has no Content-Length: it is claimed and reported on until it crosses the limit.
    Then the upload ends in `FileUploadFailed` (too_large), which every tab hears, and the same id
    can be uploaded again."""
    user, file_id = new_user(), new_file_id()
    async with files_server.connect(files_server.token(user)) as tab:
        await greet(tab)
        reply = await put(files_server, user, file_id, chunked(png(LIMIT + 256 * 1024)), filename="big.png")
        assert reply.status_code == 413
        assert reply.json()["code"] == "PAYLOAD_TOO_LARGE"
        messages = await until(tab, of_type("file_upload_failed"))
        assert file_id not in stored_names(files_server)
        assert not any(name.endswith(".part") for name in stored_names(files_server))
        assert (await get(files_server, file_id, auth(files_server, user))).status_code == 404
        stream = await files_server.engine.store.read_stream(user_stream(user))
        assert [e.type for e in stream] == [FILE_UPLOAD_STARTED, FILE_UPLOAD_FAILED]
        failed = messages[-1]
        assert failed == {
            "type": "file_upload_failed",
            "file_id": file_id,
            "filename": "big.png",
            "reason": "too_large",
            "bytes_uploaded": failed["bytes_uploaded"],
            "user_id": user,
            "seq": stream[-1].stream_version,
            "ts": failed["ts"],
        }
        assert LIMIT < failed["bytes_uploaded"] <= LIMIT + 256 * 1024  # it stopped at the chunk that crossed
        assert messages[0]["type"] == "file_upload_started"
        assert {m["type"] for m in messages[1:-1]} <= {"file_upload_progress"}

        data = png(5000)
        again = await put(files_server, user, file_id, data, filename="small.png")
        assert again.status_code == 201, again.text
        [*_, complete] = await until(tab, of_type("file_upload_complete"))
    assert (complete["filename"], complete["size"]) == ("small.png", len(data))
    assert (await get(files_server, file_id, auth(files_server, user))).content == data
    types = [e.type for e in await files_server.engine.store.read_stream(user_stream(user))]
    assert types == [FILE_UPLOAD_STARTED, FILE_UPLOAD_FAILED, FILE_UPLOAD_STARTED, FILE_UPLOAD_COMPLETED]


async def test_a_failed_upload_started_over_the_socket_can_be_started_again_by_its_owner_only(
    files_server: Server,
) -> None:
    user, other, file_id = new_user(), new_user(), new_file_id()
    start = {"type": "file_upload_start", "file_id": file_id, "filename": "big.png", "file_size": LIMIT}
    async with (
        files_server.connect(files_server.token(user)) as tab,
        files_server.connect(files_server.token(other)) as stranger,
    ):
        await greet(tab)
        await greet(stranger)
        assert (await request(tab, {**start, "client_msg_id": "s1"}))["type"] == "ack"
        reply = await put(files_server, user, file_id, chunked(png(LIMIT + 256 * 1024)))
        assert reply.status_code == 413
        [*_, failed] = await until(tab, of_type("file_upload_failed"))  # the starting tab hears it too
        assert (failed["reason"], failed["filename"]) == ("too_large", "big.png")
        refused = await request(stranger, {**start, "client_msg_id": "x"})
        assert (refused["type"], refused["code"]) == ("error", "VALIDATION_ERROR")
        taken = await put(files_server, other, file_id, png(100), filename="mine.png")
        assert taken.status_code == 409
        progress = {"type": "file_upload_progress", "file_id": file_id, "bytes_uploaded": 1}
        late = await request(tab, {**progress, "total_bytes": 2, "percentage": 50, "client_msg_id": "p"})
        assert (late["type"], late["code"]) == ("error", "VALIDATION_ERROR")  # start it again first
        assert (await request(tab, {**start, "file_size": 100, "client_msg_id": "s2"}))["type"] == "ack"
        data = png(100)
        assert (await put(files_server, user, file_id, data)).status_code == 201
    assert (await get(files_server, file_id, auth(files_server, user))).content == data
    assert await files_server.engine.store.stream_version(user_stream(other)) == 0


async def test_a_body_longer_than_its_socket_start_announced_is_413_and_ends_the_upload(
    files_server: Server,
) -> None:
    """`file_upload_start` announced 1000 bytes; a PUT that sends more is not the file announced (and
    its progress would pass the `total_bytes` the tabs were told). Refused like a body over the limit:
    413 by its Content-Length before a byte is read, or as soon as a streamed body passes the size, and
    the upload ends in `file_upload_failed` (too_large), nothing kept and the id free again."""
    user = new_user()
    async with files_server.connect(files_server.token(user)) as tab:
        await greet(tab)
        for file_id, body in ((new_file_id(), png(2000)), (new_file_id(), chunked(png(1024 * 1024)))):
            start = {"type": "file_upload_start", "file_id": file_id, "filename": "a.png", "file_size": 1000}
            assert (await request(tab, {**start, "client_msg_id": f"s-{file_id}"}))["type"] == "ack"
            reply = await put(files_server, user, file_id, body)
            assert (reply.status_code, reply.json()["code"]) == (413, "PAYLOAD_TOO_LARGE"), reply.text
            assert "file_size of 1000 bytes" in reply.json()["error"]
            seen = await until(tab, of_type("file_upload_failed"))
            failed = seen[-1]
            assert (failed["file_id"], failed["reason"]) == (file_id, "too_large")
            assert failed["bytes_uploaded"] <= 256 * 1024  # it stopped at the chunk that passed the size
            progress = [m for m in seen if m["type"] == "file_upload_progress"]
            assert all(m["bytes_uploaded"] <= m["total_bytes"] for m in progress), progress
            assert file_id not in stored_names(files_server)
            data = png(1000)
            assert (await request(tab, {**start, "client_msg_id": f"again-{file_id}"}))["type"] == "ack"
            assert (await put(files_server, user, file_id, data)).status_code == 201
            await until(tab, of_type("file_upload_complete"))
            assert (await get(files_server, file_id, auth(files_server, user))).content == data


async def test_a_body_shorter_than_its_socket_start_announced_is_422_and_ends_the_upload(
    files_server: Server, room: str
) -> None:
    """`file_upload_start` announced 1 MiB; a PUT that brings less is a truncated file, not the one
    announced, and must never be shown complete. Refused 422 naming both sizes: by its Content-Length
    before a byte is read, or once a streamed body has ended short. Nothing is kept, the upload ends in
    `file_upload_failed` (too_short) for every tab of the uploader, a member of the room the file was
    to be shared in hears nothing and cannot download it, and the owner may start the id again."""
    user, announced, short = new_user(), 1024 * 1024, 600 * 1024
    member_token = files_server.token(new_user(), rooms=[room])
    async with (
        files_server.connect(files_server.token(user)) as tab,
        files_server.connect(files_server.token(user)) as other_tab,
        files_server.connect(member_token) as member,
    ):
        for ws in (tab, other_tab, member):
            await greet(ws)
        await join(member, room)
        await join(tab, room)
        await pending(member)  # the owner's join
        cases = ((new_file_id(), png(short), 0), (new_file_id(), chunked(png(short)), short))
        for file_id, body, received in cases:
            start = {
                "type": "file_upload_start",
                "file_id": file_id,
                "filename": "a.png",
                "file_size": announced,
            }
            assert (await request(tab, {**start, "client_msg_id": f"s-{file_id}"}))["type"] == "ack"
            await until(other_tab, of_type("file_upload_started", file_id=file_id))
            reply = await put(files_server, user, file_id, body, room_id=room)
            assert reply.status_code == 422, reply.text
            refusal = reply.json()
            assert (refusal["code"], refusal["file_size"], refusal["size"]) == (
                "VALIDATION_ERROR",
                announced,
                short,
            )
            assert f"body of {short} bytes" in refusal["error"]
            assert f"file_size of {announced} bytes" in refusal["error"]

            seen = await until(tab, of_type("file_upload_failed"))
            failed = seen[-1]
            events = await files_server.engine.store.upload_events(user, file_id)
            assert [e.type for e in events if e.type != FILE_UPLOAD_PROGRESSED] == [
                FILE_UPLOAD_STARTED,
                FILE_UPLOAD_FAILED,
            ]
            assert failed == {
                "type": "file_upload_failed",
                "file_id": file_id,
                "filename": "a.png",
                "reason": "too_short",
                "bytes_uploaded": received,
                "user_id": user,
                "seq": events[-1].stream_version,
                "ts": failed["ts"],
            }
            assert [m["type"] for m in seen[:-1]] == ["file_upload_progress"] * (len(seen) - 1)
            assert all(m["bytes_uploaded"] <= short < m["total_bytes"] for m in seen[:-1]), seen
            [*_, also] = await until(other_tab, of_type("file_upload_failed"))
            assert also == failed
            assert await pending(member) == []

            assert file_id not in stored_names(files_server)
            assert not any(name.endswith(".part") for name in stored_names(files_server))
            for headers in (auth(files_server, user), {"Authorization": f"Bearer {member_token}"}):
                assert (await get(files_server, file_id, headers)).status_code == 404

            data = png(announced)
            assert (await request(tab, {**start, "client_msg_id": f"again-{file_id}"}))["type"] == "ack"
            assert (await put(files_server, user, file_id, data, room_id=room)).status_code == 201
            [*_, complete] = await until(tab, of_type("file_upload_complete"))
            assert (complete["file_id"], complete["size"]) == (file_id, announced)
            await until(other_tab, of_type("file_upload_complete"))
            assert await pending(member) == []
            downloaded = await get(files_server, file_id, {"Authorization": f"Bearer {member_token}"})
            assert downloaded.content == data


async def test_a_client_gone_mid_body_of_an_announced_size_still_ends_the_upload_aborted(
    files_server: Server,
) -> None:
    """A body that stops short because its client went away is not a complete body shorter than
    announced: whether its length came by Content-Length or the body was chunked, the upload ends in
    `file_upload_failed` (aborted), and the id is free again."""
    user, announced = new_user(), 600 * 1024
    data = png(announced)

    async def broken() -> AsyncIterator[bytes]:
        yield data[: 300 * 1024]
        raise ConnectionAbortedError("client gave up")

    async def by_length(file_id: str) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", files_server.port)
        head = (
            f"PUT /api/v1/files/{file_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {files_server.token(user)}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {announced}\r\n\r\n"
        )
        writer.write(head.encode() + data[: 300 * 1024])
        await writer.drain()
        await until(tab, of_type("file_upload_progress", file_id=file_id))  # the bytes are in
        writer.close()
        await writer.wait_closed()

    async def chunked_broken(file_id: str) -> None:
        with pytest.raises(ConnectionAbortedError):
            await put(files_server, user, file_id, broken())

    async with files_server.connect(files_server.token(user)) as tab:
        await greet(tab)
        for send_part in (by_length, chunked_broken):
            file_id = new_file_id()
            start = {
                "type": "file_upload_start",
                "file_id": file_id,
                "filename": "a.png",
                "file_size": announced,
            }
            assert (await request(tab, {**start, "client_msg_id": f"s-{file_id}"}))["type"] == "ack"
            await send_part(file_id)
            [*_, failed] = await until(tab, of_type("file_upload_failed"))
            assert (failed["file_id"], failed["reason"]) == (file_id, "aborted")
            assert 0 < failed["bytes_uploaded"] <= 300 * 1024
            await _until_no_body_of(files_server, file_id)
            assert file_id not in stored_names(files_server)
            assert (await request(tab, {**start, "client_msg_id": f"again-{file_id}"}))["type"] == "ack"
            assert (await put(files_server, user, file_id, data)).status_code == 201
            await until(tab, of_type("file_upload_complete"))


async def test_a_socket_start_of_size_zero_bounds_nothing_and_its_body_reports_progress(
    files_server: Server,
) -> None:
    """`file_size` 0 announces no size (as the server's own start of a chunked body records it): the
    body is stored whatever its length, reported as of unknown length (`total_bytes` 0)."""
    user, file_id, data = new_user(), new_file_id(), png(1024 * 1024)
    start = {"type": "file_upload_start", "file_id": file_id, "filename": "a.png", "file_size": 0}
    async with files_server.connect(files_server.token(user)) as tab:
        await greet(tab)
        assert (await request(tab, {**start, "client_msg_id": "s"}))["type"] == "ack"
        assert (await put(files_server, user, file_id, chunked(data))).status_code == 201
        seen = await until(tab, of_type("file_upload_complete"))
    progress = [m for m in seen if m["type"] == "file_upload_progress"]
    assert progress and all((m["total_bytes"], m["percentage"]) == (0, 0) for m in progress), progress
    assert seen[-1]["size"] == len(data)


async def test_declared_type_contradicting_the_bytes_is_refused_and_changes_nothing(
    files_server: Server,
) -> None:
    user, file_id = new_user(), new_file_id()
    reply = await put(
        files_server, user, file_id, PDF + b"x" * 5000, content_type="image/png", filename="a.png"
    )
    assert reply.status_code == 422
    body = reply.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert (body["declared"], body["sniffed"]) == ("image/png", "application/pdf")
    await _assert_nothing_of(files_server, user, file_id)


@pytest.mark.parametrize(
    ("content_type", "data", "served"),
    [
        ("text/csv", "Name;Price\nCafé;3 €\n".encode("cp1252"), "text/csv"),
        ("text/plain", "Name\tPrice\nCafé\t3 €\n".encode("utf-16"), "text/plain; charset=utf-16"),
        ("text/csv", "Name;Price\nCafé;3 €\n".encode(), "text/csv; charset=utf-8"),
    ],
)
async def test_a_csv_declared_as_text_is_stored_whatever_its_encoding(
    files_server: Server, content_type: str, data: bytes, served: str
) -> None:
    """Excel saves CSV as Windows-1252 or as UTF-16 with a byte order mark: declared as text, the
    bytes are stored as they came, with the declared type, and served with the charset they tell
    (none for Windows-1252, which no bytes tell: a wrong label would be worse)."""
    user, file_id = new_user(), new_file_id()
    reply = await put(files_server, user, file_id, data, content_type=content_type, filename="prices.csv")
    assert reply.status_code == 201, reply.text
    assert reply.json()["content_type"] == content_type
    got = await get(files_server, file_id, auth(files_server, user))
    assert (got.content, got.headers["content-type"]) == (data, served)


@pytest.mark.parametrize("content_type", ["not a type", "text", "text/csv; name=" + "x" * 300])
async def test_a_content_type_that_is_no_media_type_is_422_and_changes_nothing(
    files_server: Server, content_type: str
) -> None:
    """The declared type becomes the upload's `mime_type`, which `file_upload_started` shows every
    tab and which the socket's `file_upload_start` only takes as a media type: a PUT's Content-Type
    is held to the same rule, and one that breaks it is refused before anything is recorded, also
    for an upload the socket started (it stays as it was, for a PUT with a good type)."""
    user, file_id, data = new_user(), new_file_id(), b"a,b\n1,2\n"
    async with files_server.connect(files_server.token(user)) as tab:
        await greet(tab)
        fresh = await put(files_server, user, file_id, data, content_type=content_type, filename="a.csv")
        assert (fresh.status_code, fresh.json()["code"]) == (422, "VALIDATION_ERROR"), fresh.text
        await _assert_nothing_of(files_server, user, file_id)
        start = {"type": "file_upload_start", "file_id": file_id, "filename": "a.csv", "file_size": 8}
        assert (await request(tab, {**start, "client_msg_id": "s1"}))["type"] == "ack"
        body = await put(files_server, user, file_id, data, content_type=content_type)
        assert (body.status_code, body.json()["code"]) == (422, "VALIDATION_ERROR"), body.text
        assert await pending(tab) == []
        assert (await put(files_server, user, file_id, data, content_type="text/csv")).status_code == 201
    types = [e.type for e in await files_server.engine.store.read_stream(user_stream(user))]
    assert types == [FILE_UPLOAD_STARTED, FILE_UPLOAD_COMPLETED]


@pytest.mark.parametrize("file_id", ["%2E%2E", ".hidden", "a..b", "a%00b", "a%20b", "x" * 129])
async def test_bad_file_ids_are_422(files_server: Server, file_id: str) -> None:
    user = new_user()
    reply = await put(files_server, user, file_id, png(100), filename="ok.png")
    assert reply.status_code == 422, reply.text
    assert reply.json()["code"] == "VALIDATION_ERROR"
    assert await files_server.engine.store.stream_version(user_stream(user)) == 0


@pytest.mark.parametrize("path", ["..%2Fescape", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "a%2F..%2F..%2Fb"])
async def test_file_ids_with_a_slash_are_422_and_store_nothing(files_server: Server, path: str) -> None:
    """An encoded '/' keeps its segment one id (api/params.py), which the file id rule refuses before
    anything is stored or any path is made of it."""
    user = new_user()
    reply = await put(files_server, user, path, png(100), filename="ok.png")
    assert reply.status_code == 422, reply.text
    assert reply.json()["details"][0]["loc"] == ["path", "file_id"]
    assert await files_server.engine.store.stream_version(user_stream(user)) == 0
    assert not any(".." in name or "/" in name for name in stored_names(files_server))


@pytest.mark.parametrize("filename", ["../etc/passwd", "a/b.png", "a\\b.png", "a\x00b.png", "..", "a\nb"])
async def test_bad_filenames_are_422(files_server: Server, filename: str) -> None:
    user, file_id = new_user(), new_file_id()
    reply = await put(files_server, user, file_id, png(100), filename=filename)
    assert reply.status_code == 422, reply.text
    assert reply.json()["code"] == "VALIDATION_ERROR"
    await _assert_nothing_of(files_server, user, file_id)


async def test_someone_elses_or_a_completed_file_id_is_409_and_the_file_unchanged(
    files_server: Server,
) -> None:
    owner, intruder, file_id, data = new_user(), new_user(), new_file_id(), png(5000)
    assert (await put(files_server, owner, file_id, data, filename="mine.png")).status_code == 201
    for user in (intruder, owner):
        reply = await put(files_server, user, file_id, png(6000), filename="mine.png")
        assert reply.status_code == 409
        assert reply.json()["code"] == "FILE_ID_TAKEN"
    assert (await get(files_server, file_id, auth(files_server, owner))).content == data
    assert await files_server.engine.store.stream_version(user_stream(intruder)) == 0


async def test_viewers_may_not_upload_and_room_needs_rights(files_server: Server) -> None:
    user, file_id = new_user(), new_file_id()
    headers = {**auth(files_server, user, roles=["viewer"]), "Content-Type": "image/png"}
    async with httpx.AsyncClient(base_url=files_server.http_url) as http:
        viewer = await http.put(f"/api/v1/files/{file_id}?filename=a.png", content=png(100), headers=headers)
        headers = {**auth(files_server, user, rooms=["team-*"]), "Content-Type": "image/png"}
        foreign_room = await http.put(
            f"/api/v1/files/{file_id}?filename=a.png&room_id=other-room", content=png(100), headers=headers
        )
    assert viewer.status_code == 403
    assert foreign_room.status_code == 403
    await _assert_nothing_of(files_server, user, file_id)


async def test_openapi_describes_the_file_and_notification_routes(files_server: Server) -> None:
    async with httpx.AsyncClient(base_url=files_server.http_url) as http:
        schema = (await http.get("/openapi.json")).json()
    put_op = schema["paths"]["/api/v1/files/{file_id}"]["put"]
    assert "requestBody" in put_op
    assert {"201", "409", "413", "422"} <= set(put_op["responses"])
    assert "/api/v1/notifications/{notification_id}/read" in schema["paths"]


async def test_openapi_documents_every_type_a_download_is_served_with(files_server: Server) -> None:
    """A file is served with the type it was stored with (text, PNG, PDF...): the schema must say any
    type may come, or clients generated from it reject every download that is not octet-stream."""
    user = new_user()
    async with httpx.AsyncClient(base_url=files_server.http_url) as http:
        documented = (await http.get("/openapi.json")).json()["paths"]["/api/v1/files/{file_id}"]["get"]
    media_types = set(documented["responses"]["200"]["content"])
    for body, content_type in ((b"plain words", "text/plain"), (png(64), "image/png"), (PDF, "")):
        file_id = new_file_id()
        stored = await put(files_server, user, file_id, body, content_type=content_type, filename="f")
        assert stored.status_code == 201, stored.text
        served = (await get(files_server, file_id, auth(files_server, user))).headers["content-type"]
        essence = served.partition(";")[0].strip()
        assert media_types & {essence, f"{essence.partition('/')[0]}/*", "*/*"}, (served, media_types)


async def _assert_nothing_of(server: Server, user: str, file_id: str) -> None:
    assert await server.engine.store.stream_version(user_stream(user)) == 0
    assert file_id not in stored_names(server)
    assert (await get(server, file_id, auth(server, user))).status_code == 404


async def test_a_second_body_for_an_id_being_uploaded_is_409(files_server: Server) -> None:
    user, file_id, data = new_user(), new_file_id(), png(64 * 1024)
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield data[:4096]
        await release.wait()
        yield data[4096:]

    first = asyncio.create_task(put(files_server, user, file_id, slow(), filename="a.png"))
    await wait_for_events(files_server.engine.store, user_stream(user), 1)  # claimed, body pending
    second = await put(files_server, user, file_id, png(1000), filename="a.png")
    release.set()
    assert second.status_code == 409
    assert second.json()["code"] == "FILE_ID_TAKEN"
    assert (await first).status_code == 201
    assert (await get(files_server, file_id, auth(files_server, user))).content == data


async def test_an_interrupted_body_keeps_nothing_and_the_id_can_be_retried(files_server: Server) -> None:
    user, file_id, data = new_user(), new_file_id(), png(600 * 1024)

    async def broken() -> AsyncIterator[bytes]:
        yield data[: 300 * 1024]
        raise ConnectionAbortedError("client gave up")

    with pytest.raises(ConnectionAbortedError):
        await put(files_server, user, file_id, broken(), filename="a.png")
    started, failed = await wait_for_events(files_server.engine.store, user_stream(user), 2)
    assert (started.type, failed.type, failed.data["reason"]) == (
        FILE_UPLOAD_STARTED,
        FILE_UPLOAD_FAILED,
        "aborted",
    )
    assert 0 < failed.data["bytes_uploaded"] <= 300 * 1024
    await _until_no_body_of(files_server, file_id)
    assert (await get(files_server, file_id, auth(files_server, user))).status_code == 404
    assert not any(name.endswith(".part") for name in stored_names(files_server))
    retried = await put(files_server, user, file_id, data, filename="a.png")
    assert retried.status_code == 201, retried.text
    assert (await get(files_server, file_id, auth(files_server, user))).content == data


async def _until_no_body_of(server: Server, file_id: str) -> None:
    """Wait until the server has given up the body of `file_id` (it hears of a disconnect late)."""
    async with asyncio.timeout(5):
        while True:
            if file_id not in server.engine.files._uploading:
                return
            await asyncio.sleep(0.01)


async def test_a_body_storage_cannot_write_ends_its_upload_with_a_storage_error(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Storage whose folder cannot be made (a plain file took its place after start): the PUT is a
    500, and the upload the socket had started ends in `file_upload_failed` (storage_error)."""
    data_dir = tmp_path_factory.mktemp("broken-storage")
    settings = make_settings(database_url, data_dir=data_dir)
    user, file_id = new_user(), new_file_id()
    async with serve(settings) as broken, broken.connect(broken.token(user)) as tab:
        shutil.rmtree(data_dir / "files", ignore_errors=True)
        (data_dir / "files").write_text("not a folder")
        await greet(tab)
        start = {"type": "file_upload_start", "file_id": file_id, "filename": "a.png", "file_size": 1000}
        assert (await request(tab, {**start, "client_msg_id": "s"}))["type"] == "ack"
        reply = await put(broken, user, file_id, png(1000))
        assert reply.status_code == 500
        [*_, failed] = await until(tab, of_type("file_upload_failed"))
    assert (failed["file_id"], failed["reason"], failed["filename"]) == (file_id, "storage_error", "a.png")


async def test_racing_bodies_of_one_upload_on_two_nodes_leave_the_bytes_its_completion_describes(
    server_url: str, tmp_path: Path
) -> None:
    """Two nodes share the log and the storage folder. The body sent to the second began first but
    finishes last, after the first completed the upload: it is refused and leaves the stored file
    alone, so the bytes served are those whose sha256 the completion recorded."""
    user, file_id = new_user(), new_file_id()
    winner, loser = png(64 * 1024), png(64 * 1024)
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield loser[:4096]
        await release.wait()
        yield loser[4096:]

    async with fresh_database(server_url) as url:
        settings = make_settings(url, data_dir=tmp_path)
        async with (
            serve(settings) as first,
            serve(settings) as second,
            first.connect(first.token(user)) as tab,
        ):
            await greet(tab)
            start = {
                "type": "file_upload_start",
                "file_id": file_id,
                "filename": "a.png",
                "file_size": len(winner),
            }
            assert (await request(tab, {**start, "client_msg_id": "s"}))["type"] == "ack"
            late = asyncio.create_task(put(second, user, file_id, slow()))
            async with asyncio.timeout(5):  # the late body is being written: its part file exists
                while not any(name.endswith(".part") for name in stored_names(second)):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            assert (await put(first, user, file_id, winner)).status_code == 201
            release.set()
            refused = await late
            assert (refused.status_code, refused.json()["code"]) == (409, "FILE_ID_TAKEN")
            assert refused.json()["ended"] == FILE_UPLOAD_COMPLETED
            [*_, completed] = await until(tab, of_type("file_upload_complete"))
            for node in (first, second):
                served = await get(node, file_id, auth(node, user))
                assert served.content == winner
                assert hashlib.sha256(served.content).hexdigest() == completed["sha256"]
            assert not any(name.endswith(".part") for name in stored_names(second))
