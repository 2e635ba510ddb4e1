"""What goes into the log and what comes back out of it.

A `NewEvent` is what a caller asks to append; a `RecordedEvent` is what the log holds. Two counters are
never mixed: `stream_version` is contiguous per stream (the `seq` clients see), `position` is gapless
across the whole of the stream's log partition.
The types and their fields are the catalogue's (engine/model/catalogue.py), which builds every
`NewEvent`; its `metadata` says who caused it (`Origin`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from engine.model.actors import Actor
from engine.model.errors import Rejected


@dataclass(frozen=True, slots=True)
class NewEvent:
    stream_id: str
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    # None: append whatever the stream's version is. An int: the stream must be exactly at that
    # version (0 = the stream must not exist yet), otherwise the item gets a Conflict.
    expected_version: int | None = None
    # With user_id: an item whose (user_id, idempotency_key) was already appended to the same stream
    # (its volatile twin counting as the stream) is not appended
    # again; it gets a Duplicate carrying the original position and version.
    idempotency_key: str | None = None
    user_id: str | None = None
    # The cells the event writes, decided by the writer against the cells as of the head the batch
    # commits on, so that two processes can never both accept updates on the same base version. All or
    # nothing: the writer sets each cell's version in `data`, or the outcome is Refused.
    cells: tuple[CellWrite, ...] = ()


@dataclass(frozen=True, slots=True)
class CellWrite:
    sheet_id: str
    cell_id: str
    room_id: str
    requested_version: int | None  # the client's base version; None: it sent none
    value: Any = None
    formula: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    position: int
    stream_id: str
    stream_version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    user_id: str | None = None
    idempotency_key: str | None = None
    partition: int = 0  # the log partition `position` counts in (engine/log/partitions.py)


@dataclass(frozen=True, slots=True)
class Committed:
    position: int
    stream_version: int
    recorded_at: datetime
    # The data as written, when the writer completed it (a cell write's version); else None.
    data: dict[str, Any] | None = None
    partition: int = 0  # the log partition `position` counts in
    outcome: Literal["committed"] = "committed"


@dataclass(frozen=True, slots=True)
class Duplicate:
    position: int
    stream_version: int
    recorded_at: datetime
    partition: int = 0  # the log partition `position` counts in
    outcome: Literal["duplicate"] = "duplicate"


@dataclass(frozen=True, slots=True)
class Conflict:
    expected_version: int
    actual_version: int
    outcome: Literal["conflict"] = "conflict"


@dataclass(frozen=True, slots=True)
class Refused:
    """A decision made inside the append refused the item (e.g. VersionConflict); nothing written."""

    error: Rejected
    outcome: Literal["refused"] = "refused"


AppendOutcome = Committed | Duplicate | Conflict | Refused


@dataclass(frozen=True, slots=True)
class Origin:
    """Who caused an event and through what: its `metadata`. A message's origin names the user, the
    connection and the node; a REST call has no connection (`via="rest"`), so every connection of the
    user hears of it. `client_msg_id` is echoed in every message fanned out from the event."""

    node: str | None = None
    user_id: str | None = None
    connection_id: str | None = None
    client_msg_id: str | None = None
    via: str | None = None

    @classmethod
    def of(
        cls, node: str, actor: Actor, connection_id: str | None = None, client_msg_id: str | None = None
    ) -> Origin:
        """An actor's event through this node: a connection's message, or a REST call (no connection)."""
        return cls(
            node, actor.user_id, connection_id, client_msg_id, "rest" if connection_id is None else None
        )

    def metadata(self, **extra: Any) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.user_id is not None:
            found["user_id"] = self.user_id
        if self.connection_id is not None:
            found["connection_id"] = self.connection_id
        if self.node is not None:
            found["node"] = self.node
        if self.client_msg_id is not None:
            found["client_msg_id"] = self.client_msg_id
        if self.via is not None:
            found["via"] = self.via
        return {**found, **extra}


def connection_key(client_msg_id: str | None, connection_id: str) -> str | None:
    """The idempotency key of a message whose effect belongs to the connection that sent it (a join
    makes it a member, a subscription sets its filters): the client's id scoped to that connection. A
    repeat on that connection is a Duplicate; the same id from another connection (the first one
    dropped before its answer) is that connection's own message, keyed by it in turn. Connection ids
    are random (engine/node.py), so no other connection's message shares the key."""
    return None if client_msg_id is None else f"{client_msg_id}@{connection_id}"
