"""Read models as pure folds over the log: `apply(view, event) -> view`, one module per projection.

Projections import neither asyncio nor sqlalchemy, take time from the event and never from the clock,
and raise `UnknownEvent` on an event type they do not know. That makes the same code usable for the
live path, for "state as of seq N" by replay (`project(events[:N], ...)`), and for rebuilding
persisted tables from zero.

The rule for event types
------------------------
Every projection knows the whole catalogue (`engine.model.events.CATALOGUE`): it folds the types of its
concern (`HANDLED`) and skips, by name, the families of event types that belong to other projections
(`SKIPPED`, built from the families in engine/model/events.py). A skipped event leaves the view as it was
(a room still counts it in its `seq` if it is one of the room's durable events). A type in neither
set raises `UnknownEvent`: an event nobody decided about would make a view silently wrong, so it
must fail loudly until the projection is taught. `tests/unit/test_projections.py` checks that each
projection's two sets partition the catalogue, so adding an event type fails the tests until every
projection has decided whether it folds or skips it.

Keys
----
Each projection keeps one view per key (a room, a sheet, a user, a file, an AI request) and offers
`key_of(event)`: the key whose view the event changes, or None when the projection skips the event.
`project(events, key)` folds the events of that key out of any sequence (a stream, several streams
merged by position, the whole log) and ignores the others; `apply(view, event)` refuses an event of
another key with ValueError, because calling it so is a routing bug, not input. Rooms differ in one
way: a room view folds exactly its own streams, and `project` refuses a foreign event, because the
room checks that its `seq` advances without a gap.

Cost
----
Views are frozen, so `apply` copies what it changes. Views that hold a growing mapping (rooms,
cells, notifications) fold a batch into one mutable draft and freeze it once (`apply_many`), which
keeps `project` linear in the number of events however large the view grows.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from engine.model.errors import UnknownEvent

K = TypeVar("K")
V = TypeVar("V")


def folds(projection: str, event_type: str, handled: frozenset[str], skipped: frozenset[str]) -> bool:
    """True if the projection folds `event_type`, False if it skips it; UnknownEvent otherwise."""
    if event_type in handled:
        return True
    if event_type in skipped:
        return False
    raise UnknownEvent(
        f"the {projection} projection does not know event type {event_type!r}", type=event_type
    )


def frozen(mapping: dict[K, V]) -> Mapping[K, V]:
    """A read-only view of `mapping`; the caller must not keep the dict to mutate it later."""
    return MappingProxyType(mapping)


def empty() -> Mapping[Any, Any]:
    """A fresh empty read-only mapping (a dataclass default factory)."""
    return MappingProxyType({})


def optional_str(value: Any) -> str | None:
    """An event field as text, keeping None: events recorded by older code may lack a field."""
    return None if value is None else str(value)


def optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
