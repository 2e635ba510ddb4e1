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

from starlette.websockets import WebSocket, WebSocketDisconnect

from api.errors import CLOSE_MESSAGE_TOO_BIG, INTERNAL_ERROR, MESSAGE_TOO_LARGE, ws_error, ws_error_from
from api.logging_setup import connection_id_var
from api.settings import Settings
from engine import protocol as messages
from engine.fanout.hub import SubscriberClosed
from engine.model.actors import Actor
from engine.model.errors import EngineError, UnknownMessageType
from engine.protocol import (
    AiCancel,
    AiRequest,
    CellUpdate,
    CursorMove,
    FileUploadProgress,
    FileUploadStart,
    InboundMessage,
    JoinRoom,
    LeaveRoom,
    NotificationRead,
    Ping,
    StatusUpdate,
    SubscribeNotifications,
    TypingStart,
    TypingStop,
)
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
        """Greet, then serve messages until the client goes away; its rooms are left either way.

        The connection is subscribed to the engine's hub from the start, and every frame to the
        socket (replies included) goes through it: one sender task per socket keeps replies and
        fanned-out events in one order, and a slow client cannot stall this loop or anyone else.
        """
        self.connection_id = self.engine.connect(self.actor, self.websocket.send_text, self._close)
        connection_id_var.set(self.connection_id)  # on every log line of this socket's task
        log.info("connection opened", extra={"user_id": self.actor.user_id})
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
        except (WebSocketDisconnect, SubscriberClosed):
            pass  # the client went away mid-send; nothing left to tell it
        finally:
            await self.engine.disconnect(self.connection_id)
            log.info("connection closed")

    async def handle(self, frame: bytes) -> None:
        """Answer one frame: a reply, or an error that leaves the socket open."""
        try:
            await self._answer(frame)
        except SubscriberClosed:
            # Closed as a slow consumer (or its send failed): the close, carrying the seqs to resume
            # from, is on its way; the loop reads on until it lands, so it is not cut short.
            log.info("connection %s is closing; message not answered", self.connection_id)

    async def _answer(self, frame: bytes) -> None:
        echo: Mapping[str, str] = {}
        try:
            payload = messages.decode(frame)
            echo = messages.correlation_ids(payload)
            await self.dispatch(messages.parse(payload), echo)
        except EngineError as exc:
            await self.send(ws_error_from(exc, echo=echo))
        except (WebSocketDisconnect, SubscriberClosed):
            raise
        except Exception:
            # A bug must cost this message only, never the connection or anyone else's work.
            log.exception("unexpected error handling a message on %s", self.connection_id)
            await self.send(ws_error(INTERNAL_ERROR, "internal error", echo=echo))

    async def dispatch(self, message: InboundMessage, echo: Mapping[str, str]) -> None:
        """Hand a valid message to the engine, which sends the replies (they must be ordered with the
        fanout, e.g. `room_state` before a join's replayed events)."""
        engine, actor, cid, cmid = self.engine, self.actor, self.connection_id, message.client_msg_id
        engine.stats.message_received(message.type)  # /ws/stats and /metrics (engine/features/traffic.py)
        # Before any handler: a limited user's message is refused with nothing persisted (`ping` is free).
        engine.rate_limiter.check(actor.user_id, message.type)
        match message:
            case Ping():
                await self.send(messages.pong(datetime.now(UTC), echo))
            case JoinRoom(room_id=room_id, since=since):
                await engine.join_room(actor, room_id, cid, since=since, client_msg_id=cmid)
            case LeaveRoom(room_id=room_id):
                await engine.leave_room(actor, room_id, cid, client_msg_id=cmid)
            case CursorMove(room=room, x=x, y=y, cell=cell):
                await engine.move_cursor(actor, cid, room, x=x, y=y, cell=cell, client_msg_id=cmid)
            case TypingStart(room=room, cell_id=cell_id) | TypingStop(room=room, cell_id=cell_id):
                started = isinstance(message, TypingStart)
                await engine.typing(actor, cid, room, cell_id, started=started, client_msg_id=cmid)
            case AiRequest(request_id=request_id, query=query, sheet_id=sheet_id, context=context):
                ctx = None if context is None else context.model_dump()
                await engine.ai.request(actor, cid, request_id, query, sheet_id, ctx, client_msg_id=cmid)
            case AiCancel(request_id=request_id):
                await engine.ai.cancel(actor, cid, request_id, client_msg_id=cmid)
            case StatusUpdate(status=status):
                await engine.set_status(actor, cid, status, client_msg_id=cmid)
            case CellUpdate():
                await engine.update_cell(
                    actor,
                    cid,
                    message.sheet_id,
                    message.cell_id,
                    value=message.value,
                    formula=message.formula,
                    version=message.version,
                    room=message.room,
                    client_msg_id=cmid,
                )
            case SubscribeNotifications():
                await engine.subscribe_notifications(actor, cid, message.filters(), client_msg_id=cmid)
            case NotificationRead(notification_id=notification_id):
                await engine.read_notification(actor, cid, notification_id, client_msg_id=cmid)
            case FileUploadStart():
                await engine.start_upload(
                    actor,
                    cid,
                    message.file_id,
                    filename=message.filename,
                    file_size=message.file_size,
                    mime_type=message.mime_type,
                    client_msg_id=cmid,
                )
            case FileUploadProgress():
                await engine.report_upload_progress(
                    actor,
                    cid,
                    message.file_id,
                    bytes_uploaded=message.bytes_uploaded,
                    total_bytes=message.total_bytes,
                    percentage=message.percentage,
                    client_msg_id=cmid,
                )
            case _:
                # Valid by the schema but not handled by this server yet (issue 3): say so, never
                # stay silent, so a client does not wait for an answer that will not come.
                raise UnknownMessageType(f"message type {message.type!r} is not supported by this server yet")

    async def send(self, message: dict[str, Any]) -> None:
        """Queue a message for this socket behind what is queued for it. Raises SubscriberClosed."""
        if message.get("type") == "error":
            self.engine.stats.error_sent(str(message.get("code")))
        await self.engine.reply(self.connection_id, message)

    async def _close(self, code: int, reason: str) -> None:
        await self.websocket.close(code, reason)

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
        await self.engine.flush(self.connection_id)  # the error first, then the close
        await self.websocket.close(CLOSE_MESSAGE_TOO_BIG, "message too large")
