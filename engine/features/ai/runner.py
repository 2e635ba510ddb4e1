"""`AiRunner`: `ai_request` and `ai_cancel`, and the one place that appends AI events.

A request is checked, recorded as `AiRequestStarted` in the requester's stream (`user:{id}`), and then
run in a background task of its own, which records every step of the provider as an event of that
stream (engine/features/ai/run.py). Each is committed like any other event, so it is published to
every connection of the requester as an `ai_event` (engine/protocol/ai_rendering.py) and nobody else
hears of it. The provider runs only here, live: a replay or a projection rebuild folds the recorded
events and never calls it.

Choices:

* Who may ask: `ai_request` needs a role that may send it (a viewer gets PERMISSION_DENIED); the
  sheet must belong to a room this connection joined (PERMISSION_DENIED otherwise, as for any action
  in a room). A sheet that was never edited has no room: NOT_FOUND (there is nothing to analyse and
  no room to check membership against).
* What is analysed: the sheet at request time (engine/features/ai/run.py, `job_for`).
* One run per request id: `AiRequestStarted` carries the idempotency key `ai:{request_id}` for the
  requester, checked inside the append, so a repeated `request_id` of the same user never starts a
  second run, on any node. The repeat gets the original's `ack` when it carries a `client_msg_id` (a
  retry), else VALIDATION_ERROR; the retrying connection, which may have opened after some of the
  request's steps were published (a reconnect), first gets its latest step
  (engine/features/ai/resume.py). A start whose commit failed may be in the log all the same (the
  answer to COMMIT lost, or the log before it unreadable here), and its retry would then start
  nothing: the node looks for it (`_start_if_recorded`, one look per request, again on such a
  Duplicate) and runs it if this node committed it and it has not ended. Of the request's own
  commit, a look and a cancel, the first to `_claim` a start runs it (or ends it); a look still
  going on at shutdown ends it.
* `ai_cancel {request_id}` cancels the task (the `CancelledError` lands inside the provider, see
  engine/features/ai/provider.py), waits for it to end, then records `AiCancelled` (reason
  "cancelled"), which the requester's connections get as `ai_error` with code `CANCELLED`. A run on
  another node (asked for through the user's connection there) is stopped there first
  (`stop_elsewhere`). A request id that is not running on any node (unknown, already finished, or
  another user's) gets NOT_FOUND. Commits of the run are shielded from the cancel, so a step being
  appended when the cancel lands is still published; the projection keeps the first ending
  (engine/projections/ai_requests.py).
* Shutdown (`stop`, from `Engine.stop`): running requests are cancelled and recorded as `AiFailed`
  "the server is shutting down" (not `AiCancelled`: nobody asked to cancel them). A start whose
  commit is still on its way then would commit with nobody left to end it (a survivor ends only a
  dead node's runs), so `stop` waits for the starts in flight (`_starting`), within
  `STOP_WAIT_SECONDS` shared with the background work, while the node's log still takes writes: one
  that commits meanwhile is acked and then ends with that same failure (never run). Waiting, rather
  than ending it for the request from `stop`, costs nothing extra: its ending goes to the same
  partition as its start, so it could not commit before the start's own commit anyway. A start still
  in flight after the bound gets `stop`'s last look, as a start looked for does; a request that
  arrives once `stop` has begun is refused (retryable) before anything is recorded. A node taken
  for dead (`abandon_runs`) stops its runs at once and records each as `AiFailed` "the server
  running it stopped", as the survivor that took it for dead does; a start committing after that
  gets the same ending instead of a run (`_launch`).
* One ending per request: the answer, a failure, a cancellation, and a survivor's failure for a dead
  node all carry the request's `end_key`, so whichever is recorded first is the only one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from cachetools import FIFOCache

from engine.cluster.reaper import NODE_LOST_ERROR
from engine.decisions.access import authorize, require_member
from engine.fanout.hub import Hub, SubscriberClosed
from engine.fanout.live import UserPublisher
from engine.features.ai import AiJob, AiProvider, BuiltinProvider
from engine.features.ai.background import BackgroundWork
from engine.features.ai.resume import bring_up_to_date
from engine.features.ai.run import RequestKey, Steps, idempotency_key, job_for, recorded_job, run_request
from engine.features.cells import SheetRooms
from engine.features.connections import Connections
from engine.features.ports import Commit, Reply, acknowledge
from engine.model.actors import Actor
from engine.model.catalogue import AI_CANCELLED, AI_EVENTS, AiCancelled, AiFailed, AiRequestStarted
from engine.model.errors import NotFound, StoreUnavailable, ValidationFailed
from engine.model.events import AppendOutcome, Duplicate, NewEvent, Origin, RecordedEvent
from engine.model.reading import ReadStream
from engine.model.streams import user_stream
from engine.projections.ai_requests import end_key
from engine.protocol.ai_rendering import render_ai
from engine.protocol.rendering import encode

log = logging.getLogger(__name__)

SHUTDOWN_ERROR = "the server is shutting down"
CANCEL_REASON = "cancelled"

StopElsewhere = Callable[[str, str, str | None], Awaitable[bool]]
"""Asks the other nodes to stop a request's run and record its cancellation (`cancel_here` there,
with the cancel's client_msg_id): whether one did."""


ReadByKey = Callable[[str, str, str], Awaitable[RecordedEvent | None]]
"""The event a user appended to a stream under an idempotency key, if any."""
SETTLE_SECONDS = 10.0  # after a failed commit of a start, by when it has surely committed or not
SETTLE_POLL_SECONDS = 0.5
UNREADABLE_POLL_MAX_SECONDS = 5.0  # a look waits at most this long between reads of an unreadable log
LAUNCHED_KEPT = 10_000  # runs started here that a look checks against (far more than a minute's)
STOP_WAIT_SECONDS = 5.0  # at shutdown, for endings still being recorded in the background


Published = Callable[[Duplicate | RecordedEvent], Awaitable[None]]
"""Waits until this node has published the event a Duplicate names (another node committed it), or a
recorded event."""


class AiRunner:
    def __init__(
        self,
        *,
        node_id: str,
        connections: Connections,
        hub: Hub,
        sheet_rooms: SheetRooms,
        commit: Commit,
        reply: Reply,
        read_stream: ReadStream,
        stop_elsewhere: StopElsewhere,
        read_by_key: ReadByKey,
        published: Published,
        provider: AiProvider | None = None,
    ) -> None:
        self._node_id = node_id
        self._stop_elsewhere = stop_elsewhere
        self._read_by_key = read_by_key
        self._published = published
        self._connections = connections
        self._hub = hub
        self._sheet_rooms = sheet_rooms
        self._commit = commit
        self._steps = Steps(node_id, commit)
        self._reply = reply
        self._read_stream = read_stream
        self.provider: AiProvider = provider if provider is not None else BuiltinProvider()
        self._running: dict[RequestKey, asyncio.Task[None]] = {}
        # Requests whose start is being recorded (`request`), each settled once it is acked: `stop`
        # waits for them.
        self._starting: dict[asyncio.Future[None], RequestKey] = {}
        # Endings tried again, runs wound down, looks for starts: awaited within a bound at `stop`.
        self._background = BackgroundWork(commit)
        self._abandoned_count = 0
        self._stopping = False
        # Starts looked for (`_start_if_recorded`), by key: until when one not in the log yet is
        # looked for again (loop time).
        self._unsettled: dict[RequestKey, float] = {}
        # Requests whose run this node started, the latest: a look never starts one a second time.
        self._launched: FIFOCache[RequestKey, bool] = FIFOCache(LAUNCHED_KEPT)

    @property
    def running(self) -> frozenset[RequestKey]:
        """The requests whose provider is running on this node."""
        return frozenset(self._running)

    def publishers(self) -> dict[str, UserPublisher]:
        """Each AI event goes, as one `ai_event`, to every connection of the requester (topic
        `user:{id}`) and to nobody else."""
        return dict.fromkeys(AI_EVENTS, self._publish)

    def _publish(self, event: RecordedEvent, sender: str | None) -> None:
        topic = user_stream(str(event.data["user_id"]))
        self._hub.publish(topic, encode(render_ai(event)), seq=event.stream_version)

    # Messages.

    async def request(
        self,
        actor: Actor,
        connection_id: str,
        request_id: str,
        query: str,
        sheet_id: str,
        context: Mapping[str, Any] | None = None,
        *,
        client_msg_id: str | None = None,
    ) -> None:
        """Check, record `AiRequestStarted` (-> `ai_start`), ack, and start the run."""
        authorize(actor, "ai_request")
        sheet_room = await self._sheet_rooms.room_of(sheet_id)
        if sheet_room is None:
            raise NotFound(f"sheet {sheet_id!r} has no cells", sheet_id=sheet_id, request_id=request_id)
        require_member(sheet_room, self._connections.of(actor, connection_id).rooms)
        context = dict(context) if context is not None else None
        job = await job_for(self._read_stream, request_id, query, sheet_id, sheet_room, context)
        started = AiRequestStarted(actor.user_id, request_id, query, sheet_id, context, sheet_room)
        origin = Origin.of(self._node_id, actor, connection_id, client_msg_id)
        event = started.new(origin, key=idempotency_key(request_id))
        key = (actor.user_id, request_id)
        if self._stopping:  # nothing is recorded: the client retries it (on another node)
            raise StoreUnavailable(SHUTDOWN_ERROR, request_id=request_id)
        # In flight until acked and, if it committed while the node stops, ended: `stop` waits for it
        # (within its bound) so that its ending is recorded while the log still takes writes. Added
        # with no await since the check above, so that none is added once `stop` has begun.
        in_flight: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._starting[in_flight] = key
        try:
            await self._start(key, job, event, connection_id, client_msg_id)
        finally:
            del self._starting[in_flight]
            in_flight.set_result(None)

    async def _start(
        self, key: RequestKey, job: AiJob, event: NewEvent, connection_id: str, client_msg_id: str | None
    ) -> None:
        """Record the request's start, ack it, and run it; or end it, if the node began to stop while
        the start was being recorded."""
        request_id = key[1]
        abandoned_before = self._abandoned_count
        try:
            outcome = await self._commit(event)
        except StoreUnavailable:
            # It may have committed all the same (its outcome lost, or not yet published here); a
            # retry would then be a Duplicate that starts nothing, so this node looks for it (once,
            # at once, when it is stopping).
            if self._stopping:  # within the bound of `stop`'s last looks; the client hears of the outage
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(STOP_WAIT_SECONDS):
                        await self._end_if_recorded(key)
            else:
                self._look_for(key, SETTLE_SECONDS)
            raise
        if isinstance(outcome, Duplicate):
            if client_msg_id is None:
                raise ValidationFailed(f"request_id {request_id!r} was already used", request_id=request_id)
            await self.retried(key[0], connection_id, request_id)
            await self._ack(connection_id, client_msg_id, outcome)
            return
        # Taken already if a look for an earlier attempt found this start first (it runs it), or a
        # cancel took it from such a look (it ended it). Launched before the ack, so that a cancel
        # while the ack waits (a slow reader) finds it running; it starts once the ack is sent, and
        # runs even if the requester's socket just went away. Committed while the node stops, it
        # never runs: it ends once acked, as a run's steps come after the ack.
        acked = asyncio.Event()
        claimed = self._claim(key)
        shut_out = claimed and self._stopping
        if claimed and not shut_out:
            await self._launch(key, job, abandoned_before, after=acked)
        try:
            await self._ack(connection_id, client_msg_id, outcome)
        finally:
            acked.set()
            if shut_out:
                await self._record_at_shutdown(AiFailed(*key, SHUTDOWN_ERROR))

    def _claim(self, key: RequestKey) -> bool:
        """Whether the caller is the one to run (or end) a start this node committed: the first to
        ask, among the request, a look for it and a cancel."""
        if key in self._running or key in self._launched:
            return False
        self._launched[key] = True
        return True

    async def _launch(
        self, key: RequestKey, job: AiJob, abandoned_before: int, *, after: asyncio.Event | None = None
    ) -> None:
        """Run a request whose start this node committed (its provider once `after` is set), unless
        the node stops or was taken for dead since: end it then."""
        user_id, request_id = key
        if self._stopping:  # found by a look while the node stops: it ends at once
            await self._record_at_shutdown(AiFailed(user_id, request_id, SHUTDOWN_ERROR))
        elif self._abandoned_count != abandoned_before:  # taken for dead meanwhile: likewise
            self._end_lost([key])
        else:
            run = run_request(
                key,
                job,
                self.provider,
                self._steps,
                finished=partial(self._forget, key),
                record_later=self._background.record_later,
                after=after,
            )
            self._running[key] = asyncio.create_task(run, name=f"ai:{user_id}:{request_id}")

    async def retried(self, user_id: str, connection_id: str, request_id: str) -> None:
        """A retry of a recorded request, about to be acked as the original: a Duplicate here, or
        acked by the session from the log after a later check refused it ("Idempotency first": past
        a limit, from a tab not in the room). Its start may be one this node committed and never ran
        (it is looked for), and the retrying connection, a new one after a reconnect say, may have
        missed its steps: it gets the latest first (engine/features/ai/resume.py)."""
        key = (user_id, request_id)
        self._look_for(key, 0.0)
        try:
            subscriber = self._hub.subscriber(connection_id)
        except KeyError:
            raise SubscriberClosed(connection_id) from None
        await bring_up_to_date(
            subscriber,
            key,
            read_by_key=self._read_by_key,
            read_stream=self._read_stream,
            published=self._published,
        )

    def _look_for(self, key: RequestKey, settle: float) -> None:
        """Look for the request's start in the log (`_start_if_recorded`) unless it runs or ran here,
        for `settle` seconds more if it is not there yet: one look per request, which a later
        attempt extends."""
        if key in self._running or key in self._launched:
            return
        until = asyncio.get_running_loop().time() + settle
        looking = self._unsettled.get(key)
        self._unsettled[key] = until if looking is None else max(looking, until)
        if looking is None:
            self._background.spawn(self._start_if_recorded(key), "ai-unsettled")

    async def _start_if_recorded(self, key: RequestKey) -> None:
        """Run the request if the log holds its start, committed by this node, not ended, and not run
        here: a start whose commit failed may be there all the same, and a retry of it is a Duplicate
        that starts nothing. A start not there is looked for again until the time `_unsettled` holds
        (when the last failed attempt has surely settled); while the log cannot be read, until it
        can, more slowly. The job is the recorded request's, on the sheet as it is now."""
        loop = asyncio.get_running_loop()
        job: AiJob | None = None
        unreadable = 0
        try:
            while True:
                abandoned_before = self._abandoned_count
                try:
                    found = await self._recorded_start(key)
                    job = None if found is None else await self._job_of(found)
                except StoreUnavailable:
                    unreadable += 1
                    await asyncio.sleep(min(UNREADABLE_POLL_MAX_SECONDS, SETTLE_POLL_SECONDS * unreadable))
                    continue
                if job is not None or loop.time() >= self._unsettled[key]:
                    break  # found, or not committed: the client's retry records and runs it
                await asyncio.sleep(SETTLE_POLL_SECONDS)
        finally:
            del self._unsettled[key]
        if job is not None and self._claim(key):
            await self._launch(key, job, abandoned_before)

    async def _recorded_start(self, key: RequestKey) -> RecordedEvent | None:
        """The request's start if this node committed it and it has not ended."""
        user_id, request_id = key
        stream = user_stream(user_id)
        found = await self._read_by_key(user_id, idempotency_key(request_id), stream)
        if found is None or found.metadata.get("node") != self._node_id:
            return None
        return None if await self._read_by_key(user_id, end_key(request_id), stream) is not None else found

    async def _job_of(self, started: RecordedEvent) -> AiJob:
        return await recorded_job(started, self._read_stream, self._sheet_rooms.room_of)

    async def _claim_looked_for(self, key: RequestKey) -> bool:
        """A cancel of a request this node looks for: whether it has the start to end (this node's,
        not ended, and now never run), or stopped the run a look or a retry started meanwhile."""
        if key not in self._unsettled:
            return False
        found = await self._recorded_start(key)
        if found is not None and self._claim(key):
            return True
        return await self.stop_run(*key)

    async def cancel(
        self, actor: Actor, connection_id: str, request_id: str, *, client_msg_id: str | None = None
    ) -> None:
        """Stop a running request and record `AiCancelled` (-> `ai_error` with code CANCELLED)."""
        authorize(actor, "ai_cancel")
        user_id = actor.user_id
        # Elsewhere, the node running it stops it and records the cancellation itself, so that it is
        # recorded even if its answer never reaches this node; this one's is then a Duplicate. A
        # retry (the same client_msg_id) after such a lost answer finds the cancellation recorded.
        if (
            not await self.stop_run(user_id, request_id)
            and not self._cancel_pending(user_id, request_id, client_msg_id)
            and not await self._claim_looked_for((user_id, request_id))
            and not (client_msg_id is not None and await self._cancelled(user_id, request_id, client_msg_id))
            and not await self._stop_elsewhere(user_id, request_id, client_msg_id)
        ):
            raise NotFound(f"no running AI request {request_id!r}", request_id=request_id)
        origin = Origin.of(self._node_id, actor, connection_id, client_msg_id)
        outcome = await self._background.record(self._cancellation(user_id, request_id, origin))
        if isinstance(outcome, Duplicate):  # recorded by the node that ran it: its ai_error comes first
            await self._published(outcome)
        await self._ack(connection_id, client_msg_id, outcome)

    async def cancel_here(self, user_id: str, request_id: str, client_msg_id: str | None) -> bool:
        """Another node's `ai_cancel` of a run on this node: stop it and record the cancellation;
        whether it ran here. Stopped is stopped: a record that fails is tried again in the background
        (the asking node's own record is the same ending)."""
        if not (
            await self.stop_run(user_id, request_id) or await self._claim_looked_for((user_id, request_id))
        ):
            return self._cancel_pending(user_id, request_id, client_msg_id)
        origin = Origin(self._node_id, user_id, client_msg_id=client_msg_id)
        with contextlib.suppress(Exception):  # logged, and tried again in the background
            await self._background.record(self._cancellation(user_id, request_id, origin))
        return True

    def abandon_runs(self) -> None:
        """Stop every run: the node was taken for dead, and a survivor records their endings
        (engine/cluster/reaper.py); a run going on would add steps after them. Their endings are
        recorded here too, under the same key, for a start the survivor's reading missed (a Duplicate
        otherwise), in the background: the node registers again only after this returns."""
        tasks, self._running = self._running, {}
        self._abandoned_count += 1
        for task in tasks.values():
            task.cancel()
            self._background.adopt(task)
        if tasks:
            self._end_lost(sorted(tasks))

    def _end_lost(self, keys: list[RequestKey]) -> None:
        endings = [
            AiFailed(user_id, request_id, NODE_LOST_ERROR).new(
                Origin(self._node_id, user_id),
                key=end_key(request_id),
                request_id=request_id,
                lost_node=self._node_id,
            )
            for user_id, request_id in keys
        ]
        self._background.record_later(endings, "ai-lost-endings")

    async def _cancelled(self, user_id: str, request_id: str, client_msg_id: str) -> bool:
        """Whether this `ai_cancel` (its client_msg_id) was already recorded."""
        return _is_cancel(
            await self._read_by_key(user_id, end_key(request_id), user_stream(user_id)), client_msg_id
        )

    def _cancel_pending(self, user_id: str, request_id: str, client_msg_id: str | None) -> bool:
        """Whether this cancel (its client_msg_id) stopped a run here whose cancellation is still being
        recorded in the background: its retry is the same cancel, not one of a finished request."""
        pending = self._background.unrecorded(user_id, end_key(request_id))
        return client_msg_id is not None and _is_cancel(pending, client_msg_id)

    def _cancellation(self, user_id: str, request_id: str, origin: Origin) -> NewEvent:
        return AiCancelled(user_id, request_id, CANCEL_REASON).new(origin, key=end_key(request_id))

    async def stop_run(self, user_id: str, request_id: str) -> bool:
        """Stop the request's run if it is running on this node, and wait until it has; whether it was.
        Records nothing: its callers record the cancellation."""
        task = self._running.pop((user_id, request_id), None)
        if task is None:
            return False
        task.cancel()
        await asyncio.wait([task])
        return True

    async def stop(self) -> None:
        """Cancel every running request and record each as failed: the server is shutting down.
        Starts still being recorded, which end themselves once acked, and endings still being recorded
        in the background get `STOP_WAIT_SECONDS` together; then each start still in flight or looked
        for gets one last look, and an ending given up one last try (those of a node taken for dead
        are recorded by a survivor too)."""
        self._stopping = self._background.closed = True
        tasks, self._running = self._running, {}
        for task in tasks.values():
            task.cancel()
        if tasks:
            await asyncio.wait(tasks.values())
        loop = asyncio.get_running_loop()
        until = loop.time() + STOP_WAIT_SECONDS
        if self._starting:
            await asyncio.wait(list(self._starting), timeout=STOP_WAIT_SECONDS)
        pending = await self._background.wait(max(0.0, until - loop.time()))
        # Looks still going on, cancelled now, and starts whose answer has not come back (or whose ack
        # waits): a start of this node's that did commit ends, whoever else records its ending.
        unsettled = {*self._unsettled, *self._starting.values()}
        await self._background.cancel(pending)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_WAIT_SECONDS):
                for key in sorted(unsettled):
                    await self._end_if_recorded(key)
        await self._background.last_tries()
        for user_id, request_id in sorted(tasks):
            await self._record_at_shutdown(AiFailed(user_id, request_id, SHUTDOWN_ERROR))

    async def _end_if_recorded(self, key: RequestKey) -> None:
        """Record the request's shutdown ending if the log holds its start, committed by this node and
        not ended. Unclaimed or not: nothing runs once the node stops, and the end key keeps a second
        ending (its request's own, once acked) out of the log."""
        user_id, request_id = key
        try:
            found = await self._recorded_start(key)
        except StoreUnavailable as exc:
            log.error("could not tell whether AI request %r was recorded, at shutdown: %s", request_id, exc)
            return
        if found is not None:
            self._claim(key)  # a look or a retry that ends later has nothing to start
            await self._record_at_shutdown(AiFailed(user_id, request_id, SHUTDOWN_ERROR))

    async def _record_at_shutdown(self, failed: AiFailed) -> None:
        try:
            await self._steps.record(failed)
        except StoreUnavailable as exc:
            log.error("could not record the end of AI request %r at shutdown: %s", failed.request_id, exc)

    def _forget(self, key: RequestKey) -> None:
        """A run that has its answer, or ended: a cancel from now on finds nothing to stop."""
        task = self._running.get(key)
        if task is not None and task is asyncio.current_task():
            del self._running[key]

    async def _ack(self, connection_id: str, client_msg_id: str | None, outcome: AppendOutcome) -> None:
        await acknowledge(self._reply, connection_id, client_msg_id, outcome)


def _is_cancel(ending: NewEvent | RecordedEvent | None, client_msg_id: str) -> bool:
    """Whether `ending` is the cancellation an `ai_cancel` with this client_msg_id recorded."""
    return (
        ending is not None
        and ending.type == AI_CANCELLED
        and ending.metadata.get("client_msg_id") == client_msg_id
    )


__all__ = ["AiRunner", "idempotency_key"]
