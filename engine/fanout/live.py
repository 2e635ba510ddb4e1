"""The node's live state: the hub, the rooms' current views and the users' presence, kept in step with
what this node commits, and the one place that publishes committed events.

Why in memory and why synchronous: a publish must follow its commit with no await in between
(engine/fanout/hub.py), or two events of one room could be published out of seq order and the later one
would make the earlier one a "duplicate" to every queue. A join's or leave's `room_state` needs the
room as of that event, so the view it is built from must be at hand without reading the log: each
commit this node makes is folded into the cached view in the same step as its publish. The appender
resolves its callers in commit order, and each caller awaits its own append directly, so the views
advance one seq at a time.

A view is loaded from the log (an await) before the first append to its room, never in between, and
dropped once nobody is in the room and no message loaded it for a while (`evict_idle`). If a
commit finds the view behind (another process appended to the room), the view is dropped and reloaded
on the next message; meanwhile that event's `room_state` is left out rather than shown wrong
(engine/protocol/rendering.py). Every node publishes every committed event in log order, its own and
other nodes' alike (engine/fanout/delivery_order.py), so this is a safety net, not a usual path.

Presence (declared status, which connections are in which rooms) is folded from the same commits:
`room_state.users[].status` shows the users' declared statuses, also of users on other nodes: their
joins carry them, and a join here reads those of members it does not know.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from engine.fanout.hub import Hub
from engine.model.catalogue import (
    CURSOR_MOVED,
    MEMBERSHIP_EVENTS,
    TYPING_STARTED,
    TYPING_STOPPED,
    USER_JOINED_ROOM,
    USER_LEFT_ROOM,
    USER_STATUS_CHANGED,
)
from engine.model.events import Committed, NewEvent, RecordedEvent
from engine.model.streams import durable_stream, is_volatile_stream, room_id_of, room_stream, user_stream
from engine.projections import frozen, presence, typing_indicators
from engine.projections.rooms import RoomView, apply, with_statuses
from engine.projections.typing_indicators import TypingView
from engine.protocol import user_typing_stop
from engine.protocol.rendering import encode, render

log = logging.getLogger(__name__)

LoadRoom = Callable[[str], Awaitable[RoomView]]
_FOLDED = MEMBERSHIP_EVENTS | {USER_STATUS_CHANGED}
UserPublisher = Callable[[RecordedEvent, str | None], None]  # (event, sender connection id)
# A typist is forgotten this long after their typing should have expired (`evict_idle`): its stop
# or leave went through this node's view by then, unless it never will.
TYPING_KEPT_PAST_TIMEOUT = timedelta(minutes=1)


def recorded(event: NewEvent, committed: Committed) -> RecordedEvent:
    """The event as the log now holds it, built from the commit's answer instead of a read."""
    return RecordedEvent(
        position=committed.position,
        stream_id=event.stream_id,
        stream_version=committed.stream_version,
        type=event.type,
        data=committed.data if committed.data is not None else event.data,  # e.g. a cell's new version
        metadata=event.metadata,
        recorded_at=committed.recorded_at,
        user_id=event.user_id,
        idempotency_key=event.idempotency_key,
        partition=committed.partition,
    )


class Live:
    def __init__(self, hub: Hub, *, typing_timeout: float = 5.0) -> None:
        self.hub = hub
        self._typing_timeout = timedelta(seconds=typing_timeout)
        self._rooms: dict[str, RoomView] = {}
        self._presence: dict[str, presence.Presence] = {}
        # Who types where, in the rooms where somebody does: an expiry that lost the race with a
        # refreshed start is not sent (`_fold_typing`).
        self._typing: dict[str, TypingView] = {}
        # The sweep (`evict_idle`) each room's view was last loaded in: a message about to append to
        # the room keeps its view from being dropped under it.
        self._loaded: dict[str, int] = {}
        self._sweeps = 0
        # Publishers of user-stream event types other than status, by type, from the feature
        # components that own them (`route_user_events`). Each is called from `publish`, as
        # synchronously as the rest of it, with the event and its sender's connection id, and offers
        # the messages itself: so it may deliver to some of the user's connections only (filters).
        self._user_publishers: Mapping[str, UserPublisher] = {}

    def route_user_events(self, publishers: Mapping[str, UserPublisher]) -> None:
        """Set who publishes each user-stream event type, once: the table is built in one place
        (engine/service.py) from the components' `publishers()`."""
        if self._user_publishers:
            raise RuntimeError("user-event publishers are already routed")
        self._user_publishers = MappingProxyType(dict(publishers))

    # Reading.

    async def load(self, room_id: str, read: LoadRoom) -> RoomView:
        """The room's current view, read from the log unless it is cached; call before appending."""
        self._loaded[room_id] = self._sweeps
        cached = self._rooms.get(room_id)
        if cached is not None:
            return cached
        loaded = await read(room_id)
        self._loaded[room_id] = self._sweeps  # the read may have spanned a sweep
        # A commit of this node may have been folded while the read was in flight: keep the newer.
        cached = self._rooms.get(room_id)
        if cached is None or loaded.seq > cached.seq:
            self._rooms[room_id] = cached = loaded
        return cached

    def view(self, room_id: str, *, shown: bool = True) -> RoomView | None:
        """The cached view, with declared statuses laid over it when `shown`; None if not loaded."""
        view = self._rooms.get(room_id)
        if view is None or not shown:
            return view
        return with_statuses(view, self.statuses(view))

    def statuses(self, view: RoomView) -> Mapping[str, str]:
        """Declared statuses of the view's members known on this node (others stay "online"): its
        members are in the room, so what they declared is what others see."""
        return {uid: self._presence[uid].status for uid in view.members if uid in self._presence}

    def unknown_statuses(self, user_ids: Iterable[str]) -> list[str]:
        """Which of these users this node knows no declared status of (`restore_statuses` them)."""
        return [uid for uid in user_ids if uid not in self._presence]

    def restore_statuses(self, statuses: Mapping[str, str]) -> None:
        """Declared statuses read from the log, for users whose events this node has not seen (they
        declared them before it started, or on another node); a status folded since wins."""
        for user_id, status in statuses.items():
            if user_id not in self._presence:
                self._presence[user_id] = presence.Presence(user_id, status=status)

    def declared_status(self, user_id: str) -> str | None:
        """The user's declared status if this node knows it (`restore_statuses` otherwise)."""
        known = self._presence.get(user_id)
        return None if known is None else known.status

    def rooms_of(self, user_id: str) -> frozenset[str]:
        """The rooms the user's connections are in, as far as this node folded their joins."""
        known = self._presence.get(user_id)
        return known.rooms if known is not None else frozenset()

    # Committing.

    def publish(self, event: RecordedEvent) -> None:
        """Fold a just-committed event into the live state and offer its messages. Synchronous: the
        caller runs it right after its append returned, with no await in between."""
        self._fold_presence(event)
        sender = event.metadata.get("connection_id")
        sender = sender if isinstance(sender, str) else None
        if event.type == USER_STATUS_CHANGED:
            self._publish_status(event, sender)
            return
        user_publisher = self._user_publishers.get(event.type)
        if user_publisher is not None:
            user_publisher(event, sender)
            return
        room_id = room_id_of(durable_stream(event.stream_id))
        # What a leave's typing stop and a join's rendering compare with; no other event needs it.
        typing_before = self._typing.get(room_id) if event.type == USER_LEFT_ROOM else None
        if event.type in typing_indicators.HANDLED and not self._fold_typing(room_id, event):
            return
        topic = room_stream(room_id)
        before = self._rooms.get(room_id) if event.type == USER_JOINED_ROOM else None
        view = self._fold_room(room_id, event)
        if view is not None and event.type in MEMBERSHIP_EVENTS:
            # Only joins and leaves show members (their `room_state`); laying statuses over every
            # member for each cell update cost more than rendering it.
            view = with_statuses(view, self.statuses(view))
        frames = encode(render(event, view, before=before))
        if is_volatile_stream(event.stream_id):
            coalesce = str(event.data["user_id"]) if event.type == CURSOR_MOVED else None
            # Typing never goes back to the typing connection, also when the server ends it.
            exclude = sender if sender is not None else event.data.get("connection_id")
            self.hub.publish(topic, frames, volatile=True, exclude=exclude, coalesce=coalesce)
            return
        if event.type == USER_LEFT_ROOM and sender is not None:
            # The leaver hears `room_left` from the engine instead; what is already queued still goes.
            self.hub.leave(sender, topic)
        self.hub.publish(topic, frames, seq=event.stream_version)
        if event.type == USER_LEFT_ROOM and typing_before is not None:
            self._publish_typing_ended(event, typing_before, view)

    def _publish_typing_ended(self, left: RecordedEvent, before: TypingView, view: RoomView | None) -> None:
        """`user_typing_stop` for the typing a leave ended, when the user stays in the room through
        another connection: nobody hears `user_left` then, and no expiry follows (the leave ended the
        typing, engine/projections/typing_indicators.py), so without it their indicator would stay on
        the others' screens. Without a view the leave was sent as `user_left`, which ends it anyway."""
        user_id = str(left.data["user_id"])
        if view is None or user_id not in view.members:
            return
        after = self._typing.get(view.room_id)
        ended = [t for key, t in before.typing.items() if after is None or key not in after.typing]
        if ended:
            frames = encode([user_typing_stop(view.room_id, t.user_id, t.username, t.cell_id) for t in ended])
            exclude = left.data.get("connection_id")
            self.hub.publish(
                room_stream(view.room_id),
                frames,
                volatile=True,
                exclude=exclude if isinstance(exclude, str) else None,
            )

    def forget_user(self, user_id: str) -> None:
        """Drop the user's presence once nothing of theirs is left on this node (bounded memory), unless
        a room view here still lists them: they are in it through another node (whose join this node
        may never have folded), and the `room_state` it renders must keep showing what they declared."""
        known = self._presence.get(user_id)
        if known is not None and not known.online and not self._rooms_listing(user_id):
            del self._presence[user_id]

    def evict_idle(self, now: datetime | None = None) -> None:
        """Drop what this node no longer shows anybody, so that a long-running node's memory follows
        the rooms in use and not every room and user it ever saw: the views of rooms nobody is in
        (here or elsewhere) and no message loaded since the sweep before this one (a message loads
        the view before its append, and the view must still be there when it publishes), then the
        presence of users with no connection here whom no remaining view lists, and typists a minute
        past their timeout (a start whose stop or leave never reached this node: a stop that comes
        after all is then sent, as for any start this node did not see). What is needed again is
        read again: a view by `load`, a declared status by `restore_statuses`. A room
        with members elsewhere keeps its view: their events keep it current anyway, and reading it
        again would cost a read of its whole stream and of its members' cursors."""
        self._sweeps += 1
        for room_id, loaded in list(self._loaded.items()):  # every view was stamped by its load
            if self._sweeps - loaded < 2:
                continue
            view = self._rooms.get(room_id)  # None: its read failed, or it fell behind
            if view is None or not (view.members or self.hub.members(room_stream(room_id))):
                self._rooms.pop(room_id, None)
                del self._loaded[room_id]
        # Typing long past its timeout: its end went elsewhere (or never came).
        limit = (datetime.now(UTC) if now is None else now) - self._typing_timeout - TYPING_KEPT_PAST_TIMEOUT
        for room_id, typists in list(self._typing.items()):
            if any(typist.started_at < limit for typist in typists.typing.values()):
                kept = {k: t for k, t in typists.typing.items() if t.started_at >= limit}
                self._store_typing(TypingView(room_id, frozen(kept)))
        listed: set[str] = set().union(*(view.members for view in self._rooms.values()))
        for user_id in [uid for uid in self._presence if uid not in listed]:
            if not self.hub.members(user_stream(user_id)):
                del self._presence[user_id]

    @property
    def cached(self) -> tuple[int, int, int]:
        """How many room views, users and rooms with typing this node keeps."""
        return len(self._rooms), len(self._presence), len(self._typing)

    def _rooms_listing(self, user_id: str) -> set[str]:
        """The rooms whose cached views list the user as a member (rare enough to scan for)."""
        return {room_id for room_id, view in self._rooms.items() if user_id in view.members}

    def _publish_status(self, event: RecordedEvent, sender: str | None) -> None:
        """To the user's other connections and to the members of every room the user is in, each
        connection once, never back to the one that set it. The rooms are those of the joins this node
        folded and those whose views here list the user: a join made before this node started is in
        the view it loaded, not in its presence."""
        user_id = str(event.data["user_id"])
        frames = encode(render(event, None))
        rooms = [
            room_stream(room_id) for room_id in sorted(self.rooms_of(user_id) | self._rooms_listing(user_id))
        ]
        self.hub.publish_once(user_stream(user_id), rooms, frames, seq=event.stream_version, exclude=sender)

    def _fold_room(self, room_id: str, event: RecordedEvent) -> RoomView | None:
        view = self._rooms.get(room_id)
        if view is None:
            return None
        durable = not is_volatile_stream(event.stream_id)
        if durable and event.stream_version != view.seq + 1:
            if event.stream_version > view.seq + 1:
                log.warning(
                    "room %r: view at seq %d, committed %d; reloading",
                    room_id,
                    view.seq,
                    event.stream_version,
                )
                del self._rooms[room_id]
            return None
        view = self._rooms[room_id] = apply(view, event)
        return view

    def _fold_typing(self, room_id: str, event: RecordedEvent) -> bool:
        """Fold a typing event or a leave; False for an expiry of typing refreshed since, which the
        members must not hear as a stop: the typing goes on (its own expiry will end it). Only rooms
        where somebody types are kept; an expiry whose start this node never folded is sent."""
        view = self._typing.get(room_id)
        if view is None and event.type != TYPING_STARTED:
            return True
        view = view or TypingView(room_id)
        if event.type == TYPING_STOPPED and not typing_indicators.ends_current(view, event):
            return False
        self._store_typing(typing_indicators.apply(view, event))
        return True

    def _store_typing(self, view: TypingView) -> None:
        if view.typing:
            self._typing[view.room_id] = view
        else:
            self._typing.pop(view.room_id, None)

    def _fold_presence(self, event: RecordedEvent) -> None:
        """Only what this presence is read for: declared statuses, and the rooms of a user's
        connections. An edit or a cursor changes neither, and folded for a user not known here would
        make them look known, as "online", so that a join would not read their declared status.

        A user is kept once gone: this node may not have folded every connection of theirs (those
        that joined before it started), and what it knows of their status is what it shows while
        they are still in a room through one of those."""
        if event.type not in _FOLDED:
            return
        user_id = str(event.data["user_id"])
        current = self._presence.get(user_id)
        if current is None and event.type == USER_LEFT_ROOM:
            return  # nothing known of them to change; folded, they would look known, as "online"
        if current is None:  # a join through another node carries what that node knew was declared
            declared = event.data.get("status") if event.type == USER_JOINED_ROOM else None
            current = presence.Presence(user_id, status=str(declared or presence.ONLINE))
        self._presence[user_id] = presence.apply(current, event)
