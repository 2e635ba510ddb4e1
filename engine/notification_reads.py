"""A user's notifications read without a socket (`GET/POST /api/v1/notifications...`).

`mark_notification_read` appends the same `NotificationRead` as the WebSocket `notification_read`
(engine/notifications_service.py), so every connection of the user gets the same
`notification_event` (`event_type: "notification_read"`). `page` cuts an inbox into pages, newest
first: the cursor is a notification's place in creation order, which never changes (notifications are
only ever added), so a page boundary stays put while new notifications arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.decisions.rules import authorize, require_notification
from engine.model.actors import Actor
from engine.model.catalogue import NotificationRead
from engine.model.errors import ValidationFailed
from engine.model.events import Committed
from engine.notifications_service import NotificationHandlers
from engine.projections.notifications import Inbox, Notification


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


class NotificationReads(NotificationHandlers):
    """Connection-less notification reads for the `Engine` (engine/service.py mixes it in)."""

    async def mark_notification_read(self, actor: Actor, notification_id: str) -> Notification:
        """Append `NotificationRead` for the caller's notification; returns it as now read.
        NOT_FOUND for an id the caller has no notification under (another user's included)."""
        authorize(actor, "notification_read")
        found = require_notification(await self.inbox(actor.user_id), notification_id)
        # No connection: every connection of the user hears of it (Live.publish's sender is None).
        event = NotificationRead(actor.user_id, notification_id).new(self.origin(actor))
        outcome = await self.commit(event)
        if found.read_at is None and isinstance(outcome, Committed):
            found = replace(found, read_at=outcome.recorded_at)  # the projection keeps the first read
        return found


__all__ = ["NotificationPage", "NotificationReads", "page"]
