"""Notifications: `subscribe_notifications`, `notification_read`, creating one (the REST notify
endpoints), and a user's inbox read without a socket (`GET/POST /api/v1/notifications...`).

All append to the user's own stream (`user:{id}`). What a connection subscribed with is kept here, in
memory, per connection (`filters`): it is this node's delivery state, not the user's. The log records
each subscription too (`NotificationsSubscribed`), so the inbox projection can answer what was asked,
but delivery reads the map.

Delivery is per connection, at publish time: `NotificationCreated` is offered only to the user's
connections that subscribed and whose filters all match (engine/projections/notifications.py
`matches`), each through its own subscriber with the event's `seq` in the user's topic, exactly as
the hub would have queued it. `NotificationRead` reaches every connection of the user. Both run in
the same synchronous step as the commit (`publishers`).

Subscribing has no gap: the filters start to apply when the `NotificationsSubscribed` is published
(synchronously with its commit at seq V), and `unread` is folded from the stream up to V. So every
notification is either in `unread` (seq <= V) or delivered live (seq > V), never both and never
neither; a live one may reach the socket before the `notifications_subscribed` reply. That holds for
the connection whose subscription was published, so a subscription's key names its connection
(`connection_key`, engine/model/events.py): a retry from the same connection is answered as the
original was, and one from another connection (the first dropped before its reply) is a subscription
of its own.

Inbox pages are newest first: the cursor is a notification's place in creation order, which never
changes (notifications are only ever added), so a page boundary stays put while new ones arrive.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from engine.decisions.access import authorize
from engine.decisions.own_stream import require_notification
from engine.fanout.hub import Hub
from engine.fanout.live import UserPublisher
from engine.fanout.send_queue import Entry
from engine.features.connections import Connections
from engine.features.ports import Commit, Reply, acknowledge
from engine.model.actors import Actor
from engine.model.catalogue import (
    NOTIFICATION_CREATED,
    NOTIFICATION_READ,
    NOTIFICATIONS_SUBSCRIBED,
    NotificationCreated,
    NotificationRead,
    NotificationsSubscribed,
)
from engine.model.errors import ValidationFailed
from engine.model.events import Committed, Duplicate, Origin, RecordedEvent, connection_key
from engine.model.reading import ReadStream, read_through
from engine.model.streams import user_id_of, user_stream
from engine.projections import notifications as inbox_projection
from engine.projections.notifications import FIELDS, Filters, Inbox, Notification, matches
from engine.protocol import Envelope, notification_event, notifications_subscribed
from engine.protocol.rendering import encode

NOTIFICATION_CREATED_EVENT: Final = "notification_created"
NOTIFICATION_READ_EVENT: Final = "notification_read"


@dataclass(frozen=True, slots=True)
class NotificationPage:
    """One page, newest first: (ordinal, notification) pairs, ordinals counting creation from 1."""

    items: tuple[tuple[int, Notification], ...]
    next_cursor: int | None  # pass as `before` for the next page; None: this is the last
    unread_count: int  # of the whole inbox, not of the page


def page(
    inbox: Inbox, *, unread_only: bool = False, limit: int = 50, before: int | None = None
) -> NotificationPage:
    """The newest `limit` notifications with an ordinal below `before` (all when None)."""
    if limit < 1:
        raise ValidationFailed("limit must be at least 1", limit=limit)
    if before is not None and before < 1:
        raise ValidationFailed("cursor must be a positive integer", cursor=before)
    numbered = list(enumerate(inbox.notifications.values(), start=1))
    wanted = [
        (ordinal, n)
        for ordinal, n in reversed(numbered)
        if (before is None or ordinal < before) and not (unread_only and n.read)
    ]
    items = tuple(wanted[:limit])
    next_cursor = items[-1][0] if len(wanted) > limit else None
    unread = sum(1 for n in inbox.notifications.values() if not n.read)
    return NotificationPage(items, next_cursor, unread)


class Notifications:
    def __init__(
        self,
        *,
        node_id: str,
        connections: Connections,
        hub: Hub,
        commit: Commit,
        reply: Reply,
        read_stream: ReadStream,
    ) -> None:
        self._node_id = node_id
        self._connections = connections
        self._hub = hub
        self._commit = commit
        self._reply = reply
        self._read_stream = read_stream
        self.filters: dict[str, Filters] = {}  # connection id -> what it last subscribed with

    def publishers(self) -> dict[str, UserPublisher]:
        return {
            NOTIFICATIONS_SUBSCRIBED: self._publish_subscribed,
            NOTIFICATION_CREATED: self._publish_created,
            NOTIFICATION_READ: self._publish_read,
        }

    def forget(self, connection_id: str) -> None:
        self.filters.pop(connection_id, None)

    def _keep(self, connection_id: str, filters: Filters) -> None:
        """Filters for an open connection only: one that ended while its subscription was committing
        has been forgotten, and an entry set now would never be removed."""
        if connection_id in self._connections:
            self.filters[connection_id] = filters

    # Messages.

    async def subscribe(
        self,
        actor: Actor,
        connection_id: str,
        filters: Mapping[str, list[str] | None],
        *,
        client_msg_id: str | None = None,
    ) -> None:
        """Append `NotificationsSubscribed`; the connection gets `notifications_subscribed` with its
        filters and the user's unread notifications that match them. Replaces earlier filters."""
        self._connections.of(actor, connection_id)
        authorize(actor, "subscribe_notifications")
        wanted = Filters.of(filters)
        subscribed = NotificationsSubscribed(actor.user_id, connection_id, wanted.as_dict())
        origin = Origin.of(self._node_id, actor, connection_id, client_msg_id)
        outcome = await self._commit(subscribed.new(origin, key=connection_key(client_msg_id, connection_id)))
        if not isinstance(outcome, Committed | Duplicate):
            return
        if isinstance(outcome, Duplicate):
            # A retry applies nothing and is answered as the original was. A Duplicate is not
            # published: the connection keeps what its latest recorded subscription asked for (the
            # original's, unless one came after it), whatever this retry's body says.
            recorded = await self.inbox(actor.user_id)
            self._keep(connection_id, recorded.subscriptions.get(connection_id, wanted))
            inbox = await self.inbox(actor.user_id, upto=outcome.stream_version)
            wanted = inbox.subscriptions.get(connection_id, wanted)
        else:
            self._keep(connection_id, wanted)
            inbox = await self.inbox(actor.user_id, upto=outcome.stream_version)
        unread = [n.as_dict() for n in inbox.unread(wanted)]
        envelope = Envelope(None, outcome.stream_version, outcome.recorded_at, client_msg_id)
        await self._reply(
            connection_id, notifications_subscribed(wanted.as_dict(), unread, envelope=envelope)
        )
        await acknowledge(self._reply, connection_id, client_msg_id, outcome)

    async def read(
        self, actor: Actor, connection_id: str, notification_id: str, *, client_msg_id: str | None = None
    ) -> None:
        """Append `NotificationRead`; every connection of the user gets `notification_event` with
        `event_type: "notification_read"`. NOT_FOUND for an id the user has no notification under."""
        self._connections.of(actor, connection_id)
        authorize(actor, "notification_read")
        require_notification(await self.inbox(actor.user_id), notification_id)
        read = NotificationRead(actor.user_id, notification_id)
        outcome = await self._commit(read.new(Origin.of(self._node_id, actor, connection_id, client_msg_id)))
        await acknowledge(self._reply, connection_id, client_msg_id, outcome)

    # Without a socket.

    async def mark_read(self, actor: Actor, notification_id: str) -> Notification:
        """Append `NotificationRead` for the caller's notification; returns it as now read. NOT_FOUND
        for an id the caller has no notification under (another user's included). No connection sent
        it, so every connection of the user hears of it."""
        authorize(actor, "notification_read")
        found = require_notification(await self.inbox(actor.user_id), notification_id)
        outcome = await self._commit(
            NotificationRead(actor.user_id, notification_id).new(Origin.of(self._node_id, actor))
        )
        if found.read_at is None and isinstance(outcome, Committed):
            found = replace(found, read_at=outcome.recorded_at)  # the projection keeps the first read
        return found

    async def create(
        self, user_id: str, notification: Mapping[str, Any], *, created_by: str
    ) -> tuple[dict[str, Any], Committed]:
        """Append `NotificationCreated` to the user's stream; their subscribed connections whose
        filters all match get `notification_event` (`notification_created`). Returns the notification
        as recorded (the seed's object; `id` is generated when not given) and its commit."""
        record: dict[str, Any] = {name: notification.get(name) for name in FIELDS}
        record["id"] = str(record["id"]) if record["id"] is not None else f"notif_{uuid.uuid4().hex}"
        created = NotificationCreated(user_id, record)
        outcome = await self._commit(
            created.new(Origin(self._node_id), user_id=user_id, created_by=created_by)
        )
        if not isinstance(outcome, Committed):  # no idempotency key, no expected version: cannot happen
            raise RuntimeError(f"unexpected outcome appending a notification: {outcome}")
        return record, outcome

    async def inbox(self, user_id: str, *, upto: int | None = None) -> Inbox:
        """The user's inbox folded from their stream (up to version `upto`, when given)."""
        events = await read_through(self._read_stream, user_stream(user_id), upto=upto)
        return inbox_projection.project(events, user_id)

    # Publishing: synchronous, right after the commit.

    def _publish_subscribed(self, event: RecordedEvent, sender: str | None) -> None:
        """Nothing to send (the subscriber is replied to); the filters apply from this seq on."""
        if sender is not None:
            self._keep(sender, Filters.of(event.data.get("filters")))

    def _publish_created(self, event: RecordedEvent, sender: str | None) -> None:
        topic = user_stream(user_id_of(event.stream_id))
        notification = dict(event.data["notification"])
        message = notification_event(
            NOTIFICATION_CREATED_EVENT, notification, str(event.data["user_id"]), envelope=Envelope.of(event)
        )
        frames = encode([message])
        for connection_id in sorted(self._hub.members(topic)):
            filters = self.filters.get(connection_id)
            if filters is None or not matches(filters, notification):
                continue
            try:
                subscriber = self._hub.subscriber(connection_id)
            except KeyError:
                continue
            subscriber.offer(Entry(frames, topic, event.stream_version))

    def _publish_read(self, event: RecordedEvent, sender: str | None) -> None:
        user_id = str(event.data["user_id"])
        message = notification_event(
            NOTIFICATION_READ_EVENT,
            {"id": str(event.data["notification_id"])},
            user_id,
            envelope=Envelope.of(event),
        )
        self._hub.publish(user_stream(user_id), encode([message]), seq=event.stream_version)


__all__ = ["NotificationPage", "Notifications", "page"]
