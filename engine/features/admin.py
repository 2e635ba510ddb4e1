"""What an admin does to clients over REST: post to a room, message a user, remove a connection, and
shut the node down gracefully. api/routes/management.py is their thin HTTP face.

Everything an admin does to clients is itself an event, so the log tells the whole story and a
resuming client sees what live members saw:

    broadcast_to_room   RoomMessageBroadcast in `room:R`: a durable room event with the room's next
                        `seq`, fanned out to members now and replayed by `join_room since` later
    notify_user         UserMessageSent in `user:U`: persisted even when the user is offline
    remove_connection   UserLeftRoom (reason "removed") for every room the connection had joined
    drain               the leaves of every closed connection (reason "disconnected"), as for any close

A posted message is delivered as posted, plus the envelope. It may not take the `type` of one of the
protocol's own server messages (a client would act on a forged `cell_updated` or `error`), nor carry
the envelope's keys, which the server alone sets (an admin cannot forge a room's `seq`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from engine.fanout.hub import Hub, SubscriberClosed
from engine.fanout.live import Live, LoadRoom, UserPublisher
from engine.features.connections import Connections
from engine.features.ports import Commit, Flush, Reply, commit_leaves
from engine.model.actors import Actor
from engine.model.catalogue import (
    REMOVED,
    USER_MESSAGE_SENT,
    RoomMessageBroadcast,
    UserMessageSent,
)
from engine.model.errors import NotFound, Rejected, RoomNotFound, ValidationFailed
from engine.model.events import Committed, NewEvent, Origin, RecordedEvent
from engine.model.identifiers import identifier_problem
from engine.model.reading import ReadStream
from engine.model.streams import room_stream, user_id_of, user_stream
from engine.protocol import broadcast, error, server_shutdown
from engine.protocol.close_codes import CloseCode
from engine.protocol.error_codes import CONNECTION_REMOVED
from engine.protocol.rendering import encode, render

log = logging.getLogger(__name__)

# Keys of the protocol's envelope (docs/protocol.md): set by the server from the event, never taken
# from a posted body.
ENVELOPE_KEYS: Final = frozenset({"room_id", "seq", "ts", "client_msg_id"})
# A direct message's frame also carries its id in the user's inbox.
DIRECT_MESSAGE_KEYS: Final = ENVELOPE_KEYS | {"notification_id"}


class MessageTooLarge(Rejected):
    """A posted message larger than a frame may be (it reaches clients as one frame)."""

    code = "MESSAGE_TOO_LARGE"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A posted message as committed, and how many of this node's connections it was queued for."""

    seq: int
    recorded_at: datetime
    delivered_to: int
    notification_id: str | None = None  # a direct message's id in the user's inbox


@dataclass(frozen=True, slots=True)
class Removal:
    connection_id: str
    user_id: str
    rooms_left: tuple[str, ...]


def check_posted(
    message: Mapping[str, Any], *, set_by_server: frozenset[str] = ENVELOPE_KEYS
) -> dict[str, Any]:
    """The posted body as it will be recorded; ValidationFailed if it could pass for a protocol
    message (no string `type`, a reserved `type`, a key the server sets: `set_by_server`)."""
    kind = message.get("type")
    if not isinstance(kind, str) or not kind.strip():
        raise ValidationFailed("a posted message needs a non-empty string 'type'")
    forged = sorted(set_by_server & message.keys())
    if forged:
        raise ValidationFailed(f"the server sets {', '.join(forged)}; a posted message may not carry them")
    broadcast(message)  # raises ValidationFailed for a type reserved for the protocol's own messages
    try:
        encoded = orjson.dumps(message)
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits: no client could read it
        raise ValidationFailed(f"a posted message must be plain JSON: {exc}") from None
    if b"\\u0000" in encoded:  # PostgreSQL's jsonb cannot hold NUL in a string
        raise ValidationFailed("a posted message may not contain NUL characters")
    if _non_finite(message):  # the HTTP layer's reader takes them; encoded, they became `null`
        raise ValidationFailed("a posted message must be plain JSON: NaN and Infinity are no JSON numbers")
    return dict(message)


def _non_finite(value: object) -> bool:
    """Whether `value` holds a float NaN or infinity anywhere (its depth is bounded: it encoded)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_non_finite(item) for item in value)
    return False


def check_id(kind: str, value: str) -> None:
    if (problem := identifier_problem(value)) is not None:
        raise ValidationFailed(f"{kind} {problem}")


Depart = Callable[[str, str], list[NewEvent]]
"""Forget an open connection and return the `UserLeftRoom` (with that reason) its departure needs."""


class Admin:
    """Admin actions; `draining` is true from `begin_shutdown` on."""

    def __init__(
        self,
        *,
        node_id: str,
        connections: Connections,
        live: Live,
        load_room: LoadRoom,
        hub: Hub,
        commit: Commit,
        reply: Reply,
        flush: Flush,
        read_stream: ReadStream,
        depart: Depart,
        departing: Callable[[], int],
    ) -> None:
        self._node_id = node_id
        self._connections = connections
        self._live = live
        self._load_room = load_room
        self._hub = hub
        self._commit = commit
        self._reply = reply
        self._flush = flush
        self._read_stream = read_stream
        self._depart = depart
        self._departing = departing  # sessions whose departure is being recorded right now
        self.draining = False

    def publishers(self) -> dict[str, UserPublisher]:
        return {USER_MESSAGE_SENT: self._publish_user_message}

    # Posting.

    async def broadcast_to_room(self, admin: Actor, room_id: str, message: Mapping[str, Any]) -> Delivery:
        """Append `RoomMessageBroadcast`; every member's connections get the message with the room's
        `room_id`/`seq`/`ts`. ROOM_NOT_FOUND for a room without events: broadcasting never creates one.

        Existence is read before the append, not inside it: a room, once it has events, never stops
        existing, so no race can make the check wrong.
        """
        check_id("room_id", room_id)
        posted = RoomMessageBroadcast(room_id, admin.user_id, check_posted(message))
        if not await self._has_events(room_stream(room_id)):
            raise RoomNotFound(f"room {room_id!r} does not exist")
        await self._live.load(room_id, self._load_room)  # the view must be at hand before the append
        event = posted.new(Origin.of(self._node_id, admin))
        return self._delivery(await self._commit(event), room_stream(room_id))

    async def notify_user(self, admin: Actor, user_id: str, message: Mapping[str, Any]) -> Delivery:
        """Append `UserMessageSent` to the user's stream; each of their connections gets the message with
        the user's `seq`/`ts`. An offline user finds it unread in their inbox (`delivered_to` 0)."""
        check_id("user_id", user_id)
        posted = check_posted(message, set_by_server=DIRECT_MESSAGE_KEYS)
        sent = UserMessageSent(user_id, admin.user_id, posted, f"msg_{uuid.uuid4().hex}")
        event = sent.new(Origin.of(self._node_id, admin))
        delivery = self._delivery(await self._commit(event), user_stream(user_id))
        return replace(delivery, notification_id=sent.message_id)

    # Removing a connection.

    async def remove_connection(self, connection_id: str, *, grace: float = 2.0) -> Removal:
        """Tell the connection why (a CONNECTION_REMOVED error), close it with 4410, and append a
        `UserLeftRoom` with reason "removed" for each room it had joined; the remaining members get
        `room_state` and `user_left` as for any leave. NOT_FOUND if it is not open on this node.

        The notice gets `grace` seconds to reach the socket: a client that does not read is closed
        anyway. The connection is forgotten in the same step as its close begins, so the session's
        own departure, which follows the close, finds nothing left to record.
        """
        connection = self._connections.get(connection_id)
        if connection is None:
            raise NotFound(f"no open connection {connection_id!r} on this node")
        notice = error(
            CONNECTION_REMOVED,
            "connection removed by an administrator",
            now=datetime.now(UTC),
            close_code=CloseCode.REMOVED,
        )
        await self._say_last(connection_id, notice, grace)
        rooms = tuple(connection.departures)
        leaves = self._depart(connection_id, REMOVED)
        self._close(connection_id, CloseCode.REMOVED)
        # As a disconnect's: about one commit however many rooms, within the wait of an admin who
        # asked through another node.
        await commit_leaves(self._commit, leaves, log)
        user_id = connection.actor.user_id
        if not self._connections.has_user(user_id):
            self._live.forget_user(user_id)
        return Removal(connection_id, user_id, rooms)

    # Shutting down.

    def begin_shutdown(self) -> bool:
        """Stop accepting connections (the api refuses handshakes and reports unhealthy from now on);
        False if a shutdown had already begun."""
        if self.draining:
            return False
        self.draining = True
        return True

    async def drain(self, *, reason: str, grace: float = 5.0, reconnect_after: float | None = None) -> int:
        """Send every connection `server_shutdown` and close it with 1012; returns how many were closed.

        Waits (at most `grace` seconds) until every session has ended and recorded its leaves, so
        when this returns, no handler is mid-append and `stop()` commits whatever is still queued:
        no acked event is lost (an ack is only ever sent after its commit). Connections that open
        while draining (a handshake accepted just before `begin_shutdown`) are closed as they appear.
        """
        closed: set[str] = set()
        message = server_shutdown(datetime.now(UTC), reason=reason, reconnect_after=reconnect_after)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._connections or self._departing():
            fresh = [c.connection_id for c in self._connections if c.connection_id not in closed]
            closed.update(fresh)
            await asyncio.gather(*(self._close_after(cid, message, grace / 2) for cid in fresh))
            if loop.time() >= deadline:
                log.warning(
                    "shutdown: %d connection(s) still open after %.1fs", len(self._connections), grace
                )
                break
            await asyncio.sleep(0.02)
        return len(closed)

    # Internals.

    def _delivery(self, outcome: object, topic: str) -> Delivery:
        # Read right after the commit published, with no await in between: the members it reached.
        if not isinstance(outcome, Committed):  # no idempotency key, no expected version
            raise RuntimeError(f"unexpected outcome of an admin post: {outcome}")
        return Delivery(outcome.stream_version, outcome.recorded_at, len(self._hub.members(topic)))

    async def _has_events(self, stream_id: str) -> bool:
        return bool(await self._read_stream(stream_id, limit=1))

    async def _say_last(self, connection_id: str, message: dict[str, Any], grace: float) -> None:
        """Queue `message` and wait (at most `grace` seconds) until it has gone out."""
        try:
            async with asyncio.timeout(grace):
                await self._reply(connection_id, message)
                await self._flush(connection_id)
        except (SubscriberClosed, TimeoutError):
            log.info("connection %s did not take its last message in time", connection_id)

    async def _close_after(self, connection_id: str, message: dict[str, Any], grace: float) -> None:
        await self._say_last(connection_id, message, grace)
        self._close(connection_id, CloseCode.SERVICE_RESTART)

    def _close(self, connection_id: str, code: int) -> None:
        """Close the socket from its subscriber: what is still queued is dropped, and the close
        reason names the last `seq` delivered per room, from which the client resumes."""
        with contextlib.suppress(KeyError):  # already gone
            self._hub.subscriber(connection_id).fail(code)

    def _publish_user_message(self, event: RecordedEvent, sender: str | None) -> None:
        """To every connection of the recipient on this node."""
        topic = user_stream(user_id_of(event.stream_id))
        self._hub.publish(topic, encode(render(event, None)), seq=event.stream_version)


__all__ = [
    "Admin",
    "Delivery",
    "MessageTooLarge",
    "Removal",
    "check_posted",
]
