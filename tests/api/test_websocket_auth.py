"""The WebSocket handshake: where the token may come from, which tokens are refused, and Origin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.api.conftest import ALLOWED_ORIGIN, SECRET, Server, receive


def assert_connected(message: dict[str, Any], user_id: str) -> None:
    assert message["type"] == "connected"
    assert message["connection_id"].startswith("ws_")
    assert message["user"]["user_id"] == user_id
    assert set(message["user"]) == {"user_id", "username", "email", "roles"}
    assert set(message["heartbeat"]) == {"interval", "timeout"}


async def test_websocket_auth_token_in_query_connects(server: Server) -> None:
    token = server.token("q-user", username="quinn", email="q@example.com", roles=["viewer"])
    async with server.connect(token) as ws:
        greeting = await receive(ws)
    assert_connected(greeting, "q-user")
    assert greeting["user"] == {
        "user_id": "q-user",
        "username": "quinn",
        "email": "q@example.com",
        "roles": ["viewer"],
    }
    assert greeting["heartbeat"] == {
        "interval": server.settings.websocket_ping_interval,
        "timeout": server.settings.websocket_ping_timeout,
    }


async def test_websocket_auth_token_in_authorization_header_connects(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.token('h-user')}"}
    async with server.connect(additional_headers=headers) as ws:
        assert_connected(await receive(ws), "h-user")


async def test_websocket_auth_token_as_subprotocol_connects_and_answers_bearer(server: Server) -> None:
    async with server.connect(subprotocols=["bearer", server.token("s-user")]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "bearer"
        assert_connected(await receive(ws), "s-user")


def _expired(server: Server) -> str:
    return server.token("u", ttl=timedelta(seconds=-30))


def _bad_signature(server: Server) -> str:
    return jwt.encode(
        {"sub": "u", "exp": datetime.now(UTC) + timedelta(minutes=5)}, "x" * 64, algorithm="HS256"
    )


def _alg_none(server: Server) -> str:
    return jwt.encode({"sub": "u", "exp": datetime.now(UTC) + timedelta(minutes=5)}, None, algorithm="none")


def _hs512(server: Server) -> str:
    return jwt.encode(
        {"sub": "u", "exp": datetime.now(UTC) + timedelta(minutes=5)}, SECRET, algorithm="HS512"
    )


def _garbage(server: Server) -> str:
    return "not.a.jwt"


def _exp_as_text(server: Server) -> str:
    """Signed with the server's secret, but `exp` is a string of digits, not a NumericDate."""
    return jwt.encode({"sub": "u", "exp": "9999999999"}, SECRET, algorithm="HS256")


def _exp_past_year_9999(server: Server) -> str:
    return jwt.encode({"sub": "u", "exp": 10**17}, SECRET, algorithm="HS256")


def _audience_not_configured(server: Server) -> str:
    """An `aud` the server was not told to accept (JWT_AUDIENCE unset): meant for another service."""
    return jwt.encode(
        {"sub": "u", "aud": "another-service", "exp": datetime.now(UTC) + timedelta(minutes=5)},
        SECRET,
        algorithm="HS256",
    )


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (None, "missing token"),
        (_expired, "expired"),
        (_bad_signature, "signature"),
        (_alg_none, "algorithm"),
        (_hs512, "algorithm not allowed"),
        (_garbage, "invalid token"),
        (_exp_as_text, "exp must be a number"),
        (_exp_past_year_9999, "exp is beyond the year 9999"),
        (_audience_not_configured, "audience"),
    ],
    ids=[
        "missing",
        "expired",
        "bad-signature",
        "alg-none",
        "wrong-algorithm",
        "garbage",
        "exp-as-text",
        "exp-past-year-9999",
        "audience-not-configured",
    ],
)
async def test_websocket_auth_refuses_bad_tokens_with_4401(
    server: Server, make_token: Any, reason: str
) -> None:
    token = make_token(server) if make_token else None
    async with server.connect(token) as ws:
        message = await receive(ws)
        assert message["type"] == "error"
        assert message["code"] == "AUTHENTICATION_FAILED"
        assert reason in message["error"]
        assert message["timestamp"].endswith("Z")
        with pytest.raises(ConnectionClosed):
            await receive(ws)
        assert ws.close_code == 4401


async def test_websocket_auth_refuses_bad_subprotocol_token_with_4401(server: Server) -> None:
    async with server.connect(subprotocols=["bearer", _expired(server)]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "bearer"
        assert (await receive(ws))["code"] == "AUTHENTICATION_FAILED"
        await ws.wait_closed()
        assert ws.close_code == 4401


async def test_websocket_auth_refuses_a_foreign_origin_before_accepting(server: Server) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with server.connect(server.token(), origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    assert b"PERMISSION_DENIED" in refused.value.response.body


async def test_websocket_auth_accepts_a_listed_origin_and_clients_without_origin(server: Server) -> None:
    async with server.connect(server.token("o-user"), origin=ALLOWED_ORIGIN) as ws:  # type: ignore[arg-type]
        assert_connected(await receive(ws), "o-user")
    async with server.connect(server.token("n-user")) as ws:
        assert_connected(await receive(ws), "n-user")
