"""Uploads between real clients: `file_upload_start` and `file_upload_progress` relayed to the user's
other tabs (never to other users), and tracked: progress for a file never started is NOT_FOUND."""

from __future__ import annotations

import uuid
from typing import Any

from engine.model.streams import file_stream, user_stream, volatile_stream
from engine.service import Engine
from tests.api.conftest import Server, request
from tests.api.live_helpers import greet, of_type, pending, send, until


def new_user() -> str:
    return f"upload-user-{uuid.uuid4().hex[:8]}"


def start(file_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "file_upload_start",
        "file_id": file_id,
        "filename": "report.csv",
        "file_size": 1000,
        "mime_type": "text/csv",
        **extra,
    }


def progress(file_id: str, uploaded: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "file_upload_progress",
        "file_id": file_id,
        "bytes_uploaded": uploaded,
        "total_bytes": 1000,
        "percentage": uploaded / 10,
        **extra,
    }


async def test_start_and_progress_reach_the_users_other_tab_only(server: Server) -> None:
    user, other = new_user(), new_user()
    file_id = f"f-{uuid.uuid4().hex[:8]}"
    async with (
        server.connect(server.token(user)) as tab1,
        server.connect(server.token(user)) as tab2,
        server.connect(server.token(other)) as stranger,
    ):
        for ws in (tab1, tab2, stranger):
            await greet(ws)
        ack = await request(tab1, start(file_id, client_msg_id="s-1"))
        assert ack["type"] == "ack"
        assert isinstance(ack["seq"], int)
        [started] = await until(tab2, of_type("file_upload_started"))
        assert started == {
            "type": "file_upload_started",
            "file_id": file_id,
            "filename": "report.csv",
            "file_size": 1000,
            "mime_type": "text/csv",
            "user_id": user,
            "seq": ack["seq"],
            "ts": started["ts"],
            "client_msg_id": "s-1",
        }

        await send(tab1, progress(file_id, 500))
        [relayed] = await until(tab2, of_type("file_upload_progress"))
        assert relayed == {
            "type": "file_upload_progress",
            "file_id": file_id,
            "bytes_uploaded": 500,
            "total_bytes": 1000,
            "percentage": 50.0,
            "user_id": user,
        }
        assert await pending(tab1) == []  # the sender hears nothing of its own start or progress
        assert await pending(stranger) == []

    engine: Engine = server.engine
    upload = await engine.upload(user, file_id)
    assert upload is not None
    assert (upload.status, upload.bytes_uploaded, upload.filename) == ("uploading", 500, "report.csv")
    recorded = await engine.store.read_stream(volatile_stream(f"user:{user}"))
    assert [e.type for e in recorded] == ["FileUploadProgressed"]


async def test_progress_of_a_file_never_started_is_not_found(server: Server) -> None:
    user, other = new_user(), new_user()
    foreign = f"f-{uuid.uuid4().hex[:8]}"
    async with server.connect(server.token(user)) as ws, server.connect(server.token(other)) as owner:
        await greet(ws)
        await greet(owner)
        assert (await request(owner, start(foreign, client_msg_id="o-1")))["type"] == "ack"
        for file_id in ("never-started", foreign):
            reply = await request(ws, progress(file_id, 10, client_msg_id=f"p-{file_id}"))
            assert reply["type"] == "error"
            assert reply["code"] == "NOT_FOUND"
            assert reply["client_msg_id"] == f"p-{file_id}"
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_starting_a_file_id_twice_is_refused(server: Server) -> None:
    user = new_user()
    file_id = f"f-{uuid.uuid4().hex[:8]}"
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        assert (await request(ws, start(file_id, client_msg_id="a")))["type"] == "ack"
        reply = await request(ws, start(file_id, client_msg_id="b"))
        assert reply["type"] == "error"
        assert reply["code"] == "VALIDATION_ERROR"


async def test_only_users_who_may_write_files_may_start_or_report_an_upload(server: Server) -> None:
    """The rule of the REST PUT (editor or admin) holds on the socket too: a viewer's or an auditor's
    `file_upload_start` is PERMISSION_DENIED and records nothing, so it cannot take an id another user
    then finds "already in use"."""
    file_id = f"f-{uuid.uuid4().hex[:8]}"
    engine: Engine = server.engine
    for role in ("viewer", "auditor"):
        watcher = new_user()
        async with server.connect(server.token(watcher, roles=[role])) as ws:
            await greet(ws)
            for message in (start(file_id, client_msg_id="s"), progress(file_id, 10, client_msg_id="p")):
                reply = await request(ws, message)
                assert (reply["type"], reply["code"], reply["client_msg_id"]) == (
                    "error",
                    "PERMISSION_DENIED",
                    message["client_msg_id"],
                )
        assert await engine.store.stream_version(f"user:{watcher}") == 0
        assert await engine.store.stream_version(volatile_stream(f"user:{watcher}")) == 0
    editor = new_user()
    async with server.connect(server.token(editor, roles=["viewer", "editor"])) as ws:
        await greet(ws)
        assert (await request(ws, start(file_id, client_msg_id="mine")))["type"] == "ack"


async def test_a_start_announcing_more_than_the_upload_limit_is_refused_and_records_nothing(
    server: Server,
) -> None:
    """MAX_UPLOAD_BYTES is known when the upload starts: a `file_size` over it could only end in the
    PUT's 413, so the start itself is refused (PAYLOAD_TOO_LARGE with the `limit`), the other tabs hear
    nothing, and the id stays free. A start of exactly the limit is accepted."""
    user = new_user()
    file_id = f"f-{uuid.uuid4().hex[:8]}"
    limit = server.settings.max_upload_bytes
    engine: Engine = server.engine
    async with server.connect(server.token(user)) as tab, server.connect(server.token(user)) as other:
        await greet(tab)
        await greet(other)
        refused = await request(tab, start(file_id, file_size=limit + 1, client_msg_id="big"))
        assert (refused["type"], refused["code"], refused["limit"], refused["client_msg_id"]) == (
            "error",
            "PAYLOAD_TOO_LARGE",
            limit,
            "big",
        )
        assert f"{limit + 1} bytes" in refused["error"] and f"{limit} bytes" in refused["error"]
        assert await pending(other) == []
        assert await engine.store.stream_version(user_stream(user)) == 0
        assert await engine.store.read_stream(file_stream(file_id)) == []
        assert (await request(tab, start(file_id, file_size=limit, client_msg_id="fits")))["type"] == "ack"
        [started] = await until(other, of_type("file_upload_started"))
        assert started["file_size"] == limit
