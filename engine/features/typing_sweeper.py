"""The typing sweeper: a background task that ends typing nobody stopped (docs/protocol.md, typing).

It folds every typing event this node publishes, its own commits and other nodes' (`observe`, called
right after the publish), into the pure typing view of its room
(engine/projections/typing_indicators.py), keeps only rooms with active typists, and sleeps until the
earliest `next_expiry`. Then it appends, through `commit` (which also publishes them: the other
members get `user_typing_stop`), the `TypingStopped` events with reason "expired" that `expired()`
returns. A stop, a leave or a repeated start folds in like any other event, whichever node it went
through, so it cancels or resets the timer.

Each node ends the typing whose latest start went through it: a start through another node hands
that typist over to that node's sweeper, which ends it on its own timer. Each expired stop carries
the idempotency key `typing-expired:v{version of the start}`, so a retry (or a second node sweeping
the same start) appends it once, and names that start in its data (`start_version`): a start that
refreshes the typing while the stop commits wins, whichever commits first (`ends_current` in the
projection; engine/fanout/live.py sends no `user_typing_stop` for such a stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from engine.model.catalogue import TYPING_STARTED
from engine.model.events import AppendOutcome, NewEvent, RecordedEvent
from engine.projections import frozen, typing_indicators
from engine.projections.typing_indicators import TypingView

log = logging.getLogger(__name__)

Commit = Callable[[NewEvent], Awaitable[AppendOutcome]]
Now = Callable[[], datetime]

# After a failed append (the store is down), wait this long before sweeping again.
RETRY_SECONDS = 1.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TypingSweeper:
    def __init__(self, commit: Commit, timeout_seconds: float, node_id: str, *, now: Now = _utc_now) -> None:
        self._commit = commit
        self._node_id = node_id
        self.timeout_seconds = timeout_seconds
        self._now = now
        self._views: dict[str, TypingView] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def active_rooms(self) -> frozenset[str]:
        return frozenset(self._views)

    def observe(self, event: RecordedEvent) -> None:
        """Fold a published event; events other than typing and leaves are ignored."""
        if event.type not in typing_indicators.HANDLED:
            return
        room_id = typing_indicators.key_of(event)
        if room_id is None:
            return
        view = self._views.get(room_id) or TypingView(room_id)
        if event.type == TYPING_STARTED and self._through_another_node(event):
            view = _without(view, (str(event.data["user_id"]), str(event.data["cell_id"])))
        else:
            view = typing_indicators.apply(view, event)
        self._store(view)
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="typing-sweeper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._views.clear()

    async def sweep(self) -> None:
        """Append (and publish) the stops of every typing expired by now."""
        now = self._now()
        for view in list(self._views.values()):
            for stop in typing_indicators.expired(view, now, self.timeout_seconds):
                if not self._is_current(stop):
                    continue  # refreshed, stopped or handed over while an earlier stop committed
                await self._commit(stop)  # a Committed stop comes back through `observe`
                self._drop(stop)  # a Duplicate does not: its original was already published

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.sweep()
            except Exception as exc:  # the store is down: keep the typists, try again later
                log.warning("typing sweep failed, retrying in %ss: %s", RETRY_SECONDS, exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            expiries = [
                e
                for view in self._views.values()
                if (e := typing_indicators.next_expiry(view, self.timeout_seconds)) is not None
            ]
            delay = None if not expiries else max(0.0, (min(expiries) - self._now()).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _through_another_node(self, event: RecordedEvent) -> bool:
        node = event.metadata.get("node")
        return node is not None and node != self._node_id

    def _is_current(self, stop: NewEvent) -> bool:
        """Whether the stop still ends the typing this node holds: the same start, not a later one."""
        view = self._views.get(str(stop.data["room_id"]))
        typist = None if view is None else view.typing.get(_key_of(stop))
        return typist is not None and stop.idempotency_key == typing_indicators.expiry_key(typist)

    def _drop(self, stop: NewEvent) -> None:
        if self._is_current(stop):
            self._store(_without(self._views[str(stop.data["room_id"])], _key_of(stop)))

    def _store(self, view: TypingView) -> None:
        if view.typing:
            self._views[view.room_id] = view
        else:
            self._views.pop(view.room_id, None)


def _without(view: TypingView, key: tuple[str, str]) -> TypingView:
    return TypingView(view.room_id, frozen({k: t for k, t in view.typing.items() if k != key}))


def _key_of(stop: NewEvent) -> tuple[str, str]:
    return str(stop.data["user_id"]), str(stop.data["cell_id"])


__all__ = ["TypingSweeper"]
