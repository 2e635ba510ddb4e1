"""The caller's notifications over REST against the real app: listing newest first, the unread
filter, cursor pagination, and marking read, which reaches the user's sockets like the WebSocket
`notification_read` does and is recorded in the user's stream."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from engine.model.actors import Actor
from engine.model.catalogue import NOTIFICATION_READ
from engine.model.streams import user_stream
from tests.api.conftest import Server
from tests.api.live_helpers import greet, of_type, pending, until


def new_user() -> str:
    return f"rest-notif-{uuid.uuid4().hex[:8]}"


def auth(server: Server, user: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user, **claims)}"}


async def create(server: Server, user: str, *ids: str) -> None:
    for nid in ids:
        await server.engine.create_notification(
            user, {"id": nid, "title": f"title {nid}", "category": "system"}, created_by="test"
        )


async def test_list_returns_the_callers_notifications_newest_first(server: Server) -> None:
    user, other = new_user(), new_user()
    await create(server, user, "n-1", "n-2", "n-3")
    await create(server, other, "n-foreign")
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        reply = await http.get("/api/v1/notifications", headers=auth(server, user))
    assert reply.status_code == 200
    body = reply.json()
    assert [n["id"] for n in body["notifications"]] == ["n-3", "n-2", "n-1"]
    assert body["unread_count"] == 3
    assert body["next_cursor"] is None
    first = body["notifications"][0]
    assert first["title"] == "title n-3"
    assert first["category"] == "system"
    assert first["read"] is False
    assert first["read_at"] is None
    assert first["created_at"].endswith("Z")


async def test_list_pages_with_a_cursor_and_filters_unread(server: Server) -> None:
    user = new_user()
    await create(server, user, *(f"n-{i}" for i in range(1, 6)))
    await server.engine.mark_notification_read(Actor(user, user), "n-4")
    headers = auth(server, user)
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        seen: list[str] = []
        cursor: int | None = None
        while True:
            params: dict[str, Any] = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
            body = (await http.get("/api/v1/notifications", params=params, headers=headers)).json()
            seen += [n["id"] for n in body["notifications"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        unread = (await http.get("/api/v1/notifications?unread=true", headers=headers)).json()
        bad = await http.get("/api/v1/notifications?limit=0", headers=headers)
    assert seen == ["n-5", "n-4", "n-3", "n-2", "n-1"]
    assert [n["id"] for n in unread["notifications"]] == ["n-5", "n-3", "n-2", "n-1"]
    assert unread["unread_count"] == 4
    assert bad.status_code == 422
    assert bad.json()["code"] == "VALIDATION_ERROR"


async def test_mark_read_reaches_the_users_sockets_and_is_recorded(server: Server) -> None:
    user = new_user()
    await create(server, user, "n-read")
    async with (
        server.connect(server.token(user)) as tab1,
        server.connect(server.token(user)) as tab2,
        httpx.AsyncClient(base_url=server.http_url) as http,
    ):
        await greet(tab1)
        await greet(tab2)
        reply = await http.post("/api/v1/notifications/n-read/read", headers=auth(server, user))
        assert reply.status_code == 200
        assert reply.json()["id"] == "n-read"
        assert reply.json()["read"] is True
        for tab in (tab1, tab2):
            [*_, event] = await until(tab, of_type("notification_event"))
            assert event["event_type"] == "notification_read"
            assert event["notification"]["id"] == "n-read"
            assert event["user_id"] == user
            assert isinstance(event["seq"], int)
        listed = (await http.get("/api/v1/notifications", headers=auth(server, user))).json()
    assert listed["notifications"][0]["read"] is True
    assert listed["notifications"][0]["read_at"] == reply.json()["read_at"]
    assert listed["unread_count"] == 0
    stream = await server.engine.store.read_stream(user_stream(user))
    [read] = [e for e in stream if e.type == NOTIFICATION_READ]
    assert read.data == {"user_id": user, "notification_id": "n-read"}
    assert read.metadata["via"] == "rest"


async def test_mark_read_of_unknown_or_another_users_notification_is_404_and_changes_nothing(
    server: Server,
) -> None:
    user, other = new_user(), new_user()
    await create(server, other, "n-theirs")
    async with (
        server.connect(server.token(other)) as their_tab,
        httpx.AsyncClient(base_url=server.http_url) as http,
    ):
        await greet(their_tab)
        before = await server.engine.store.stream_version(user_stream(user))
        for nid in ("n-theirs", "n-never"):
            reply = await http.post(f"/api/v1/notifications/{nid}/read", headers=auth(server, user))
            assert reply.status_code == 404
            assert reply.json()["code"] == "NOT_FOUND"
        assert await pending(their_tab) == []
    assert await server.engine.store.stream_version(user_stream(user)) == before
    their_inbox = await server.engine.inbox(other)
    assert their_inbox.notifications["n-theirs"].read is False


async def test_notifications_need_a_token_and_auditors_may_not_mark_read(server: Server) -> None:
    user = new_user()
    await create(server, user, "n-audit")
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        anonymous = await http.get("/api/v1/notifications")
        listed = await http.get("/api/v1/notifications", headers=auth(server, user, roles=["auditor"]))
        marked = await http.post(
            "/api/v1/notifications/n-audit/read", headers=auth(server, user, roles=["auditor"])
        )
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "AUTHENTICATION_FAILED"
    assert listed.status_code == 200
    assert marked.status_code == 403
    assert marked.json()["code"] == "PERMISSION_DENIED"
