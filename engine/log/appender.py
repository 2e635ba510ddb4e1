"""Group commit: one appender per process turns many concurrent appends into few transactions.

Callers `await appender.append(event)`. Each event queues for its log partition (engine/log/
partitions.py); a writer task per partition takes whatever has queued there (at most `max_batch`
items, lingering at most `max_wait` seconds for more), commits it as one transaction and only then
resolves each caller with its own outcome. There is one writer per partition: it knows where its own
last commit left the partition, which lets most batches commit in a single round trip
(engine/log/writer.py); a second writer of one partition would keep invalidating that knowledge
(measured here: ~12k against ~17k events/s at 256 submitters).
Throughput comes from the batching, never from weaker durability: the connections run with
synchronous_commit on, so a resolved append survives a crash. While one batch commits the next one
fills up, so under load batches grow by themselves and latency stays about one commit.

Failure: every commit is bounded by `timeout`; when PostgreSQL is unreachable the batch in flight and
everything queued behind it in its partition fail at once with `StoreUnavailable`, so a caller learns
of an outage within about twice `timeout`. A broken connection is dropped and the next batch opens a
new one, so the appender carries on by itself once the database is back. An append whose caller was
cancelled is not written. If a batch fails for a reason that is not the connection, its items are
retried one per transaction so that one poisoned item fails alone.

Routing (`route`, engine/cluster/routed_appends.py): when several nodes write one log, a partition's
batches are best committed by one writer in the whole cluster, or each node's writer keeps finding
its head moved by the others and takes the locked path. A lane whose partition another node holds
hands its batch to that node, which commits it in its own lane with its own callers' events and
answers each item's outcome; the decisions are the same either way, since whoever writes checks the
partition's head. A batch nobody takes is written here. A batch handed over whose answer never comes
fails like a commit whose connection dropped: its outcome is unknown, and callers retry with their
`client_msg_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from engine.log.connectivity import is_connectivity_error
from engine.log.partitions import partition_of
from engine.log.store import EventLog, Writer
from engine.model.errors import StoreUnavailable
from engine.model.events import AppendOutcome, Committed, NewEvent

log = logging.getLogger(__name__)

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
LATENCY_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 5000)


@dataclass
class Histogram:
    """Cumulative-friendly bucket counts, shaped like a Prometheus histogram."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)  # the last bucket is +Inf

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value
        self.count += 1

    def as_dict(self) -> dict[str, object]:
        labels = [str(b) for b in self.bounds] + ["+Inf"]
        return {
            "buckets": dict(zip(labels, self.counts, strict=True)),
            "sum": self.total,
            "count": self.count,
        }


@dataclass
class AppenderStats:
    batches: int = 0
    events: int = 0
    failed_batches: int = 0
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))
    commit_latency_ms: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_MS))

    def as_dict(self) -> dict[str, object]:
        return {
            "batches": self.batches,
            "events": self.events,
            "failed_batches": self.failed_batches,
            "batch_size": self.batch_size.as_dict(),
            "commit_latency_ms": self.commit_latency_ms.as_dict(),
        }


_Pending = tuple[NewEvent, "asyncio.Future[AppendOutcome]"]

OnCommitted = Callable[[NewEvent, Committed], None]
"""Told of every commit in the writer task, before its caller resumes (and even if it never does)."""


class Route(Protocol):
    """Who writes each partition when appends are routed."""

    def owns(self, partition: int) -> bool:
        """Whether this node is the partition's writer (False while nobody is known to be)."""
        ...

    async def forward(
        self, partition: int, events: Sequence[NewEvent]
    ) -> Sequence[AppendOutcome | Exception] | None:
        """Have the partition's writer commit `events`: each one's outcome, or the error it failed
        with there; None when it took none of them (write them here). Raises `RouteLost` when the
        outcome is unknown."""
        ...


class RouteLost(ConnectionError):
    """A batch was handed to another node, and its answer did not come: committed or not is unknown."""


REFUSED_UNVOUCHED = "this node has not reached the database for a while; try again soon"
HANDED_OVER_TOO_LONG_AGO = (
    "the append waited too long for its partition's writer; retry with the same client_msg_id"
)


@dataclass(eq=False)
class _Lane:
    """One partition's queue and the writer task that commits it: partitions never wait for each
    other's commits, and no transaction writes two of them."""

    partition: int
    writer: Writer
    pending: deque[_Pending] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Appender:
    def __init__(
        self,
        store: EventLog,
        *,
        max_batch: int = 1000,
        max_wait: float = 0.0,
        timeout: float = 5.0,
        max_queue: int = 100_000,
        on_committed: OnCommitted | None = None,
        partitions: int | None = None,
        route: Route | None = None,
        admits: Callable[[NewEvent], bool] | None = None,
    ) -> None:
        """`admits` is asked of each event of this node's callers as its batch leaves, to be written
        here or handed over; one it refuses fails with StoreUnavailable, nothing written."""
        self.store = store
        self.on_committed = on_committed
        self.route = route  # set once the node's routing is up; None: every partition is written here
        self.admits = admits
        # Queued for another node, written here whoever holds their partition by then: when (monotonic).
        self._here: dict[asyncio.Future[AppendOutcome], float] = {}
        self.forwarded = 0  # events of this node's callers that another node committed
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.timeout = timeout
        self.max_queue = max_queue
        self.stats = AppenderStats()
        # The log's partition count (fixed when it was created), read at the first append when not
        # given (the database may be away at start); each writer checks it on connecting.
        self._partitions = partitions
        self._lanes: dict[int, _Lane] = {}  # a lane per partition appended to since start
        self._queued = 0  # events in every lane's queue, kept as they come and go
        self._running = False
        self._closing = False

    @property
    def queue_depth(self) -> int:
        return self._queued

    @property
    def write_paths(self) -> dict[str, int]:
        """How many batches committed on each path (known, read, locked): see LogWriter.append."""
        paths: dict[str, int] = {}
        for lane in self._lanes.values():
            for path, count in lane.writer.paths.items():
                paths[path] = paths.get(path, 0) + count
        return paths

    @property
    def partitions(self) -> int:
        if self._partitions is None:
            raise StoreUnavailable("the log's partition count is not known yet (nothing appended)")
        return self._partitions

    async def _learn_partitions(self) -> None:
        if self._partitions is not None:
            return
        try:
            self._partitions = await self.store.partitions()
        except Exception as error:
            if is_connectivity_error(error):
                raise StoreUnavailable("the event log is unreachable; retry shortly") from error
            raise

    async def start(self) -> None:
        if not self._running:
            # A stop still draining ends first: its lanes exit only while `_closing` holds.
            draining = [lane.task for lane in self._lanes.values() if lane.task and not lane.task.done()]
            await asyncio.gather(*draining, return_exceptions=True)
            self._lanes = {}
            self._closing = False
            self._running = True

    async def stop(self) -> None:
        """Refuse new appends, commit everything already queued, then end the writer tasks."""
        self._closing = True
        self._running = False
        lanes = list(self._lanes.values())  # kept, with their figures, until the next start
        for lane in lanes:
            lane.wakeup.set()
        ended = await asyncio.gather(*(lane.task for lane in lanes if lane.task), return_exceptions=True)
        for error in ended:
            if isinstance(error, BaseException):  # one lane's failure must not keep the others open
                log.error("an appender lane ended with %r", error)

    async def append(self, event: NewEvent) -> AppendOutcome:
        """Durably append one event; returns its own outcome. Raises StoreUnavailable."""
        self._admit(1)
        if self._partitions is None:
            await self._learn_partitions()
        # No timer per call: the writer bounds every commit by `timeout` and fails what is queued
        # when the database is unreachable, so this await ends within about twice `timeout`.
        return await self._enqueue(event)

    def submit(self, event: NewEvent) -> asyncio.Future[AppendOutcome] | None:
        """Queue one event now, behind everything queued before this call, and return its outcome to
        await later: a caller that must keep its events in order can queue the next before the first
        commits. None until the log's partition count is known (`append` learns it). Raises
        StoreUnavailable."""
        if self._partitions is None:
            return None
        self._admit(1)
        return self._enqueue(event)

    def _enqueue(self, event: NewEvent) -> asyncio.Future[AppendOutcome]:
        fut: asyncio.Future[AppendOutcome] = asyncio.get_running_loop().create_future()
        lane = self._lane(event.stream_id)
        lane.pending.append((event, fut))
        self._queued += 1
        lane.wakeup.set()
        return fut

    async def append_many(self, batch: Sequence[NewEvent]) -> list[AppendOutcome]:
        """Submit several events at once; each still gets its own outcome (they may share a commit).
        Events of different partitions commit independently: one that depends on another's commit
        (an edit on its sheet's claim) must wait for that commit first."""
        self._admit(len(batch))
        if self._partitions is None:
            await self._learn_partitions()
        futures = [self._enqueue(event) for event in batch]
        return list(await asyncio.gather(*futures))

    def submit_many(
        self, batch: Sequence[NewEvent], *, here: bool = False
    ) -> list[asyncio.Future[AppendOutcome]] | None:
        """`submit` for several events, all or none: None, or StoreUnavailable, with none queued.
        `here`: written by this node whoever holds their partition by then (a batch another node
        handed over is never handed on again, so no batch travels in a chain or a circle)."""
        if self._partitions is None:
            return None
        self._admit(len(batch))
        futures = [self._enqueue(event) for event in batch]
        if here:
            queued_at = time.monotonic()
            for fut in futures:
                self._here[fut] = queued_at
                fut.add_done_callback(self._forget_here)
        return futures

    def _forget_here(self, fut: asyncio.Future[AppendOutcome]) -> None:
        self._here.pop(fut, None)

    def partition_of(self, stream_id: str) -> int:
        return partition_of(stream_id, self.partitions)

    def _admit(self, count: int) -> None:
        if self._closing or not self._running:
            raise StoreUnavailable("the appender is not running")
        if self.queue_depth + count > self.max_queue:
            raise StoreUnavailable("the appender queue is full; retry shortly")

    def _lane(self, stream_id: str) -> _Lane:
        partition = partition_of(stream_id, self.partitions)
        lane = self._lanes.get(partition)
        if lane is None:
            lane = self._lanes[partition] = _Lane(partition, self.store.writer(partition, self.partitions))
            lane.task = asyncio.create_task(self._run(lane), name=f"appender-{partition}")
        return lane

    async def _run(self, lane: _Lane) -> None:
        while True:
            if not lane.pending:
                if self._closing:
                    await lane.writer.close()
                    return
                lane.wakeup.clear()
                await lane.wakeup.wait()
                continue
            if self.max_wait > 0 and len(lane.pending) < self.max_batch and not self._closing:
                await asyncio.sleep(self.max_wait)  # linger: let concurrent callers join this commit
            batch = self._take(lane)
            if not batch:
                continue
            try:
                await self._commit(lane, batch)
            except Exception as error:
                # The writer task must outlive any bug: if it died, every caller would wait forever.
                log.exception("appender failed a batch of %d", len(batch))
                self._fail(batch, error)

    def _take(self, lane: _Lane) -> list[_Pending]:
        batch: list[_Pending] = []
        while lane.pending and len(batch) < self.max_batch:
            item = lane.pending.popleft()
            self._queued -= 1
            if not item[1].done():  # its caller was cancelled: do not write it
                batch.append(item)
        return batch

    async def _commit(self, lane: _Lane, batch: list[_Pending]) -> None:
        if self.admits is not None or self._here:
            batch = self._admitted(batch)
            if not batch:
                return
        started = time.perf_counter()
        try:
            handed_over = any(fut in self._here for _, fut in batch) if self._here else False
            outcomes, here = await self._write(lane, [event for event, _ in batch], only_here=handed_over)
        except Exception as error:
            self.stats.failed_batches += 1
            if is_connectivity_error(error):
                log.warning("append of %d events failed: database unreachable (%r)", len(batch), error)
                # Whatever is queued would meet the same outage: tell those callers now rather than
                # after one timeout each. Only the in-flight batch's outcome is unknown.
                self._fail(
                    batch,
                    StoreUnavailable(
                        "the event log did not confirm the append (database unreachable); "
                        "retry with the same client_msg_id"
                    ),
                )
                queued = list(lane.pending)
                lane.pending.clear()
                self._queued -= len(queued)
                self._fail(queued, StoreUnavailable("the event log is unreachable; retry shortly"))
            else:
                log.exception("append of %d events failed; retrying them one by one", len(batch))
                await self._commit_one_by_one(lane, batch)
            return
        if here:  # a batch handed over is counted, and told of, by the node that wrote it
            self._record(len(batch), started)
        for (event, fut), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):  # an item the writer of a batch handed over failed
                self._fail([(event, fut)], outcome)
                continue
            if here:
                self._tell(event, outcome)  # also when its caller is gone
            if not fut.done():
                fut.set_result(outcome)

    def _admitted(self, batch: list[_Pending]) -> list[_Pending]:
        """The batch less what may not be written now. This node's callers' events are asked of
        `admits` as the batch leaves, since a batch may wait in its lane long after its events were
        queued. Events another node handed over were asked there; they go while their asker may still
        wait for them (queued at most `timeout` ago, then a commit bounded by `timeout`): never after
        it gave up, nor after a survivor's second reading of a dead node's memberships, which counts
        on that bound (engine/cluster/reaper.py)."""
        admits = self.admits
        now = time.monotonic() if self._here else 0.0
        admitted: list[_Pending] = []
        for event, fut in batch:
            queued_at = self._here.get(fut)
            if queued_at is not None:
                if now - queued_at <= self.timeout:
                    admitted.append((event, fut))
                else:
                    self._fail([(event, fut)], StoreUnavailable(HANDED_OVER_TOO_LONG_AGO))
            elif admits is None or admits(event):
                admitted.append((event, fut))
            else:
                self._fail([(event, fut)], StoreUnavailable(REFUSED_UNVOUCHED))
        return admitted

    async def _write(
        self, lane: _Lane, events: list[NewEvent], *, only_here: bool = False
    ) -> tuple[Sequence[AppendOutcome | Exception], bool]:
        """The batch's outcomes, and whether this node wrote it. A batch handed over is bounded by the
        route's own timeout, which allows for the writer's queue as well as its commit."""
        route = self.route
        if route is not None and not only_here and not route.owns(lane.partition):
            outcomes = await route.forward(lane.partition, events)
            if outcomes is not None:
                self.forwarded += len(events)
                return outcomes, False
        async with asyncio.timeout(self.timeout):
            return await lane.writer.append(events), True

    async def _commit_one_by_one(self, lane: _Lane, batch: list[_Pending]) -> None:
        for event, fut in batch:
            if not self._admitted([(event, fut)]):  # each may wait a timeout behind the one before it
                continue
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout):
                    (outcome,) = await lane.writer.append([event])
            except Exception as error:
                if not fut.done():
                    fut.set_exception(
                        StoreUnavailable(f"the event log is unreachable: {type(error).__name__}")
                        if is_connectivity_error(error)
                        else error
                    )
                continue
            self._record(1, started)
            self._tell(event, outcome)
            if not fut.done():
                fut.set_result(outcome)

    def _tell(self, event: NewEvent, outcome: AppendOutcome) -> None:
        if self.on_committed is not None and isinstance(outcome, Committed):
            try:
                self.on_committed(event, outcome)
            except Exception:  # an observer's bug must not stop the writer
                log.exception("on_committed failed for position %d", outcome.position)

    def _record(self, size: int, started: float) -> None:
        self.stats.batches += 1
        self.stats.events += size
        self.stats.batch_size.observe(size)
        self.stats.commit_latency_ms.observe((time.perf_counter() - started) * 1000)

    @staticmethod
    def _fail(batch: list[_Pending], error: Exception) -> None:
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(error)
                # The caller may have timed out already; mark the exception retrieved either way.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    fut.exception()
