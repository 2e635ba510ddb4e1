"""REST errors that say what to do: the refused parameter by name, what was expected, the valid values
of an enumeration, how to write a time in a URL; and a 401 that names the one header REST reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from engine.model.catalogue import CATALOGUE
from tests.api.conftest import Server


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}/api/v1", timeout=10) as client:
        yield client


def bearer(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token('auditor-1', roles=['auditor'])}"}


async def refused(http: httpx.AsyncClient, server: Server, url: str) -> dict[str, Any]:
    response = await http.get(url, headers=bearer(server))
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    return body


async def test_rest_time_whose_plus_became_a_space_says_to_encode_it(
    http: httpx.AsyncClient, server: Server
) -> None:
    # Typed into a URL as is: the query string's `+` reaches the server as a space.
    body = await refused(http, server, "/rooms/r1/state?at=2026-11-26T10:00:00+01:00")
    assert body["error"].startswith("query parameter 'at': ")
    assert "got '2026-11-26T10:00:00 01:00'" in body["error"]
    assert "URL-encode it as %2B" in body["error"]
    assert body["details"][0]["loc"] == ["query", "at"]


async def test_rest_time_without_a_zone_shows_one_with(http: httpx.AsyncClient, server: Server) -> None:
    body = await refused(http, server, "/events?since=yesterday")
    assert body["error"].startswith("query parameter 'since': ")
    assert "e.g. 2026-11-26T10:00:00Z" in body["error"]
    assert "%2B" not in body["error"], "no '+' hint where none was lost"


async def test_rest_number_out_of_bounds_names_the_bound(http: httpx.AsyncClient, server: Server) -> None:
    body = await refused(http, server, "/events?limit=5000")
    assert body["error"] == "query parameter 'limit': input should be less than or equal to 1000, got '5000'"


async def test_rest_unknown_event_type_lists_the_valid_ones(http: httpx.AsyncClient, server: Server) -> None:
    body = await refused(http, server, "/events?types=Bogus,CellUpdated")
    assert body["error"].startswith("types: unknown event type(s) Bogus; valid types: ")
    assert body["types"] == ["Bogus"]
    assert body["valid"] == sorted(CATALOGUE)
    assert all(name in body["error"] for name in CATALOGUE)


@pytest.mark.parametrize(
    ("url", "headers", "text"),
    [
        ("/events", {}, "missing token: send the header Authorization: Bearer <JWT>"),
        ("/events", {"Authorization": "Token abc"}, "the Authorization header must read Bearer <JWT>"),
        (
            "/events?token=abc",
            {},
            "missing token: send the header Authorization: Bearer <JWT> "
            "(?token= is read by the WebSocket endpoint only)",
        ),
    ],
)
async def test_rest_401_names_the_bearer_header_only(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], text: str
) -> None:
    response = await http.get(url, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": text, "code": "AUTHENTICATION_FAILED"}
    assert "subprotocol" not in response.text
