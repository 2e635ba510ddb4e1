"""The status each user last declared (`status_update`: online, away, busy), and when.

Folded from the user's own stream only (`UserStatusChanged`), so its table is written from one stream
per row, as a log split by stream needs (docs/scaling.md). What else presence says about a user
(online, connections, cursor, last seen) lives per room in `room_members`; the `presence` view of the
database lays the two together, and the node's live presence folds them from events
(engine/projections/presence.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from engine.model.catalogue import CATALOGUE, STATUS_EVENTS
from engine.model.events import RecordedEvent
from engine.projections import folds

HANDLED = STATUS_EVENTS
SKIPPED = CATALOGUE - HANDLED


@dataclass(frozen=True, slots=True)
class DeclaredStatus:
    user_id: str
    status: str
    declared_at: datetime


def key_of(event: RecordedEvent) -> str | None:
    """The user whose declared status `event` sets; None for events of other concerns."""
    return str(event.data["user_id"]) if folds("declared_statuses", event.type, HANDLED, SKIPPED) else None


def apply(view: DeclaredStatus | None, event: RecordedEvent) -> DeclaredStatus | None:
    """The declared status after `event`: the newest declaration wins; other events change nothing."""
    key = key_of(event)
    if key is None:
        return view
    if view is not None and key != view.user_id:
        raise ValueError(f"event of user {key!r} applied to the status of {view.user_id!r}")
    return DeclaredStatus(key, str(event.data["status"]), event.recorded_at)


def project(events: Iterable[RecordedEvent], user_id: str) -> DeclaredStatus | None:
    """`user_id`'s declared status as of `events` (in position order); None if they never declared one."""
    view: DeclaredStatus | None = None
    for event in events:
        if key_of(event) == user_id:
            view = apply(view, event)
    return view


__all__ = ["HANDLED", "SKIPPED", "DeclaredStatus", "apply", "key_of", "project"]
