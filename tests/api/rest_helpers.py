"""One way to call the REST API as a given user in the tests: a real HTTP request with a real token."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import Server


async def rest(
    server: Server,
    method: str,
    path: str,
    *,
    sub: str = "admin-1",
    roles: list[str] | None = None,
    json: Any = None,
    params: dict[str, Any] | None = None,
    **claims: Any,
) -> httpx.Response:
    """`method` on `/api/v1{path}` with a bearer token for `sub` (an admin unless `roles` says
    otherwise)."""
    token = server.token(sub, roles=roles if roles is not None else ["admin"], **claims)
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        return await http.request(
            method, f"/api/v1{path}", json=json, params=params, headers={"Authorization": f"Bearer {token}"}
        )
