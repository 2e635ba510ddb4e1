"""`GET /api/v1/ws/stats`, `/ws/stats/detailed` and `/metrics` against a server of their own, so the
figures are exactly this test's traffic: real sockets, real appends, real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import (
    RECEIVE_TIMEOUT,
    Server,
    fresh_database,
    make_settings,
    receive,
    request,
    serve,
)
from tests.api.live_helpers import greet, join, of_type, pending, send, until
from tests.fault_proxy import FaultProxy


@pytest.fixture
async def node(server_url: str) -> AsyncIterator[Server]:
    """A server nobody else talks to, alone on a database of its own: figures are cluster-wide, so
    the shared database's other servers would count too."""
    async with fresh_database(server_url) as database_url, serve(make_settings(database_url)) as running:
        yield running


def admin(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token('root', roles=['admin'])}"}


async def get(server: Server, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        return await http.get(path, headers=headers)


async def stats(server: Server, detailed: bool = False) -> dict[str, Any]:
    response = await get(server, "/api/v1/ws/stats" + ("/detailed" if detailed else ""), admin(server))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def metrics(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `/metrics`, keyed by (sample name, sorted labels)."""
    response = await get(server, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def until_stats(server: Server, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The stats once `done` holds: a socket's close is processed after its client has seen it."""
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while True:
            body = await stats(server)
            if done(body):
                return body
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("path", ["/api/v1/ws/stats", "/api/v1/ws/stats/detailed"])
async def test_stats_need_a_token_and_the_detailed_view_needs_admin(server: Server, path: str) -> None:
    missing = await get(server, path)
    assert missing.status_code == 401
    assert missing.json()["code"] == "AUTHENTICATION_FAILED"
    assert missing.headers["www-authenticate"].startswith("Bearer")

    forged = await get(server, path, {"Authorization": "Bearer not-a-jwt"})
    assert forged.status_code == 401

    for role in ("editor", "viewer", "auditor"):
        token = server.token("someone", roles=[role])
        answer = await get(server, path, {"Authorization": f"Bearer {token}"})
        if path.endswith("/detailed"):  # per-connection and per-node internals: admins only
            assert answer.status_code == 403, role
            assert answer.json()["code"] == "PERMISSION_DENIED"
        else:  # the seed's aggregate figures: any authenticated caller (docs/protocol.md, REST)
            assert answer.status_code == 200, role


async def test_stats_follow_live_websocket_traffic(node: Server, room: str) -> None:
    store = node.engine.store
    before = await stats(node)
    assert before["total_connections"] == before["authenticated_connections"] == 0
    assert before["rooms_active"] == 0
    assert before["events_appended"] == 0
    assert before["log_head"] == await store.head()
    assert before["node_id"] == node.engine.node_id

    async with node.connect(node.token("alice", username="alice")) as alice:
        await greet(alice)
        async with node.connect(node.token("bob", username="bob")) as bob:
            await greet(bob)
            await join(alice, room)
            await join(bob, room)
            await send(alice, {"type": "cell_update", "sheet_id": f"s-{room}", "cell_id": "A1", "value": 1})
            await send(alice, {"type": "cursor_move", "room": room, "x": 1, "y": 2, "cell": "A1"})
            await pending(alice)  # cell_updated arrived: both are committed
            await pending(bob)  # what the room sent bob so far
            refused = await request(bob, {"type": "leave_room", "room_id": "never-joined"})
            assert refused["code"] == "ROOM_NOT_FOUND"
            invalid = await request(bob, "{not json")
            assert invalid["code"] == "INVALID_JSON"

            during = await stats(node)
            detailed = await stats(node, detailed=True)

        after_bob = await until_stats(node, lambda b: b["total_connections"] == 1)
    after = await until_stats(node, lambda b: b["total_connections"] == 0)

    assert during["total_connections"] == during["authenticated_connections"] == 2
    assert during["rooms_active"] == 1
    # Two joins, the sheet's claim (its first edit's), a cell update, a cursor move.
    assert during["events_appended"] == 5
    assert during["log_head"] == before["log_head"] + 5
    assert during["messages_per_second"] > 0
    assert during["uptime_seconds"] > before["uptime_seconds"]

    assert detailed["messages_by_type"] == {
        "cell_update": 1,
        "cursor_move": 1,
        "join_room": 2,
        "leave_room": 1,
        "ping": 2,
    }
    assert detailed["errors_by_code"] == {"INVALID_JSON": 1, "ROOM_NOT_FOUND": 1}
    (node_id,) = detailed["nodes"]
    assert node_id == node.engine.node_id
    figures = detailed["nodes"][node_id]
    assert figures["connections"] == 2
    assert figures["messages_received"] == 7
    assert figures["errors_sent"] == 2
    appender = figures["appender"]
    assert appender["events"] == 5
    assert appender["batch_size"]["count"] == appender["batches"] >= 1
    assert appender["batch_size"]["sum"] == 5
    assert appender["commit_latency_ms"]["count"] == appender["batches"]
    assert sum(appender["commit_latency_ms"]["buckets"].values()) == appender["batches"]
    fanout = figures["fanout"]
    assert fanout["subscribers"] == 2
    assert fanout["delivered"] >= 8  # greetings, room states, joins, the cell, the cursor, replies
    # Two idle sockets on loopback: most frames are written by their publisher, not a sender task.
    assert fanout["delivered"] >= fanout["written_directly"] > fanout["delivered"] // 2
    assert fanout["queue_depth_total"] == sum(fanout["queue_depths"].values())

    # Leaving is an event too: each closed socket appends its room's `UserLeftRoom`.
    assert after_bob["rooms_active"] == 1
    assert after["rooms_active"] == 0
    final = await until_stats(node, lambda b: b["events_appended"] == 7)
    assert final["log_head"] == before["log_head"] + 7


async def test_an_update_and_its_ack_leave_in_one_socket_write(node: Server, room: str) -> None:
    """The sender's own `cell_updated` and its `ack` are written in the same loop turn, so they reach
    the socket as one write of two frames (api/turn_writes.py)."""
    async with node.connect(node.token("erin")) as erin:
        await greet(erin)
        await join(erin, room)
        await pending(erin)  # nothing of the join is left to write
        before = (await stats(node, detailed=True))["socket_writes"]
        await send(
            erin, {"type": "cell_update", "sheet_id": "s", "cell_id": "A1", "value": 1, "client_msg_id": "m"}
        )
        received = await until(erin, of_type("ack"))
        after = (await stats(node, detailed=True))["socket_writes"]
    assert [message["type"] for message in received] == ["cell_updated", "ack"]
    assert after["frames"] - before["frames"] == 2
    assert after["writes"] - before["writes"] == 1


async def test_metrics_expose_the_families_and_move_with_traffic(node: Server, room: str) -> None:
    before = await metrics(node)
    for family in (
        "collab_connections",
        "collab_rooms_active",
        "collab_uptime_seconds",
        "collab_events_appended_total",
        "collab_append_batches_total",
        "collab_append_batch_size_count",
        "collab_append_commit_latency_seconds_count",
        "collab_append_queue_depth",
        "collab_fanout_queue_depth",
        "collab_fanout_queue_depth_max",
        "collab_slow_consumer_closes_total",
    ):
        assert (family, ()) in before, family
    assert before[("collab_connections", ())] == 0
    assert before[("collab_events_appended_total", ())] == 0
    assert ("collab_append_batch_size_bucket", (("le", "+Inf"),)) in before

    async with node.connect(node.token("carol")) as carol:
        await greet(carol)
        await join(carol, room)
        reply = await request(carol, {"type": "cell_update", "sheet_id": "s", "cell_id": "A1", "value": 2})
        assert reply["type"] == "cell_updated"
        await request(carol, {"type": "no_such_type"})
        during = await metrics(node)

    assert during[("collab_connections", ())] == 1
    assert during[("collab_rooms_active", ())] == 1
    assert during[("collab_messages_received_total", (("type", "join_room"),))] == 1
    assert during[("collab_messages_received_total", (("type", "cell_update"),))] == 1
    assert during[("collab_errors_sent_total", (("code", "UNKNOWN_MESSAGE_TYPE"),))] == 1
    assert during[("collab_events_appended_total", ())] == 3  # the join, the sheet's claim, the edit
    batches = during[("collab_append_batches_total", ())]
    assert during[("collab_append_batch_size_count", ())] == batches
    assert during[("collab_append_batch_size_sum", ())] == 3
    assert during[("collab_append_batch_size_bucket", (("le", "+Inf"),))] == batches
    assert during[("collab_append_commit_latency_seconds_count", ())] == batches
    assert during[("collab_append_commit_latency_seconds_sum", ())] > 0
    assert during[("collab_fanout_messages_total", (("outcome", "delivered"),))] >= 3


async def test_errors_that_refuse_or_end_a_connection_are_counted_too(server_url: str) -> None:
    """Every error message a socket is sent counts by its code, also those the server sends before it
    closes one: a refused token, a connection past a cap, a token that expired, an admin's removal."""
    async with (
        fresh_database(server_url) as database_url,
        serve(make_settings(database_url, max_connections=2, max_connections_per_user=1)) as capped,
    ):
        refused = []
        async with capped.connect("not.a.jwt") as bad:
            refused.append((await receive(bad))["code"])
        async with capped.connect(capped.token("ann")) as ann:
            ann_id = await greet(ann)
            async with capped.connect(capped.token("ann")) as again:
                refused.append((await receive(again))["code"])
            async with capped.connect(capped.token("ben", ttl=timedelta(seconds=1))) as ben:
                await greet(ben)
                async with capped.connect(capped.token("cat")) as cat:
                    refused.append((await receive(cat))["code"])
                expired = await until(ben, of_type("error"))
                refused.append(expired[-1]["code"])
                await ben.wait_closed()
            async with httpx.AsyncClient(base_url=capped.http_url, timeout=10) as http:
                removal = await http.delete(f"/api/v1/ws/connections/{ann_id}", headers=admin(capped))
            assert removal.status_code == 200, removal.text
            refused.append((await until(ann, of_type("error")))[-1]["code"])
        assert refused == [
            "AUTHENTICATION_FAILED",
            "TOO_MANY_CONNECTIONS",
            "NODE_FULL",
            "AUTHENTICATION_FAILED",
            "CONNECTION_REMOVED",
        ]
        counted = {
            "AUTHENTICATION_FAILED": 2,
            "CONNECTION_REMOVED": 1,
            "NODE_FULL": 1,
            "TOO_MANY_CONNECTIONS": 1,
        }
        detailed = await stats(capped, detailed=True)
        assert detailed["errors_by_code"] == counted
        assert detailed["nodes"][capped.engine.node_id]["errors_sent"] == 5
        scraped = await metrics(capped)
        for code, count in counted.items():
            assert scraped[("collab_errors_sent_total", (("code", code),))] == count


async def test_metrics_registries_are_per_app(node: Server, database_url: str) -> None:
    """Two apps in one process each report their own engine (and neither touches the global registry)."""
    async with serve(make_settings(database_url)) as other, node.connect(node.token("dave")) as ws:
        await greet(ws)
        await request(ws, {"type": "ping"})
        mine, theirs = await metrics(node), await metrics(other)
    assert mine[("collab_connections", ())] == 1
    assert mine[("collab_messages_received_total", (("type", "ping"),))] == 1
    assert theirs[("collab_connections", ())] == 0
    assert ("collab_messages_received_total", (("type", "ping"),)) not in theirs
    assert node.app.state.metrics_registry is not other.app.state.metrics_registry


async def test_stats_answer_503_while_the_log_is_unreachable(database_url: str) -> None:
    """The log's head cannot be read: the figures are refused (retryable), never made up; `/metrics`,
    which needs no database, keeps answering."""
    proxy = FaultProxy(database_url)
    await proxy.start()
    try:
        async with serve(make_settings(proxy.url)) as running:
            headers = admin(running)
            assert (await get(running, "/api/v1/ws/stats", headers)).status_code == 200
            await proxy.cut()
            async with asyncio.timeout(30):  # a hang guard: the answer must come, not a timeout
                refused = await get(running, "/api/v1/ws/stats", headers)
                detailed = await get(running, "/api/v1/ws/stats/detailed", headers)
                scraped = await get(running, "/metrics")
            await proxy.restore()
            assert (await get(running, "/api/v1/ws/stats", headers)).status_code == 200
    finally:
        await proxy.cut()
    for response in (refused, detailed):
        assert response.status_code == 503
        assert response.json()["code"] == "INTERNAL_ERROR"
        assert response.json()["retryable"] is True
    assert scraped.status_code == 200
    assert "collab_connections 0.0" in scraped.text


async def test_openapi_describes_the_stats_and_metrics_responses(server: Server) -> None:
    paths = (await get(server, "/openapi.json")).json()["paths"]
    for path, model in (("/api/v1/ws/stats", "Stats"), ("/api/v1/ws/stats/detailed", "DetailedStats")):
        responses = paths[path]["get"]["responses"]
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{model}")
        assert {"401", "403", "503"} <= set(responses)
        assert paths[path]["get"]["security"]  # the bearer token shows in /docs
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
