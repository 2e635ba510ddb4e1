"""The connections open on this node, and the one home of which rooms each is in.

A connection is in a room once its join has committed and its catch-up has gone live (`joined`): only
then may it act there (cursor, typing, cells, AI), and only then does it receive the room's events.
A join whose append was sent but whose outcome is unknown (the store timed out) leaves the room in
`joining`: the connection may not act there, but its departure still records a leave, because a leave
for a join that never committed is harmless and a missing leave is a ghost.

The hub's topics (engine/fanout/hub.py) say what is delivered to a socket; this says what the
connection may do and what its departure must record. Presence across nodes is the log's
(engine/projections/presence.py).

It also holds the node's caps: connections in all (MAX_CONNECTIONS, past which a client should try
another node), per user (MAX_CONNECTIONS_PER_USER: one user's tabs and scripts must not take the
node's memory and every room's fanout), and rooms per connection (MAX_ROOMS_PER_CONNECTION). They
count this node only: they protect the node, and a node's count needs no round trip.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.model.actors import Actor
from engine.model.errors import NodeFull, TooManyConnections, ValidationFailed


@dataclass(slots=True)
class Connection:
    connection_id: str
    actor: Actor
    rooms: set[str] = field(default_factory=set)  # joined: may act here, receives its events
    joining: set[str] = field(default_factory=set)  # join sent, outcome unknown

    @property
    def departures(self) -> list[str]:
        """The rooms whose leave its departure records, sorted."""
        return sorted(self.rooms | self.joining)

    def check_room_cap(self, room_id: str, cap: int) -> None:
        """Refuse joining one more room than `cap` (rejoining one it is in is always fine)."""
        if (
            room_id not in self.rooms
            and room_id not in self.joining
            and len(self.rooms | self.joining) >= cap
        ):
            raise ValidationFailed(
                f"a connection may be in at most {cap} rooms; leave one before joining another", limit=cap
            )

    def begin_join(self, room_id: str) -> bool:
        """Mark the room as being joined; True if the connection was in it or joining it already."""
        was_in = room_id in self.rooms or room_id in self.joining
        if room_id not in self.rooms:
            self.joining.add(room_id)
        return was_in

    def joined(self, room_id: str) -> None:
        self.joining.discard(room_id)
        self.rooms.add(room_id)

    def left(self, room_id: str) -> None:
        self.rooms.discard(room_id)
        self.joining.discard(room_id)


class Connections:
    """Connection id -> `Connection`, for this node only."""

    def __init__(self) -> None:
        self._by_id: dict[str, Connection] = {}
        self._per_user: Counter[str] = Counter()

    def admit(self, user_id: str, *, max_total: int, max_per_user: int) -> None:
        """Raise NodeFull or TooManyConnections if one more connection of `user_id` would pass a cap."""
        if len(self._by_id) >= max_total:
            raise NodeFull(f"this node serves its maximum of {max_total} connections; try again later")
        if self._per_user[user_id] >= max_per_user:
            raise TooManyConnections(
                f"user {user_id!r} has {max_per_user} connections open on this node, the most allowed; "
                "close another tab or connection first",
                limit=max_per_user,
            )

    def add(self, connection_id: str, actor: Actor) -> Connection:
        if connection_id in self._by_id:
            raise ValueError(f"{connection_id!r} is already open")
        connection = self._by_id[connection_id] = Connection(connection_id, actor)
        self._per_user[actor.user_id] += 1
        return connection

    def get(self, connection_id: str) -> Connection | None:
        return self._by_id.get(connection_id)

    def of(self, actor: Actor, connection_id: str) -> Connection:
        """The actor's open connection; ValueError for another user's or a closed one (a caller bug:
        the api hands each session its own id)."""
        connection = self._by_id.get(connection_id)
        if connection is None or connection.actor.user_id != actor.user_id:
            raise ValueError(f"{connection_id!r} is not an open connection of {actor.user_id!r}")
        return connection

    def pop(self, connection_id: str) -> Connection | None:
        connection = self._by_id.pop(connection_id, None)
        if connection is not None:
            user_id = connection.actor.user_id
            self._per_user[user_id] -= 1
            if self._per_user[user_id] <= 0:
                del self._per_user[user_id]
        return connection

    def count_of(self, user_id: str) -> int:
        return self._per_user[user_id]

    def has_user(self, user_id: str) -> bool:
        return self._per_user[user_id] > 0

    def rooms_active(self) -> set[str]:
        """Rooms with at least one connection on this node (joined or joining)."""
        return {room for c in self._by_id.values() for room in (c.rooms | c.joining)}

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._by_id


__all__ = ["Connection", "Connections"]
