"""`Session`: one connection's messages, from a raw frame to the handler that answers it. No I/O.

    session = engine.open_session(actor, sink=websocket.send_text, close=websocket.close)
    await session.open()                           # `connected`
    while (frame := await receive()) is not None:
        if (close := await session.receive(frame)) is not None:
            await websocket.close(close.code, close.reason)
            break
    await session.end()                            # its rooms are left

The transport (api/websocket.py) only pumps frames: everything a frame means is decided here. A
frame is checked for size, decoded, validated, counted, rate-limited and dispatched. Most are answered
before the next is read. A `cell_update` whose checks need nothing but this node's memory is queued
for the log at once and answered in a task of its own, so the next frame is read while it commits:
a busy editor's updates then share commits instead of each waiting out the one before (at most
`MAX_IN_FLIGHT` of them; past that the next frame waits). Order is kept all the same: such an update's
event is queued behind the connection's earlier ones, any other message waits until everything before
it is answered, and every reply waits for the replies to the messages before it. That keeps each
connection's log order and replies in the order of its messages, and it is the backpressure: a client
that sends faster than its appends commit waits in its own TCP window, not in our memory. Every reply
goes through the node's queue for the connection, so replies and fanned-out events reach the socket in
one order.

A bad message gets an error that echoes its `client_msg_id`/`request_id`, and the next frame is read
as usual. Two exceptions close the connection: a frame over `max_message_bytes` (1009), because its
size is the problem, and frames that fail before reaching a handler (invalid JSON, unknown type,
schema violation) beyond the bad-frame budget (1008), because answering garbage is work the server
must not do for free. A `cells_update` with more cells than the schema takes is over a limit, not
garbage: it is answered as its handler answers one over MAX_CELLS_PER_UPDATE.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from engine import protocol
from engine.config import EngineConfig
from engine.decisions.access import authorize
from engine.decisions.cells import check_cell_count
from engine.fanout.hub import SubscriberClosed
from engine.features.ai.runner import idempotency_key as ai_start_key
from engine.features.limits import BadFrameBudget
from engine.features.ports import Submitted
from engine.features.tokens import Credentials, TokenExpiry, VerifyToken
from engine.model.actors import Actor
from engine.model.catalogue import AI_CANCELLED, REVOKED
from engine.model.errors import AuthenticationFailed, EngineError, Rejected, UnknownMessageType
from engine.model.events import RecordedEvent, connection_key
from engine.model.streams import (
    ROOM_STREAM_PREFIX,
    durable_stream,
    is_volatile_stream,
    room_id_of,
    room_stream,
    user_stream,
)
from engine.node import Node
from engine.projections.ai_requests import end_key
from engine.protocol import (
    AiCancel,
    AiRequest,
    CellChange,
    CellsUpdate,
    CellUpdate,
    CursorMove,
    FileUploadProgress,
    FileUploadStart,
    InboundMessage,
    JoinRoom,
    LeaveRoom,
    LoadSheet,
    NotificationRead,
    Ping,
    RefreshToken,
    StatusUpdate,
    SubscribeNotifications,
    TypingStart,
    TypingStop,
)
from engine.protocol.close_codes import CloseCode
from engine.protocol.error_codes import INTERNAL_ERROR, MESSAGE_TOO_LARGE
from engine.protocol.fields import MAX_CELLS_IN_SCHEMA

log = logging.getLogger(__name__)

MAX_IN_FLIGHT: Final = 32
"""A connection's messages queued for the log and not yet answered, at most. The sender's next frame
waits past it: one commit takes them all, and memory per connection stays bounded."""


@dataclass(frozen=True, slots=True)
class Close:
    """The session asks the transport to close the socket."""

    code: int
    reason: str


class Handlers(Protocol):
    """What a session dispatches to: the engine's message handlers (engine/service.py)."""

    async def join_room(
        self, actor: Actor, room_id: str, connection_id: str, *, since: int | None, client_msg_id: str | None
    ) -> object: ...
    async def leave_room(
        self,
        actor: Actor,
        room_id: str,
        connection_id: str,
        *,
        client_msg_id: str | None = None,
        reason: str = ...,
    ) -> None: ...
    async def move_cursor(
        self,
        actor: Actor,
        connection_id: str,
        room: str,
        *,
        x: float,
        y: float,
        cell: str | None,
        client_msg_id: str | None,
    ) -> None: ...
    async def typing(
        self,
        actor: Actor,
        connection_id: str,
        room: str,
        cell_id: str,
        *,
        started: bool,
        client_msg_id: str | None,
    ) -> None: ...
    async def update_cell(
        self,
        actor: Actor,
        connection_id: str,
        sheet_id: str,
        cell_id: str,
        *,
        value: Any,
        formula: str | None,
        version: int | None,
        room: str | None,
        client_msg_id: str | None,
    ) -> None: ...
    async def update_cells(
        self,
        actor: Actor,
        connection_id: str,
        sheet_id: str,
        changes: Sequence[CellChange],
        *,
        room: str | None,
        client_msg_id: str | None,
    ) -> None: ...
    async def load_sheet(self, actor: Actor, connection_id: str, sheet_id: str) -> None: ...
    async def set_status(
        self, actor: Actor, connection_id: str, status: str, *, client_msg_id: str | None
    ) -> None: ...
    async def request_ai(
        self,
        actor: Actor,
        connection_id: str,
        request_id: str,
        query: str,
        sheet_id: str,
        context: Mapping[str, Any] | None,
        *,
        client_msg_id: str | None,
    ) -> None: ...
    async def cancel_ai(
        self, actor: Actor, connection_id: str, request_id: str, *, client_msg_id: str | None
    ) -> None: ...
    async def ai_retried(self, user_id: str, connection_id: str, request_id: str) -> None: ...
    async def subscribe_notifications(
        self,
        actor: Actor,
        connection_id: str,
        filters: Mapping[str, list[str] | None],
        *,
        client_msg_id: str | None,
    ) -> None: ...
    async def read_notification(
        self, actor: Actor, connection_id: str, notification_id: str, *, client_msg_id: str | None
    ) -> None: ...
    async def start_upload(
        self,
        actor: Actor,
        connection_id: str,
        file_id: str,
        *,
        filename: str,
        file_size: int,
        mime_type: str,
        client_msg_id: str | None,
    ) -> None: ...
    async def report_upload_progress(
        self,
        actor: Actor,
        connection_id: str,
        file_id: str,
        *,
        bytes_uploaded: int,
        total_bytes: int,
        percentage: float,
        client_msg_id: str | None,
    ) -> None: ...
    def submit_cell_update(
        self,
        actor: Actor,
        connection_id: str,
        sheet_id: str,
        cell_id: str,
        *,
        value: Any,
        formula: str | None,
        version: int | None,
        room: str | None,
        client_msg_id: str | None,
    ) -> Submitted | None: ...
    async def disconnect(self, connection_id: str) -> None: ...


class Session:
    def __init__(
        self,
        node: Node,
        handlers: Handlers,
        config: EngineConfig,
        credentials: Credentials,
        connection_id: str,
        *,
        tokens: TokenExpiry,
        verify: VerifyToken | None = None,
    ) -> None:
        self._node = node
        self._handlers = handlers
        self._config = config
        self._tokens = tokens
        self._verify = verify  # None: this transport cannot verify a token, so refresh_token is refused
        self.actor = credentials.actor
        self.connection_id = connection_id
        self._bad_frames = BadFrameBudget(config.bad_frames_per_window, config.bad_frame_window)
        self._in_flight: deque[asyncio.Task[None]] = deque()  # answering in their own tasks, in order
        tokens.track(connection_id, credentials.expires_at)

    async def open(self) -> None:
        """Greet the client: `connected`, with its connection id and the heartbeat it should expect."""
        await self.send(
            protocol.connected(
                self.connection_id,
                self.actor,
                heartbeat_interval=self._config.heartbeat_interval,
                heartbeat_timeout=self._config.heartbeat_timeout,
            )
        )

    async def receive(self, frame: bytes) -> Close | None:
        """Answer one frame (UTF-8 bytes of a text or binary message); a Close when the socket must
        close. Raises SubscriberClosed when the client is gone, which ends the session."""
        if not self._node.serving(self.connection_id):
            return None  # closed by the server (slow consumer, removal): its close is on the way
        if self._tokens.expired(self.connection_id):
            await self.answered()
            await self._tokens.close_expired(self.connection_id)  # before acting with a dead token
            return None
        limit = self._config.max_message_bytes
        if len(frame) > limit:
            too_large = f"message of {len(frame)} bytes exceeds the limit of {limit} bytes"
            await self.answered()
            await self.send(error_message(MESSAGE_TOO_LARGE, too_large, limit=limit))
            await self._node.flush(self.connection_id)  # the error first, then the close
            return Close(CloseCode.MESSAGE_TOO_BIG, "message too large")
        try:
            return await self._answer(frame)
        except SubscriberClosed:
            # Closed as a slow consumer (or its send failed): the close, carrying the seqs to resume
            # from, is on its way; the transport reads on until it lands, so it is not cut short.
            log.info("connection %s is closing; message not answered", self.connection_id)
        return None

    async def answered(self) -> None:
        """Wait until every message read so far has been answered (its queued event settled too)."""
        while self._in_flight:
            await asyncio.wait(self._in_flight)  # never raises: each task answers its own errors
            self._forget_answered()

    async def end(self) -> None:
        """The socket is gone: settle what it sent, then forget the connection and leave its rooms
        (its departures are appended after its last edits)."""
        try:
            await self.answered()
        finally:
            self._tokens.forget(self.connection_id)
            await self._handlers.disconnect(self.connection_id)

    async def refresh(self, token: str) -> None:
        """`refresh_token`: verify the new token as at connect, for the same user; from now on act
        with its roles and rooms (rooms it no longer allows are left) and its expiry. A bad token
        raises AuthenticationFailed and changes nothing: the old one holds until it expires."""
        if self._verify is None:
            raise AuthenticationFailed("this connection cannot refresh its token")
        fresh = self._verify(token)
        if fresh.actor.user_id != self.actor.user_id:
            raise AuthenticationFailed("the new token is for another user")
        connection = self._node.connections.of(self.actor, self.connection_id)
        self.actor = connection.actor = fresh.actor
        self._tokens.track(self.connection_id, fresh.expires_at)
        await self.send(protocol.token_refreshed(fresh.expires_at))
        for room_id in connection.departures:
            if not fresh.actor.may_join(room_id):
                await self._handlers.leave_room(fresh.actor, room_id, self.connection_id, reason=REVOKED)

    async def send(self, message: dict[str, Any]) -> None:
        """Queue a message for this connection behind what is queued for it (an error is counted
        there). Raises SubscriberClosed."""
        await self._node.reply(self.connection_id, message)

    async def _answer(self, frame: bytes) -> Close | None:
        echo: Mapping[str, str] = {}
        try:
            payload = protocol.decode(frame)
            echo = protocol.correlation_ids(payload)
            message = protocol.parse(payload)
        except protocol.TooManyCells as exc:
            await self._too_many_cells(exc.count, echo)
            return None
        except Rejected as exc:
            await self.answered()
            await self.send(error_message(exc.code, exc.message, echo=echo, **_details(exc)))
            if self._bad_frames.spend():
                return None
            log.info("connection %s is over its bad-frame budget; closing it", self.connection_id)
            await self._node.flush(self.connection_id)  # the error first, then the close
            return Close(CloseCode.BAD_FRAMES, "bad-frame budget exceeded")
        self._node.traffic.message_received(message.type)  # /ws/stats and /metrics
        self._forget_answered()
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            await asyncio.wait((self._in_flight[0],))
            if not self._node.serving(self.connection_id):
                return None  # closed by the server meanwhile, as at the top of `receive`
        try:
            # Before any handler: a limited user's message is refused with nothing persisted (`ping`
            # is free).
            self._node.rate_limiter.check(self.actor.user_id, message.type)
            submitted = self._submit(message)
        except Exception as exc:  # refused before anything was queued: answered in turn below
            refused: Exception | None = exc
            submitted = None
        else:
            refused = None
        if submitted is not None:
            previous = self._in_flight[-1] if self._in_flight else None
            answering = self._answer_submitted(message, echo, submitted, previous)
            self._in_flight.append(asyncio.create_task(answering))
            return None
        await self.answered()
        await self._handle(message, echo, _raise(refused) if refused else self._dispatch(message, echo))
        return None

    async def _too_many_cells(self, count: int, echo: Mapping[str, str]) -> None:
        """A `cells_update` past the schema's cap is over a limit, not malformed: answered as its
        handler answers one over MAX_CELLS_PER_UPDATE (which is never above the cap), after the same
        rate-limit and role checks, and at no cost to the bad-frame budget."""
        self._node.traffic.message_received("cells_update")
        await self.answered()
        limit = min(self._config.max_cells_per_update, MAX_CELLS_IN_SCHEMA)
        try:
            self._node.rate_limiter.check(self.actor.user_id, "cells_update")
            authorize(self.actor, "cells_update")
            check_cell_count(count, limit)
        except Rejected as exc:
            await self.send(error_message(exc.code, exc.message, echo=echo, **_details(exc)))

    def _submit(self, message: InboundMessage) -> Submitted | None:
        """Queue the message's event now if its handler can without waiting (see the module docstring)."""
        if isinstance(message, CellUpdate):
            return self._handlers.submit_cell_update(
                self.actor,
                self.connection_id,
                message.sheet_id,
                message.cell_id,
                value=message.value,
                formula=message.formula,
                version=message.version,
                room=message.room,
                client_msg_id=message.client_msg_id,
            )
        return None

    async def _answer_submitted(
        self,
        message: InboundMessage,
        echo: Mapping[str, str],
        submitted: Submitted,
        previous: asyncio.Task[None] | None,
    ) -> None:
        async def settle() -> None:
            try:
                outcome = await submitted.outcome  # published as soon as it commits, in log order
            finally:
                if previous is not None and not previous.done():
                    await asyncio.wait((previous,))  # answered after the messages before it
            await submitted.answer(outcome)

        try:
            await self._handle(message, echo, settle())
        except SubscriberClosed:
            log.info("connection %s is closing; message not answered", self.connection_id)

    def _forget_answered(self) -> None:
        while self._in_flight and self._in_flight[0].done():
            self._in_flight.popleft()

    async def _handle(self, message: InboundMessage, echo: Mapping[str, str], work: Awaitable[None]) -> None:
        try:
            try:
                await work
            except Rejected as refusal:
                # Answered under the same clauses: the log that tells a retry may be unreadable (try
                # again), and a retried `ai_request` reads and sends more.
                await self._refused(message, echo, refusal)
        except EngineError as exc:
            await self.send(error_message(exc.code, exc.message, echo=echo, **_details(exc)))
        except SubscriberClosed:
            raise
        except Exception:
            # A bug must cost this message only, never the connection or anyone else's work.
            log.exception("unexpected error handling a message on %s", self.connection_id)
            await self.send(error_message(INTERNAL_ERROR, "internal error", echo=echo))

    async def _refused(self, message: InboundMessage, echo: Mapping[str, str], exc: Rejected) -> None:
        """Idempotency first: a retry of a message already applied (from a new tab, after a reconnect,
        past a limit) gets the original ack, never the error of a later check; a retried
        `ai_request` also brings the connection up to date on its request first. Only for a
        well-formed message: a bad frame costs no read of the log."""
        cmid = message.client_msg_id
        original = await self._original(message, cmid) if cmid else None
        if original is not None and cmid is not None:
            if isinstance(message, AiRequest):
                await self._handlers.ai_retried(self.actor.user_id, self.connection_id, message.request_id)
            await self.send(_original_ack(original, cmid))
        else:
            await self.send(error_message(exc.code, exc.message, echo=echo, **_details(exc)))

    async def _original(self, message: InboundMessage, cmid: str) -> RecordedEvent | None:
        """The event a retry of `message` would repeat: ids are unique per user and stream, so the
        lookup is in the stream the message acts in (None for a message that appends nothing under
        its id, or a sheet never edited)."""
        user_id = self.actor.user_id
        match message:
            case JoinRoom(room_id=room):
                # A join is its connection's, keyed by it (engine/features/rooms.py): from another
                # connection it is a join of its own, which a limit may refuse, never an ack of a
                # membership this connection does not have. So it is a repeat only while the
                # connection is in the room, and then its key finds the join that put it there.
                connection = self._node.connections.get(self.connection_id)
                if connection is None or room not in connection.rooms:
                    return None
                return await self._node.event_by_key(
                    user_id, str(connection_key(cmid, self.connection_id)), room_stream(room)
                )
            case LeaveRoom(room_id=room):
                stream = room_stream(room)
            case CursorMove(room=room) | TypingStart(room=room) | TypingStop(room=room):
                stream = room_stream(room)
            case CellUpdate() | CellsUpdate():
                named = message.room or await self._node.sheet_room(message.sheet_id)
                if named is None:
                    return None
                stream = room_stream(named)
            case SubscribeNotifications():
                return await self._node.event_by_key(
                    user_id, str(connection_key(cmid, self.connection_id)), user_stream(user_id)
                )
            case StatusUpdate() | NotificationRead():
                stream = user_stream(user_id)
            case FileUploadStart() | FileUploadProgress():
                stream = user_stream(user_id)
            case AiRequest(request_id=request_id):
                # Its start is keyed by the request id (one run per request): a repeat carrying a
                # client_msg_id is a retry of it, as the runner acks it (engine/features/ai/runner.py).
                return await self._node.event_by_key(user_id, ai_start_key(request_id), user_stream(user_id))
            case AiCancel(request_id=request_id):
                # The request's one ending, if it is the cancellation this client_msg_id recorded.
                ending = await self._node.event_by_key(user_id, end_key(request_id), user_stream(user_id))
                if (
                    ending is None
                    or ending.type != AI_CANCELLED
                    or ending.metadata.get("client_msg_id") != cmid
                ):
                    return None
                return ending
            case _:
                return None
        return await self._node.event_by_key(user_id, cmid, stream)

    async def _dispatch(self, message: InboundMessage, echo: Mapping[str, str]) -> None:
        """Hand a valid message to its handler, which sends the replies (they must be ordered with
        the fanout, e.g. `room_state` before a join's replayed events)."""
        handlers, actor, cid, cmid = self._handlers, self.actor, self.connection_id, message.client_msg_id
        match message:
            case Ping():
                await self.send(protocol.pong(datetime.now(UTC), echo))
            case RefreshToken(token=token):
                await self.refresh(token)
            case LoadSheet(sheet_id=sheet_id):
                await handlers.load_sheet(actor, cid, sheet_id)
            case CellsUpdate():
                await handlers.update_cells(
                    actor, cid, message.sheet_id, message.cells, room=message.room, client_msg_id=cmid
                )
            case JoinRoom(room_id=room_id, since=since):
                await handlers.join_room(actor, room_id, cid, since=since, client_msg_id=cmid)
            case LeaveRoom(room_id=room_id):
                await handlers.leave_room(actor, room_id, cid, client_msg_id=cmid)
            case CursorMove(room=room, x=x, y=y, cell=cell):
                await handlers.move_cursor(actor, cid, room, x=x, y=y, cell=cell, client_msg_id=cmid)
            case TypingStart(room=room, cell_id=cell_id) | TypingStop(room=room, cell_id=cell_id):
                started = isinstance(message, TypingStart)
                await handlers.typing(actor, cid, room, cell_id, started=started, client_msg_id=cmid)
            case AiRequest(request_id=request_id, query=query, sheet_id=sheet_id, context=context):
                ctx = None if context is None else context.model_dump()
                await handlers.request_ai(actor, cid, request_id, query, sheet_id, ctx, client_msg_id=cmid)
            case AiCancel(request_id=request_id):
                await handlers.cancel_ai(actor, cid, request_id, client_msg_id=cmid)
            case StatusUpdate(status=status):
                await handlers.set_status(actor, cid, status, client_msg_id=cmid)
            case CellUpdate():
                await handlers.update_cell(
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
                await handlers.subscribe_notifications(actor, cid, message.filters(), client_msg_id=cmid)
            case NotificationRead(notification_id=notification_id):
                await handlers.read_notification(actor, cid, notification_id, client_msg_id=cmid)
            case FileUploadStart():
                await handlers.start_upload(
                    actor,
                    cid,
                    message.file_id,
                    filename=message.filename,
                    file_size=message.file_size,
                    mime_type=message.mime_type,
                    client_msg_id=cmid,
                )
            case FileUploadProgress():
                await handlers.report_upload_progress(
                    actor,
                    cid,
                    message.file_id,
                    bytes_uploaded=message.bytes_uploaded,
                    total_bytes=message.total_bytes,
                    percentage=message.percentage,
                    client_msg_id=cmid,
                )
            case _:
                # Valid by the schema but unhandled: say so, never stay silent, so a client does not
                # wait for an answer that will not come.
                raise UnknownMessageType(f"message type {message.type!r} is not supported by this server")


async def _raise(error: Exception) -> None:
    raise error


def error_message(
    code: str, text: str, *, echo: Mapping[str, str] | None = None, **details: Any
) -> dict[str, Any]:
    """An `error` for a socket, stamped now."""
    return protocol.error(code, text, now=datetime.now(UTC), echo=echo, **details)


def _original_ack(event: RecordedEvent, client_msg_id: str) -> dict[str, Any]:
    """The ack the event's first append answered: its room (for a room's events) and its `seq`
    (none for a volatile event, which takes no place in a sequence)."""
    stream = durable_stream(event.stream_id)
    room_id = room_id_of(stream) if stream.startswith(ROOM_STREAM_PREFIX) else None
    seq = None if is_volatile_stream(event.stream_id) else event.stream_version
    return protocol.ack(client_msg_id, room_id=room_id, seq=seq)


def _details(exc: EngineError) -> dict[str, Any]:
    """An error's details for the client; `retryable` when the same message may succeed later (the
    store was unavailable), because then retrying can help."""
    details: dict[str, Any] = dict(exc.details)
    if exc.retryable:
        details["retryable"] = True
    return details


__all__ = ["Close", "Handlers", "Session", "error_message"]
