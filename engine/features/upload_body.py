"""An upload's body as a PUT streams it into storage: the attempt's progress reports, and a body whose
chunks must come within the idle timeout while the upload is kept fresh in the log.

Kept apart from engine/features/files.py (which decides who may write which file id, and records the
upload's start and end) because this part is about time: when a report is due, when a body is idle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from engine.model.errors import Rejected
from engine.model.events import AppendOutcome
from engine.projections.uploads import Upload

# Progress is reported every 5% of the body, but never more often than every 256 KiB: a few events
# per file whatever the client's chunk size (progress is volatile and high-frequency).
PROGRESS_FRACTION: Final = 0.05
PROGRESS_MIN_BYTES: Final = 256 * 1024

Now = Callable[[], datetime]
"""The wall clock, as the log's `recorded_at` reads it (tests pass their own)."""


class UploadTimedOut(Rejected):
    """No byte of the body arrived for the idle timeout; the upload failed. HTTP: 408."""

    code = "UPLOAD_TIMEOUT"


def progress_step(total: int | None) -> int:
    """Bytes between two progress reports of a body of `total` bytes (unknown: the minimum)."""
    return max(PROGRESS_MIN_BYTES, int((total or 0) * PROGRESS_FRACTION))


class UploadAttempt:
    """One PUT's attempt at an upload: the upload once it is in the log (started over the WebSocket,
    or claimed by this PUT), its progress reports (`report(done)` appends one), and when the next is
    due for the upload to stay fresh: `fresh_for` seconds after its last event. Timed on the
    monotonic clock, so a wall clock apart from the database's can only make the first report early."""

    def __init__(
        self,
        report: Callable[[int], Awaitable[AppendOutcome]],
        total: int | None,
        own: Upload | None,
        *,
        fresh_for: float,
        now: Now,
    ) -> None:
        self._report = report
        self._total = total
        self._step = progress_step(total)
        self._fresh_for = fresh_for
        self._now = now
        self.upload: Upload | None = None
        self.reported = 0
        self._last_event: float | None = None  # monotonic time of the upload's last event
        if own is not None:
            self.began(own)

    def began(self, upload: Upload) -> None:
        """The upload is in the log; its last event is as old as `updated_at` says."""
        self.upload = upload
        age = (self._now() - upload.updated_at).total_seconds()
        self._last_event = time.monotonic() - min(max(age, 0.0), self._fresh_for)

    def beat_in(self) -> float | None:
        """Seconds until a progress report is due to keep the upload fresh; None before it began."""
        if self._last_event is None:
            return None
        return self._last_event + self._fresh_for - time.monotonic()

    async def written(self, done: int) -> None:
        """Storage's progress callback: every 5% (at least 256 KiB); the last bytes are announced by
        the completion itself."""
        if done - self.reported < self._step or (self._total is not None and done >= self._total):
            return
        await self._record(done)

    async def beat(self, received: int) -> None:
        """A report of what has arrived, even when nothing new has (it keeps the upload fresh)."""
        await self._record(max(self.reported, received))

    async def _record(self, done: int) -> None:
        self.reported = done
        await self._report(done)
        self._last_event = time.monotonic()


_END: Final = object()
_READ_AHEAD: Final = 4  # chunks of the body, as the server hands them over


@dataclass(frozen=True, slots=True)
class _Broken:
    """Reading the request body raised this (the client went away)."""

    error: Exception


class UploadBody:
    """The request body as storage reads it: a chunk must come within the idle timeout (else
    UploadTimedOut), while waiting the attempt's upload is kept fresh, and what arrived is counted.
    `broken` says that reading the body itself raised (the client went away).

    A pump task reads the body a few chunks ahead into a queue: waiting on the queue can time out
    and be resumed, while a timeout that cancelled a read of the body itself would end the body."""

    def __init__(self, chunks: AsyncIterator[bytes], idle_timeout: float, attempt: UploadAttempt) -> None:
        self._chunks = chunks
        self._idle_timeout = idle_timeout
        self._attempt = attempt
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=_READ_AHEAD)
        self._pump: asyncio.Task[None] | None = None
        self.received = 0
        self.broken = False
        self._reader = self._read()  # one read of the body, however many loops walk it

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._reader

    async def aclose(self) -> None:
        """Stop reading the body (its rest is not wanted)."""
        pump, self._pump = self._pump, None
        if pump is not None and not pump.done():
            pump.cancel()
            await asyncio.wait({pump})

    async def _read(self) -> AsyncIterator[bytes]:
        self._pump = asyncio.create_task(self._fill())
        while True:
            item = await self._next()
            if item is _END:
                return
            if isinstance(item, _Broken):
                self.broken = True
                raise item.error
            assert isinstance(item, bytes)
            self.received += len(item)
            yield item

    async def _fill(self) -> None:
        try:
            async for chunk in self._chunks:
                if chunk:
                    await self._queue.put(chunk)
            await self._queue.put(_END)
        except Exception as exc:
            await self._queue.put(_Broken(exc))

    async def _next(self) -> object:
        """The next chunk, `_END` or `_Broken`, reporting progress while waiting when one is due."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        loop = asyncio.get_running_loop()
        idle_at = loop.time() + self._idle_timeout
        while True:
            beat_in = self._attempt.beat_in()
            wait = idle_at - loop.time()
            try:
                async with asyncio.timeout(max(0.0, wait if beat_in is None else min(wait, beat_in))):
                    return await self._queue.get()
            except TimeoutError:
                if loop.time() >= idle_at:
                    raise UploadTimedOut(
                        f"no byte of the body arrived for {self._idle_timeout:g} seconds",
                        idle_timeout=self._idle_timeout,
                        bytes_received=self.received,
                    ) from None
                await self._attempt.beat(self.received)


__all__ = [
    "PROGRESS_FRACTION",
    "PROGRESS_MIN_BYTES",
    "Now",
    "UploadAttempt",
    "UploadBody",
    "UploadTimedOut",
    "progress_step",
]
