"""One authenticated socket: framing, validation and dispatch of its messages to the engine.

A session reads one frame at a time and answers it before reading the next. That keeps each
connection's replies in the order of its messages, and it is the backpressure: a client that sends
faster than its appends commit waits in its own TCP window, not in our memory.

A bad message never closes the socket (PROTOCOL.md, "Errors"): it gets an error reply that echoes
its `client_msg_id`/`request_id`, and the next message is read as usual. The exception is a frame
over `max_message_bytes`, which closes with 1009, because its size is the problem.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from api.errors import CLOSE_MESSAGE_TOO_BIG, INTERNAL_ERROR, MESSAGE_TOO_LARGE, ws_error, ws_error_from
from api.settings import Settings
from engine import messages
from engine.actors import Actor
from engine.errors import EngineError, UnknownMessageType
from engine.messages import InboundMessage, JoinRoom, Ping
from engine.service import Engine

log = logging.getLogger(__name__)


class Session:
    def __init__(self, websocket: WebSocket, engine: Engine, actor: Actor, settings: Settings) -> None:
        self.websocket = websocket
        self.engine = engine
        self.actor = actor
        self.settings = settings
        self.connection_id = ""

    async def run(self) -> None:
        """Greet, then serve messages until the client goes away; its rooms are left either way."""
        self.connection_id = self.engine.connect(self.actor)
        try:
            await self.send(
                messages.connected(
                    self.connection_id,
                    self.actor,
                    heartbeat_interval=self.settings.websocket_ping_interval,
                    heartbeat_timeout=self.settings.websocket_ping_timeout,
                )
            )
            while (frame := await self._receive()) is not None:
                if len(frame) > self.settings.max_message_bytes:
                    await self._refuse_oversize(len(frame))
                    return
                await self.handle(frame)
        except WebSocketDisconnect:
            pass  # the client went away mid-send; nothing left to tell it
        finally:
            await self.engine.disconnect(self.connection_id)

    async def handle(self, frame: bytes) -> None:
        """Answer one frame: a reply, or an error that leaves the socket open."""
        echo: Mapping[str, str] = {}
        try:
            payload = messages.decode(frame)
            echo = messages.correlation_ids(payload)
            await self.dispatch(messages.parse(payload), echo)
        except EngineError as exc:
            await self.send(ws_error_from(exc, echo=echo))
        except WebSocketDisconnect:
            raise
        except Exception:
            # A bug must cost this message only, never the connection or anyone else's work.
            log.exception("unexpected error handling a message on %s", self.connection_id)
            await self.send(ws_error(INTERNAL_ERROR, "internal error", echo=echo))

    async def dispatch(self, message: InboundMessage, echo: Mapping[str, str]) -> None:
        match message:
            case Ping():
                await self.send(messages.pong(datetime.now(UTC), echo))
            case JoinRoom(room_id=room_id):
                view = await self.engine.join_room(
                    self.actor, room_id, self.connection_id, client_msg_id=message.client_msg_id
                )
                await self.send(messages.room_state(view))
            case _:
                # Valid by the schema but not handled by this server yet (issue 3): say so, never
                # stay silent, so a client does not wait for an answer that will not come.
                raise UnknownMessageType(f"message type {message.type!r} is not supported by this server yet")

    async def send(self, message: dict[str, Any]) -> None:
        await self.websocket.send_text(orjson.dumps(message).decode())

    async def _receive(self) -> bytes | None:
        """The next data frame as UTF-8 bytes (text or binary alike), or None once disconnected.

        Measured in bytes, not characters: the limit protects memory and the log, and a frame of
        emoji is four times its length in characters.
        """
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is not None:
            return str(text).encode()
        return bytes(message.get("bytes") or b"")

    async def _refuse_oversize(self, size: int) -> None:
        limit = self.settings.max_message_bytes
        await self.send(
            ws_error(
                MESSAGE_TOO_LARGE, f"message of {size} bytes exceeds the limit of {limit} bytes", limit=limit
            )
        )
        await self.websocket.close(CLOSE_MESSAGE_TOO_BIG, "message too large")
