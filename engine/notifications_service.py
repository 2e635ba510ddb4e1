"""Notifications over WebSocket: `subscribe_notifications`, `notification_read`, and
`Engine.create_notification` (the engine API the REST notify endpoints call).

All three append to the user's own stream (`user:{id}`). What a connection subscribed with is kept
here, in memory, per connection (`NotificationHandlers.notification_filters`): it is this node's
delivery state, not the user's. The log records each subscription too (`NotificationsSubscribed`),
so the inbox projection can answer what was asked, but delivery reads the map.

Delivery is per connection, at publish time: `NotificationCreated` is offered only to the user's
connections that subscribed and whose filters all match (engine/projections/notifications.py
`matches`), each through its own subscriber with the event's `seq` in the user's topic, exactly as
the hub would have queued it. `NotificationRead` reaches every connection of the user. Both are
registered as `Live.user_publishers`, so they run in the same synchronous step as the commit.

Subscribing has no gap: the filters start to apply when the `NotificationsSubscribed` is published
(synchronously with its commit at seq V), and `unread` is folded from the stream up to V. So every
notification is either in `unread` (seq <= V) or delivered live (seq > V), never both and never
neither; a live one may reach the socket before the `notifications_subscribed` reply.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from engine.core import EngineCore
from engine.decisions.rules import authorize, require_notification
from engine.fanout.send_queue import Entry
from engine.model.actors import Actor
from engine.model.catalogue import (
    NOTIFICATION_CREATED,
    NOTIFICATION_READ,
    NOTIFICATIONS_SUBSCRIBED,
    NotificationCreated,
    NotificationRead,
    NotificationsSubscribed,
)
from engine.model.events import Committed, Duplicate, Origin, RecordedEvent
from engine.model.streams import user_id_of, user_stream
from engine.projections import notifications as inbox_projection
from engine.projections.notifications import FIELDS, Filters, Inbox, matches
from engine.protocol import Envelope, ack, notification_event, notifications_subscribed
from engine.protocol.rendering import encode

_READ_PAGE = 1000
NOTIFICATION_CREATED_EVENT = "notification_created"
NOTIFICATION_READ_EVENT = "notification_read"


class NotificationHandlers(EngineCore):
    """The notification handlers of the `Engine` (engine/service.py mixes them in)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connection id -> the filters it last subscribed with (only subscribed connections).
        self.notification_filters: dict[str, Filters] = {}

    async def start(self) -> None:
        await super().start()
        self.live.user_publishers.update(
            {
                NOTIFICATIONS_SUBSCRIBED: self._publish_subscribed,
                NOTIFICATION_CREATED: self._publish_created,
                NOTIFICATION_READ: self._publish_read,
            }
        )

    async def disconnect(self, connection_id: str) -> None:
        self.notification_filters.pop(connection_id, None)
        await super().disconnect(connection_id)

    # Handlers.

    async def subscribe_notifications(
        self,
        actor: Actor,
        connection_id: str,
        filters: Mapping[str, list[str] | None],
        *,
        client_msg_id: str | None = None,
    ) -> None:
        """Append `NotificationsSubscribed`; the connection gets `notifications_subscribed` with its
        filters and the user's unread notifications that match them. Replaces earlier filters."""
        self._connection_of(actor, connection_id)
        authorize(actor, "subscribe_notifications")
        wanted = Filters.of(filters)
        subscribed = NotificationsSubscribed(actor.user_id, connection_id, wanted.as_dict())
        event = subscribed.new(self.origin(actor, connection_id, client_msg_id))
        outcome = await self.commit(event)
        if not isinstance(outcome, Committed | Duplicate):
            return
        self.notification_filters[connection_id] = wanted  # a Duplicate was not published
        inbox = await self.inbox(actor.user_id, upto=outcome.stream_version)
        unread = [n.as_dict() for n in inbox.unread(wanted)]
        envelope = Envelope(None, outcome.stream_version, outcome.recorded_at, client_msg_id)
        await self.reply(connection_id, notifications_subscribed(wanted.as_dict(), unread, envelope=envelope))
        if client_msg_id is not None:
            await self.reply(connection_id, ack(client_msg_id, seq=outcome.stream_version))

    async def read_notification(
        self, actor: Actor, connection_id: str, notification_id: str, *, client_msg_id: str | None = None
    ) -> None:
        """Append `NotificationRead`; every connection of the user gets `notification_event` with
        `event_type: "notification_read"`. NOT_FOUND for an id the user has no notification under."""
        self._connection_of(actor, connection_id)
        authorize(actor, "notification_read")
        require_notification(await self.inbox(actor.user_id), notification_id)
        event = NotificationRead(actor.user_id, notification_id).new(
            self.origin(actor, connection_id, client_msg_id)
        )
        outcome = await self.commit(event)
        if client_msg_id is not None and isinstance(outcome, Committed | Duplicate):
            await self.reply(connection_id, ack(client_msg_id, seq=outcome.stream_version))

    async def create_notification(
        self, user_id: str, notification: Mapping[str, Any], *, created_by: str
    ) -> dict[str, Any]:
        """Append `NotificationCreated` to the user's stream; their subscribed connections whose
        filters all match get `notification_event` (`notification_created`). Returns the notification
        as recorded (the seed's object; `id` is generated when not given)."""
        record, _ = await self.record_notification(user_id, notification, created_by=created_by)
        return record

    async def record_notification(
        self, user_id: str, notification: Mapping[str, Any], *, created_by: str
    ) -> tuple[dict[str, Any], Committed]:
        """`create_notification`, also returning its commit: the `seq` in the user's stream (REST)."""
        record: dict[str, Any] = {name: notification.get(name) for name in FIELDS}
        record["id"] = str(record["id"]) if record["id"] is not None else f"notif_{uuid.uuid4().hex}"
        event = NotificationCreated(user_id, record).new(
            Origin(self.node_id), user_id=user_id, created_by=created_by
        )
        outcome = await self.commit(event)
        if not isinstance(outcome, Committed):  # no idempotency key, no expected version: cannot happen
            raise RuntimeError(f"unexpected outcome appending a notification: {outcome}")
        return record, outcome

    # Reading.

    async def inbox(self, user_id: str, *, upto: int | None = None) -> Inbox:
        """The user's inbox folded from their stream (up to version `upto`, when given)."""
        events: list[RecordedEvent] = []
        while True:
            after = events[-1].stream_version if events else 0
            page = await self.read_stream(user_stream(user_id), after_version=after, limit=_READ_PAGE)
            events.extend(page)
            if len(page) < _READ_PAGE or (upto is not None and after + len(page) >= upto):
                break
        if upto is not None:
            events = [e for e in events if e.stream_version <= upto]
        return inbox_projection.project(events, user_id)

    # Publishing (Live.user_publishers; synchronous, right after the commit).

    def _publish_subscribed(self, event: RecordedEvent, sender: str | None) -> None:
        """Nothing to send (the engine replies); the filters apply from this seq on."""
        if sender is not None and sender in self._connections:
            self.notification_filters[sender] = Filters.of(event.data.get("filters"))

    def _publish_created(self, event: RecordedEvent, sender: str | None) -> None:
        topic = user_stream(user_id_of(event.stream_id))
        notification = dict(event.data["notification"])
        frames = encode(
            [
                notification_event(
                    NOTIFICATION_CREATED_EVENT,
                    notification,
                    str(event.data["user_id"]),
                    envelope=Envelope.of(event),
                )
            ]
        )
        for connection_id in sorted(self.hub.members(topic)):
            filters = self.notification_filters.get(connection_id)
            if filters is None or not matches(filters, notification):
                continue
            try:
                subscriber = self.hub.subscriber(connection_id)
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
        self.hub.publish(user_stream(user_id), encode([message]), seq=event.stream_version)


__all__ = ["NotificationHandlers"]
