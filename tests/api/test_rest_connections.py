"""`GET /api/v1/ws/connections`: the node's open connections for admins (the console lists and removes
them), 403 for anyone else, 401 without a token."""

from __future__ import annotations

import httpx

from tests.api.conftest import Server
from tests.api.live_helpers import greet, join


async def test_admins_see_each_open_connection_with_its_user_and_rooms(server: Server, room: str) -> None:
    async with server.connect(server.token("lister-a", username="Ada")) as ws:
        connection_id = await greet(ws)
        await join(ws, room)
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            admin = {"Authorization": f"Bearer {server.token('root', roles=['admin'])}"}
            listed = (await http.get("/api/v1/ws/connections", headers=admin)).json()
            editor = {"Authorization": f"Bearer {server.token('lister-a')}"}
            refused = await http.get("/api/v1/ws/connections", headers=editor)
            anonymous = await http.get("/api/v1/ws/connections")
    mine = [c for c in listed["connections"] if c["connection_id"] == connection_id]
    assert mine == [
        {
            "connection_id": connection_id,
            "user_id": "lister-a",
            "username": "Ada",
            "roles": ["editor"],
            "rooms": [room],
        }
    ]
    assert listed["node_id"] == server.engine.node_id
    assert (refused.status_code, refused.json()["code"]) == (403, "PERMISSION_DENIED")
    assert anonymous.status_code == 401
