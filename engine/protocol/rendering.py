"""What a committed event looks like on the wire: one `render` for live publishes and for replay.

Why one function: a client that resumes with `join_room since` must see each missed event exactly as
a member who was there saw it live (docs/protocol.md, `join_room since`). If live and replay built their
messages separately, the two would drift; here both call `render(event, view)` with the room view as
of that event, so they cannot.

`view` is the room as it stands right after `event` (with declared statuses laid over it), which is
what a `room_state` sent for a join or leave must show. Live publishes take it from the engine's
in-memory view (engine/fanout/live.py); a replay folds it from the log as it goes (`ReplayRenderer`).
Only events that reach other people are rendered; replies to the sender (`ack`, `room_left`) are not
events of their own and are sent by the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from engine.model.catalogue import (
    BROADCAST_EVENTS,
    CELL_UPDATED,
    CELLS_UPDATED,
    CURSOR_MOVED,
    MEMBERSHIP_EVENTS,
    TYPING_STARTED,
    TYPING_STOPPED,
    USER_JOINED_ROOM,
    USER_LEFT_ROOM,
    USER_MESSAGE_SENT,
    USER_STATUS_CHANGED,
)
from engine.model.events import RecordedEvent
from engine.projections.notifications import direct_message_id
from engine.projections.rooms import ONLINE, Member, RoomView, apply, cursors_from, with_statuses
from engine.protocol import (
    Envelope,
    broadcast,
    cell_updated,
    cursor_moved,
    replay_complete,
    room_state,
    user_joined,
    user_left,
    user_status_changed,
    user_typing_start,
    user_typing_stop,
)
from engine.protocol.outbound import cells_updated

Frames = tuple[str, ...]


def render(
    event: RecordedEvent,
    view: RoomView | None,
    *,
    with_state: bool = True,
    before: RoomView | None = None,
) -> list[dict[str, Any]]:
    """The messages `event` becomes for the members of its topic, in order; [] for none.

    `view` (the room after `event`) is needed for joins and leaves only, and `before` (the room just
    before it, when at hand) for joins. Presence is per user: a join is news (`room_state`, then
    `user_joined`) when it is the user's first connection in the room, or when it changed how the
    room shows them (`_changes_what_others_see`); a leave only when it was the last connection.
    Without a view (the engine's view fell behind the log, see engine/fanout/live.py) a join or
    leave is shown without its `room_state` rather than wrong, the joiner with the status its join
    recorded. A replay passes `with_state=False`: it shows joins and leaves as
    `user_joined`/`user_left` only and ends with the current `room_state` instead.
    """
    data = event.data
    envelope = Envelope.of(event)
    if event.type == USER_JOINED_ROOM:
        room_id, user_id = str(data["room_id"]), str(data["user_id"])
        member = view.members.get(user_id) if view is not None else None
        if member is not None and not _changes_what_others_see(member, str(data["connection_id"]), before):
            return []
        joiner: Any = member if member is not None else _joiner_entry(event)
        state = [room_state(view)] if view is not None and with_state else []
        return [*state, user_joined(room_id, joiner, envelope=envelope)]
    if event.type == USER_LEFT_ROOM:
        room_id, user_id = str(data["room_id"]), str(data["user_id"])
        if view is not None and user_id in view.members:
            return []  # the user is still in the room through another tab
        state = [room_state(view)] if view is not None and with_state else []
        return [*state, user_left(room_id, user_id, envelope=envelope)]
    if event.type == CELL_UPDATED:
        return [
            cell_updated(
                str(data["sheet_id"]),
                str(data["cell_id"]),
                value=data.get("value"),
                formula=data.get("formula"),
                user_id=str(data["user_id"]),
                username=str(data.get("username") or data["user_id"]),
                version=int(data["version"]),
                envelope=envelope,
            )
        ]
    if event.type == CELLS_UPDATED:
        user_id = str(data["user_id"])
        username = str(data.get("username") or user_id)
        return [
            cells_updated(
                str(data["sheet_id"]), data["cells"], user_id=user_id, username=username, envelope=envelope
            )
        ]
    if event.type == CURSOR_MOVED:
        return [
            cursor_moved(
                str(data["room_id"]),
                str(data["user_id"]),
                str(data["username"]),
                x=data["x"],
                y=data["y"],
                cell=data.get("cell"),
                envelope=envelope,
            )
        ]
    if event.type in (TYPING_STARTED, TYPING_STOPPED):
        build = user_typing_start if event.type == TYPING_STARTED else user_typing_stop
        args = (str(data["room_id"]), str(data["user_id"]), str(data["username"]), str(data["cell_id"]))
        return [build(*args, envelope=envelope)]
    if event.type == USER_STATUS_CHANGED:
        return [user_status_changed(str(data["user_id"]), str(data["status"]), envelope=envelope)]
    if event.type in BROADCAST_EVENTS:
        # An admin's message, as posted (its type was checked before the append), plus the envelope:
        # `room_id`/`seq`/`ts` of the room for a room broadcast, the user's own `seq`/`ts` for a notify.
        frame = broadcast(data["message"], envelope=envelope)
        if event.type == USER_MESSAGE_SENT:
            # Its id in the user's inbox, so a client can mark it read (`notification_read`) without
            # listing the inbox first; like the envelope, it wins over a same-named key of the post.
            frame["notification_id"] = direct_message_id(event)
        return [frame]
    return []


def encode(messages: list[dict[str, Any]]) -> Frames:
    """Text frames, encoded once and shared by every connection they go to."""
    return tuple(orjson.dumps(message).decode() for message in messages)


def _changes_what_others_see(member: Member, connection_id: str, before: RoomView | None) -> bool:
    """Whether a join of someone the room lists (`member`, as it is after the join) shows the others
    anything: it is the user's first connection in the room, or it changed their name or email (the
    room shows those of the newest join: a token refreshed with another `username`, a tab opened with
    a newer token). Another tab, or a connection joining again, is otherwise no news. Without
    `before` only a first connection can be told, by the connections the view lists."""
    if before is None:
        return member.connections == {connection_id}
    earlier = before.members.get(member.user_id)
    return earlier is None or (earlier.username, earlier.email) != (member.username, member.email)


def _recorded_status(event: RecordedEvent) -> str:
    """The status a join recorded: what the user had declared, as the node that took the join knew
    it; "online" for a join recorded before statuses were kept."""
    return str(event.data.get("status") or ONLINE)


def _recorded_by(event: RecordedEvent) -> Mapping[str, str]:
    """The status a membership event recorded, by user id: a join's; a leave records none."""
    if event.type != USER_JOINED_ROOM:
        return {}
    return {str(event.data["user_id"]): _recorded_status(event)}


def _joiner_entry(event: RecordedEvent) -> dict[str, Any]:
    """The joiner as a `room_state.users[]` entry when no view is at hand, with the status its join
    recorded."""
    data = event.data
    return {
        "user_id": data["user_id"],
        "username": data.get("username") or data["user_id"],
        "email": data.get("email"),
        "room": data["room_id"],
        "status": _recorded_status(event),
        "cursor": None,
        "last_seen": Envelope.of(event).fields().get("ts"),
    }


class ReplayRenderer:
    """`render` for a catch-up: folds the room from the view at `since` as the replay passes each
    event, so every replayed message is built from the same view it had live. A resume
    (`with_state=False`) shows membership changes without historical `room_state`s and ends with
    `completion`: the room as of the last replayed seq, then `replay_complete`.

    Statuses: a resume replays history, so each join shows the joiner with the status that join
    recorded, as its `user_joined` showed it live, not the one they have declared since (declarations
    are in the users' own streams, which a room's replay does not pass); `completion` shows the
    statuses as they are now. A catch-up after a plain join replays only what committed while it
    went live, rendered with the statuses of now, as live publishes are."""

    def __init__(
        self,
        view: RoomView,
        statuses: Callable[[RoomView], Mapping[str, str]],
        *,
        with_state: bool = True,
        current: Callable[[], RoomView | None] | None = None,
    ) -> None:
        self.view = view
        self._statuses = statuses
        self._with_state = with_state
        # The room's live view, for the members' cursors at `completion`: a replay passes only the
        # durable stream, and cursors are volatile.
        self._current = current or (lambda: None)

    def __call__(self, event: RecordedEvent) -> Frames | None:
        before, self.view = self.view, apply(self.view, event)
        shown = self.view  # only joins and leaves show members, and so their statuses
        if event.type in MEMBERSHIP_EVENTS:
            statuses = self._statuses(self.view) if self._with_state else _recorded_by(event)
            shown = with_statuses(self.view, statuses)
        frames = encode(render(event, shown, with_state=self._with_state, before=before))
        return frames or None

    def completion(self, seq: int) -> Frames:
        """What ends a resume at `seq`: the room's `room_state` as of it (its members' cursors as
        they are now), then `replay_complete`."""
        current = self._current()  # behind the replay when this node has not published it all yet
        view = self.view if current is None or current.seq < seq else cursors_from(self.view, current)
        shown = with_statuses(view, self._statuses(view))
        return encode([room_state(shown), replay_complete(self.view.room_id, seq)])
