"""A user's notifications with their read state, and the filters each connection subscribed with.

Folded from the user's own stream (`user:{user_id}`). Whatever was addressed to the user is here, so
nothing sent while they were offline is lost: notifications, and the direct messages an admin sent
(`UserMessageSent`, category "direct_message" unless the message names one), each unread until read.
Delivery follows `matches`: a notification reaches a subscription only when every filter it gives
matches; the unread ones are what `notifications_subscribed` hands a connection when it subscribes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from engine.model.catalogue import (
    AI_EVENTS,
    CELL_EVENTS,
    CLAIM_EVENTS,
    CURSOR_EVENTS,
    MEMBERSHIP_EVENTS,
    NOTIFICATION_CREATED,
    NOTIFICATION_EVENTS,
    NOTIFICATION_READ,
    ROOM_MESSAGE_BROADCAST,
    STATUS_EVENTS,
    TYPING_EVENTS,
    UPLOAD_EVENTS,
    USER_MESSAGE_SENT,
)
from engine.model.events import RecordedEvent
from engine.projections import empty, folds, frozen

HANDLED = NOTIFICATION_EVENTS | {USER_MESSAGE_SENT}
SKIPPED = (
    MEMBERSHIP_EVENTS
    | CELL_EVENTS
    | CURSOR_EVENTS
    | TYPING_EVENTS
    | {ROOM_MESSAGE_BROADCAST}
    | STATUS_EVENTS
    | UPLOAD_EVENTS
    | AI_EVENTS
    | CLAIM_EVENTS
)

# The seed's notification object, in its order.
FIELDS = ("id", "title", "message", "category", "priority", "module_name")
DIRECT_MESSAGE = "direct_message"  # the category of a direct message that names none


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    title: str | None
    message: str | None
    category: str | None
    priority: str | None
    module_name: str | None
    created_at: datetime
    read_at: datetime | None = None

    @property
    def read(self) -> bool:
        return self.read_at is not None

    def as_dict(self) -> dict[str, Any]:
        """The seed's `notification` object."""
        return {name: getattr(self, name) for name in FIELDS}


@dataclass(frozen=True, slots=True)
class Filters:
    """What a subscription asked for. None or an empty tuple: no filter on that dimension."""

    categories: tuple[str, ...] | None = None
    modules: tuple[str, ...] | None = None
    priorities: tuple[str, ...] | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Filters:
        """From the `filters` of a NotificationsSubscribed (or a subscribe message)."""
        data = data or {}
        return cls(*(_tags(data.get(name)) for name in ("categories", "modules", "priorities")))

    def as_dict(self) -> dict[str, list[str] | None]:
        return {
            name: None if tags is None else list(tags)
            for name, tags in (
                ("categories", self.categories),
                ("modules", self.modules),
                ("priorities", self.priorities),
            )
        }


def _tags(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(tag) for tag in value)


def matches(filters: Filters | None, notification: Notification | Mapping[str, Any]) -> bool:
    """Whether a subscription with `filters` receives `notification` (a view or the seed's object).

    Every filter given must match: categories the `category`, modules the `module_name`, priorities
    the `priority`. An absent or empty filter matches everything; a notification without the field
    does not match a filter that is given.
    """
    if filters is None:
        return True
    for tags, name in (
        (filters.categories, "category"),
        (filters.modules, "module_name"),
        (filters.priorities, "priority"),
    ):
        value = notification.get(name) if isinstance(notification, Mapping) else getattr(notification, name)
        if tags and value not in tags:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Inbox:
    user_id: str
    # Id -> notification, in order of creation.
    notifications: Mapping[str, Notification] = field(default_factory=empty)
    # Connection id -> the filters it last subscribed with.
    subscriptions: Mapping[str, Filters] = field(default_factory=empty)

    def unread(self, filters: Filters | None = None) -> tuple[Notification, ...]:
        """Unread notifications, oldest first; only those `filters` would deliver, when given."""
        return tuple(n for n in self.notifications.values() if not n.read and matches(filters, n))


def key_of(event: RecordedEvent) -> str | None:
    """The user whose inbox `event` changes; None for events of other concerns."""
    return str(event.data["user_id"]) if folds("notifications", event.type, HANDLED, SKIPPED) else None


def apply(inbox: Inbox, event: RecordedEvent) -> Inbox:
    """The inbox after `event`; events of other concerns leave it as it was."""
    return apply_many(inbox, (event,))


def apply_many(inbox: Inbox, events: Iterable[RecordedEvent]) -> Inbox:
    """`apply` over `events` in order, copying the notifications once rather than once per event."""
    notifications = dict(inbox.notifications)
    subscriptions = dict(inbox.subscriptions)
    for event in events:
        key = key_of(event)
        if key is None:
            continue
        if key != inbox.user_id:
            raise ValueError(f"event of user {key!r} applied to the inbox of {inbox.user_id!r}")
        data = event.data
        if event.type == NOTIFICATION_CREATED:
            created = _notification(data["notification"], event.recorded_at)
            notifications.setdefault(created.id, created)  # an id is created once; a repeat changes nothing
        elif event.type == USER_MESSAGE_SENT:
            sent = _direct_message(event)
            notifications.setdefault(sent.id, sent)
        elif event.type == NOTIFICATION_READ:
            # Reading twice keeps the first time; reading an unknown id (refused by decide) is a no-op.
            current = notifications.get(str(data["notification_id"]))
            if current is not None and current.read_at is None:
                notifications[current.id] = replace(current, read_at=event.recorded_at)
        else:  # NOTIFICATIONS_SUBSCRIBED
            subscriptions[str(data.get("connection_id") or "")] = Filters.of(data.get("filters"))
    return replace(inbox, notifications=frozen(notifications), subscriptions=frozen(subscriptions))


def project(events: Iterable[RecordedEvent], user_id: str) -> Inbox:
    """The inbox of `user_id` folded from their events among `events`."""
    return apply_many(Inbox(user_id), (event for event in events if key_of(event) == user_id))


def direct_message_id(event: RecordedEvent) -> str:
    """A direct message's id as a notification: the one it was sent with (rows written before messages
    carried one are named by their place in the user's stream)."""
    return str(event.data.get("message_id") or f"message-{event.stream_version}")


def _direct_message(event: RecordedEvent) -> Notification:
    posted: Mapping[str, Any] = event.data.get("message") or {}
    fields = {
        "id": direct_message_id(event),
        "title": posted.get("title") or posted.get("type"),
        "message": posted.get("message") if isinstance(posted.get("message"), str) else None,
        "category": posted.get("category") or DIRECT_MESSAGE,
        "priority": posted.get("priority"),
        "module_name": posted.get("module_name"),
    }
    return _notification(fields, event.recorded_at)


def _notification(data: Mapping[str, Any], at: datetime) -> Notification:
    def text(name: str) -> str | None:
        value = data.get(name)
        return None if value is None else str(value)

    return Notification(
        id=str(data["id"]),
        title=text("title"),
        message=text("message"),
        category=text("category"),
        priority=text("priority"),
        module_name=text("module_name"),
        created_at=at,
    )


__all__ = [
    "DIRECT_MESSAGE",
    "FIELDS",
    "HANDLED",
    "SKIPPED",
    "Filters",
    "Inbox",
    "Notification",
    "apply",
    "apply_many",
    "key_of",
    "matches",
    "project",
]
