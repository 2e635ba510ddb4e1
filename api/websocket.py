"""Pumping frames between an accepted socket and its engine session (engine/session.py).

Everything a frame means (decoding, validation, limits, dispatch, replies) is the session's; this
reads the next frame, hands it over, and closes the socket when the session says so. Every frame to
the socket goes through the engine's queue for the connection, which orders replies and fanned-out
events; the queue writes through the protocol's `write_now` when the socket can take a frame at once
(api/ws_protocol.py), and through `send_text` when it must wait.
"""

from __future__ import annotations

import logging

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from api.logging_setup import connection_id_var
from api.ws_protocol import WRITE_NOW
from engine.fanout.hub import SubscriberClosed
from engine.features.tokens import Credentials, VerifyToken
from engine.model.errors import AuthenticationFailed, ConnectionRefused
from engine.protocol.error_codes import ERROR_CODES
from engine.service import Engine
from engine.session import error_message

log = logging.getLogger(__name__)


async def serve_socket(
    websocket: WebSocket, engine: Engine, credentials: Credentials, verify: VerifyToken
) -> None:
    """Greet, then serve frames until the client goes away; its rooms are left either way. `verify`
    checks the tokens of `refresh_token` as the handshake checked the first."""
    actor = credentials.actor

    async def close(code: int, reason: str) -> None:
        await websocket.close(code, reason)

    try:
        session = engine.open_session(
            actor,
            websocket.send_text,
            close,
            expires_at=credentials.expires_at,
            verify=verify,
            write_now=(websocket.scope.get("extensions") or {}).get(WRITE_NOW),
        )
    except ConnectionRefused as exc:
        log.info("connection of %s refused: %s", actor.user_id, exc.code)
        await refuse(websocket, exc, engine)
        return
    connection_id_var.set(session.connection_id)  # on every log line of this socket's task
    log.info("connection opened", extra={"user_id": actor.user_id})
    try:
        await session.open()
        while (frame := await _receive(websocket)) is not None:
            verdict = await session.receive(frame)
            if verdict is not None:
                await websocket.close(verdict.code, verdict.reason)
                return
    except (WebSocketDisconnect, SubscriberClosed):
        pass  # the client went away mid-send; nothing left to tell it
    finally:
        await session.end()
        log.info("connection closed")


async def refuse(websocket: WebSocket, exc: AuthenticationFailed | ConnectionRefused, engine: Engine) -> None:
    """Tell an accepted socket why it is not served, then close it with the code its error carries
    (4401 for a bad token, 4429 over the per-user cap, 1013 on a full node). The error is counted
    with every other sent (`/ws/stats/detailed`, `/metrics`): it never passes the node's queue."""
    close_code = ERROR_CODES[exc.code].close_code
    assert close_code is not None, f"{exc.code} closes no connection"
    engine.stats.error_sent(exc.code)
    await websocket.send_text(orjson.dumps(error_message(exc.code, exc.message, **exc.details)).decode())
    await websocket.close(close_code, exc.code.lower().replace("_", " "))


async def _receive(websocket: WebSocket) -> bytes | None:
    """The next data frame as UTF-8 bytes (text or binary alike), or None once disconnected.

    Measured in bytes, not characters: the limit protects memory and the log, and a frame of emoji is
    four times its length in characters.
    """
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    if text is not None:
        return str(text).encode()
    return bytes(message.get("bytes") or b"")
