"""Joining a topic without a gap or a duplicate: subscribe first, then read the log, then drop what
was already delivered (centrifuge's subscribe-then-recover; docs/protocol.md, `join_room since`).

    async with hub.catch_up(connection_id, "room:R") as catch_up:
        view = ...                                   # append the join, project the room
        await catch_up.send(room_state(view))        # reaches the client before any room event
        await catch_up.replay(store.read_stream, render, since=since if since is not None else view.seq,
                              complete=(lambda seq: replay_complete("R", seq)) if since is not None else None)

Why it is exact. Entering joins the topic and *holds* its live messages (they are buffered, not
queued). Every event is published only after it is committed. So an event the replay's last read did
not see was committed after that read began, hence published after the hold began: it is in the hold
(or arrives later). An event the replay did see may also be published live, earlier or later; the
floor drops it either way. `replay` reads pages until a short one, queues each event above `since`,
then, without awaiting again, queues `replay_complete` and releases the hold above the last replayed
seq; from then on the floor drops any late live copy of a replayed event. Nothing can run between the
last check and going live, so there is no window for a gap.

The hold is bounded by the queue's room above high water. When a busy room overflows it, the buffer
is discarded and the replay reads the log again before finishing: everything discarded was committed
before it was published, so the log has it. A long replay therefore costs the client time, never an
event, and never closes a client for the server's own read speed. The replay waits for room in the
send queue, so a slow client slows its own replay and cannot overflow its queue with it; a client
slower than its room's event rate keeps being served from the log at its own pace (memory stays
bounded) until it catches up, or until keepalive or the client ends it.

Join without `since`: pass `since=view.seq` and no `complete`; the client gets `room_state` and then
exactly the events after it, including ones committed between the view's read and going live.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from engine.fanout.send_queue import Entry, Message, frames_of
from engine.fanout.subscriber import Subscriber, SubscriberClosed
from engine.model.events import RecordedEvent
from engine.model.reading import ReadStream

Membership = Callable[[str, str], None]
"""The hub's `join` or `leave`: (connection id, topic)."""


Render = Callable[[RecordedEvent], Message | None]
"""The frames a replayed event becomes for this connection (as live), or None for none."""


class CatchUp:
    """Joins `topic` for one connection and brings it up to date; see the module docstring."""

    def __init__(self, subscriber: Subscriber, topic: str, *, join: Membership, leave: Membership) -> None:
        self._join = join
        self._leave = leave
        self.subscriber = subscriber
        self.topic = topic
        self.replayed: int | None = None  # the seq the client is caught up to, once replay() ran
        self._was_member = False

    async def __aenter__(self) -> CatchUp:
        self._was_member = self.topic in self.subscriber.topics
        self._hold = self.subscriber.hold(self.topic)
        self._join(self.subscriber.connection_id, self.topic)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.replayed is not None:
            return  # already live
        # The join did not complete (refused, store down, client gone): undo it, deliver nothing held.
        self.subscriber.drop_hold(self.topic)
        if not self._was_member:
            self._leave(self.subscriber.connection_id, self.topic)
        if exc_type is None:
            raise RuntimeError("a catch-up must call replay() before it ends")

    async def send(self, message: Message) -> None:
        """Queue a message for this connection ahead of the replay (e.g. `room_state`)."""
        await self.subscriber.send(message)

    async def replay(
        self,
        read: ReadStream,
        render: Render,
        *,
        since: int,
        complete: Callable[[int], Message] | None = None,
        page_size: int = 500,
    ) -> int:
        """Queue every event of the topic with seq > `since` in order, then `complete(last)` if given,
        then go live. Returns `last`, the seq the client is now caught up to (`since` if none).
        Raises SubscriberClosed if the connection closes meanwhile, or whatever `read` raises."""
        if self.replayed is not None:
            raise RuntimeError("replay() runs once per catch-up")
        subscriber, hold = self.subscriber, self._hold
        last = since
        while True:
            overflows = hold.overflows
            page = await read(self.topic, after_version=last, limit=page_size)
            for event in page:
                seq = event.stream_version
                if seq <= last:
                    continue  # a read never goes backwards; guard against a misbehaving reader
                message = render(event)
                if message is not None:
                    await subscriber.wait_for_room()
                    subscriber.offer_durable(Entry(frames_of(message), self.topic, seq))
                last = seq
            # Below high water before going live, so the held messages (at most the room above high
            # water) and `complete` fit the queue: a client keeping up is never closed by a release.
            await subscriber.wait_for_room()
            # A short page means the log had nothing more when it was read; an overflow since this
            # read began means held messages were discarded that this read may not have seen.
            if len(page) < page_size and hold.overflows == overflows:
                break
        # From here to release nothing awaits: no publish can fall between the replay and live.
        if complete is not None:
            subscriber.offer_durable(Entry(frames_of(complete(last)), None, None))
        subscriber.release(self.topic, last)
        self.replayed = last
        if subscriber.closed:  # closed as a slow consumer on the way: the client resumes later
            raise SubscriberClosed(subscriber.connection_id)
        return last
