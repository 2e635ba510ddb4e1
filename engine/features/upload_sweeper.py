"""The upload sweeper: a background task that ends uploads nobody is finishing (docs/protocol.md,
"Files over REST").

An upload that is neither complete nor failed and has had no event (its start, a progress report)
for `timeout_seconds` (UPLOAD_IDLE_TIMEOUT_SECONDS) is abandoned: a `file_upload_start` whose PUT
never came, a client that reported progress over the socket and vanished, a PUT whose node died
mid-body. A live PUT body records progress at least every half timeout (engine/features/files.py),
so it is never one of them. The sweeper appends `FileUploadFailed` with reason `idle_timeout` for
each (through `commit`, which publishes it: every connection of the uploader gets
`file_upload_failed`), and the id is free for its owner again.

Decided from the log alone, so it survives restarts: every `interval` the sweeper asks the uploads
projection table for uploads idle since `now - timeout` (`find_idle`, engine/readmodels/idle_uploads.py),
a page of `SWEEP_PAGE` at a time until a short page, each after the last of the one before (so one
sweep ends every upload idle as of its start, however many, and no read is unbounded), re-reads each
from the log (`read_upload`: the table trails the log, and a candidate may have moved
on), and ends those still idle. Every node sweeps; the failure carries the attempt's `end_key`, so
two nodes ending the same upload, or a sweep racing the upload's own completion, record one end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from engine.features.ports import Commit
from engine.log.lifecycle import cancel_and_wait
from engine.model.catalogue import IDLE_TIMEOUT, FileUploadFailed
from engine.model.events import Committed, Origin, RecordedEvent
from engine.projections import uploads
from engine.projections.uploads import IdleOrder, Upload

log = logging.getLogger(__name__)


class FindIdle(Protocol):
    """A page of unfinished uploads with no event since `cutoff`, in `idle_order`, after `after`."""

    def __call__(
        self, cutoff: datetime, *, after: IdleOrder | None = ..., limit: int = ...
    ) -> Awaitable[Sequence[Upload]]: ...


ReadUpload = Callable[[str, str], Awaitable[Sequence[RecordedEvent]]]  # (user, file) -> its events
Now = Callable[[], datetime]

# How often to look: a quarter of the timeout (an upload ends between 1 and 1.25 timeouts after its
# last event), but at least every 5 seconds and at most every 50 ms.
MAX_INTERVAL = 5.0
MIN_INTERVAL = 0.05
SWEEP_PAGE: Final = 100  # idle uploads read at a time


def _utc_now() -> datetime:
    return datetime.now(UTC)


def sweep_interval(timeout_seconds: float) -> float:
    return min(MAX_INTERVAL, max(MIN_INTERVAL, timeout_seconds / 4))


class UploadSweeper:
    def __init__(
        self,
        *,
        node_id: str,
        commit: Commit,
        find_idle: FindIdle,
        read_upload: ReadUpload,
        timeout_seconds: float,
        now: Now = _utc_now,
    ) -> None:
        self._node_id = node_id
        self._commit = commit
        self._find_idle = find_idle
        self._read_upload = read_upload
        self.timeout_seconds = timeout_seconds
        self.interval = sweep_interval(timeout_seconds)
        self._now = now
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="upload-sweeper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def sweep(self) -> list[Upload]:
        """End every upload idle as of now; returns those this call recorded the failure of."""
        now = self._now()
        cutoff = now - timedelta(seconds=self.timeout_seconds)
        ended: list[Upload] = []
        after: IdleOrder | None = None
        while True:
            page = await self._find_idle(cutoff, after=after, limit=SWEEP_PAGE)
            for candidate in page:
                if (upload := await self._end(candidate, now)) is not None:
                    ended.append(upload)
            if len(page) < SWEEP_PAGE:
                return ended
            after = uploads.idle_order(page[-1])

    async def _end(self, candidate: Upload, now: datetime) -> Upload | None:
        """Record the failure of `candidate` if the log says it is still idle; the upload (as the
        log has it) if this call recorded it."""
        events = await self._read_upload(candidate.user_id, candidate.file_id)
        upload = uploads.project(events, candidate.file_id)
        if upload is None or not uploads.idle(upload, now, self.timeout_seconds):
            return None  # it moved on since the table saw it
        failed = FileUploadFailed(
            upload.user_id, upload.file_id, IDLE_TIMEOUT, upload.filename, upload.bytes_uploaded
        )
        origin = Origin(node=self._node_id, user_id=upload.user_id, via="sweeper")
        outcome = await self._commit(failed.new(origin, key=uploads.end_key(upload)))
        # None for a Duplicate: another node, or the upload's own body, ended it
        return upload if isinstance(outcome, Committed) else None

    async def _run(self) -> None:
        while True:
            try:
                for upload in await self.sweep():
                    log.info("upload %r of %r expired after %ss idle", upload.file_id, upload.user_id,
                             self.timeout_seconds)  # fmt: skip
            except Exception as exc:  # the store is down: the uploads stay in the log, try again
                log.warning(
                    "upload sweep failed, retrying in %ss: %s: %s", self.interval, type(exc).__name__, exc
                )
            await asyncio.sleep(self.interval)


__all__ = ["SWEEP_PAGE", "FindIdle", "UploadSweeper", "sweep_interval"]
