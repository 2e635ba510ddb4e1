"""The messages admins sent a user (`POST /api/v1/ws/users/{user_id}/notify`), in the order received.

Folded from the user's own stream (`user:{user_id}`): each `UserMessageSent` is one message, kept with
its `seq` in that stream, its time and its sender, so "what had this user been told as of seq N" is a
replay like every other view. Delivery itself does not read this view (engine/features/admin.py
publishes each message as it commits); it is the read model behind the user's message history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from engine.model.catalogue import (
    AI_EVENTS,
    CELL_EVENTS,
    CLAIM_EVENTS,
    CURSOR_EVENTS,
    MEMBERSHIP_EVENTS,
    NOTIFICATION_EVENTS,
    ROOM_MESSAGE_BROADCAST,
    STATUS_EVENTS,
    TYPING_EVENTS,
    UPLOAD_EVENTS,
    USER_MESSAGE_SENT,
)
from engine.model.events import RecordedEvent
from engine.projections import folds

HANDLED = frozenset({USER_MESSAGE_SENT})
SKIPPED = (
    MEMBERSHIP_EVENTS
    | CELL_EVENTS
    | frozenset({ROOM_MESSAGE_BROADCAST})
    | CURSOR_EVENTS
    | TYPING_EVENTS
    | STATUS_EVENTS
    | NOTIFICATION_EVENTS
    | UPLOAD_EVENTS
    | AI_EVENTS
    | CLAIM_EVENTS
)


@dataclass(frozen=True, slots=True)
class DirectMessage:
    seq: int
    sender_id: str | None
    message: Mapping[str, Any]
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Mailbox:
    user_id: str
    messages: tuple[DirectMessage, ...] = ()

    @property
    def seq(self) -> int:
        """The user-stream seq of the newest message (0: none yet)."""
        return self.messages[-1].seq if self.messages else 0


def key_of(event: RecordedEvent) -> str | None:
    """The recipient whose mailbox `event` changes; None for events of other concerns."""
    return str(event.data["user_id"]) if folds("direct_messages", event.type, HANDLED, SKIPPED) else None


def apply(mailbox: Mailbox, event: RecordedEvent) -> Mailbox:
    """The mailbox after `event`; events of other concerns leave it as it was."""
    return apply_many(mailbox, (event,))


def apply_many(mailbox: Mailbox, events: Iterable[RecordedEvent]) -> Mailbox:
    """`apply` over `events` in order, building the message tuple once."""
    added: list[DirectMessage] = []
    for event in events:
        key = key_of(event)
        if key is None:
            continue
        if key != mailbox.user_id:
            raise ValueError(f"event of user {key!r} applied to the mailbox of {mailbox.user_id!r}")
        sender = event.data.get("sender_id")
        added.append(
            DirectMessage(
                seq=event.stream_version,
                sender_id=None if sender is None else str(sender),
                message=dict(event.data["message"]),
                received_at=event.recorded_at,
            )
        )
    return replace(mailbox, messages=mailbox.messages + tuple(added)) if added else mailbox


def project(events: Iterable[RecordedEvent], user_id: str) -> Mailbox:
    """The mailbox of `user_id` folded from their events among `events`."""
    return apply_many(Mailbox(user_id), (event for event in events if key_of(event) == user_id))


__all__ = ["HANDLED", "SKIPPED", "DirectMessage", "Mailbox", "apply", "apply_many", "key_of", "project"]
