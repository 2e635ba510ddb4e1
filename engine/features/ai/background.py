"""`BackgroundWork`: what the AI runner does apart from the message that caused it, and hands to `stop`.

Why apart: an ending of a request (its cancellation, its failure) must reach the log even when its
commit fails now, or the request stays running there; it is tried again in the background, within
`LOST_ENDINGS_BOUND`, under its end key, so that however often it is tried it is recorded once. The
runner's other work that outlives a message (runs wound down after the node was taken for dead, looks
for a start whose commit failed) runs here too, so that `stop` can await all of it within a bound and
give what was given up one last try.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from engine.cluster.reaper import commit_all
from engine.features.ports import Commit
from engine.model.events import AppendOutcome, NewEvent

log = logging.getLogger(__name__)

LOST_ENDINGS_BOUND = 60.0  # seconds an ending recorded in the background is tried for

EndingKey = tuple[str | None, str | None]  # (user_id, idempotency key)


class BackgroundWork:
    def __init__(self, commit: Commit) -> None:
        self._commit = commit
        self._tasks: set[asyncio.Task[None]] = set()
        # Endings being tried again, by key: one given up gets a last try (`last_tries`).
        self._unrecorded: dict[EndingKey, NewEvent] = {}
        self.closed = False  # stopping: nothing new starts

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` in the background, awaited (within a bound) at stop; nothing once closed."""
        if self.closed:
            work.close()
            return
        self.adopt(asyncio.create_task(work, name=name))

    def adopt(self, task: asyncio.Task[None]) -> None:
        """Await `task` at stop too (a run being wound down)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def record(self, ending: NewEvent) -> AppendOutcome:
        """Commit an ending; one that fails is also tried again in the background (its key keeps it
        one), and the failure is raised."""
        try:
            return await self._commit(ending)
        except Exception as exc:
            log.warning("could not record the end of an AI request: %s: %s", type(exc).__name__, exc)
            self.record_later([ending], "ai-ending")
            raise

    def record_later(self, endings: list[NewEvent], name: str) -> None:
        """Commit `endings` in the background, tried until recorded within `LOST_ENDINGS_BOUND`."""
        self.spawn(self._commit_all(endings), name)

    def unrecorded(self, user_id: str, key: str) -> NewEvent | None:
        """The ending under `key` still being tried in the background, if any."""
        return self._unrecorded.get((user_id, key))

    async def _commit_all(self, endings: list[NewEvent]) -> None:
        self._unrecorded.update(((ending.user_id, ending.idempotency_key), ending) for ending in endings)
        try:  # e.g. refused until the node has registered again: tried until then, within a bound
            await commit_all(endings, self._commit, bound=LOST_ENDINGS_BOUND)
        except Exception as exc:
            log.error(
                "could not record the end of %d AI requests: %s: %s", len(endings), type(exc).__name__, exc
            )
        else:
            for ending in endings:
                self._unrecorded.pop((ending.user_id, ending.idempotency_key), None)

    async def wait(self, timeout: float) -> set[asyncio.Task[None]]:  # noqa: ASYNC109
        """Wait up to `timeout` seconds for the work under way; what is still running then."""
        if not self._tasks:
            return set()
        _, pending = await asyncio.wait(list(self._tasks), timeout=timeout)
        return pending

    @staticmethod
    async def cancel(tasks: set[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def last_tries(self) -> None:
        """One last try of each ending given up (or cut short by `cancel`)."""
        given_up, self._unrecorded = self._unrecorded, {}
        for ending in given_up.values():
            try:
                await self._commit(ending)
            except Exception as exc:
                log.error(
                    "could not record the end of an AI request at shutdown: %s: %s", type(exc).__name__, exc
                )


__all__ = ["LOST_ENDINGS_BOUND", "BackgroundWork"]
