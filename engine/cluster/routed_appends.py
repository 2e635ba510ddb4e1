"""Routed appends: each log partition written by one node of the cluster, the others handing it their
batches on NATS (`ROUTE_APPENDS`, with `NATS_URL` and a log of several partitions).

Why: when every node writes every partition, each partition's head is contended by all of them. A
writer that finds its head moved by another node takes the locked path, which holds the head's row
lock across several round trips while the others queue (docs/performance.md, "Appends from several
processes"): each node added lowered the cluster's append rate. With one writer per partition in the
whole cluster every batch commits on the head its writer already knows.

Who writes what: each node holds session advisory locks on its share of the partitions
(engine/log/partition_locks.py, the live nodes that route sharing them as all share projecting), and
subscribes to `collab.<log id>.append.<partition>` for each one it holds. A node's appender lane for a
partition it does not hold sends its batch there as a NATS request (engine/log/appender.py `Route`);
the holder queues the batch in its own lane, behind and beside its own callers' events, commits it,
tells the cluster of the commit as it tells of its own (the bus), and answers each item's outcome.

What can go wrong, and what happens then:
- nobody answers (no holder yet, the holder's subscription not up, the bus away, a batch too large
  for one message, the holder stopping or no longer holding the partition): nothing was written, and
  the lane writes the batch itself. That is always correct, because every writer checks its
  partition's head: routing moves where a batch is written, never what is decided for it.
- an event fails in the holder's lane (its database unreachable, a poisoned event): that event's
  caller gets the error it would have got from its own node's lane, and the batch's other events
  their own outcomes.
- the answer does not come in time (the holder's queue and commit, each bounded by
  `APPEND_TIMEOUT_SECONDS`, so about twice that) or cannot be read: the outcome is unknown, exactly
  as when a connection drops during COMMIT, and the callers get `StoreUnavailable` ("retry with the
  same client_msg_id"; a retried message is answered with its original seq).

Each partition's subject is subscribed in a queue group, so while a partition changes hands and two
nodes listen on it for a moment, a batch still reaches one of them; a node handing a partition over
drains its subscription, so what the bus routed to it until then is still answered (not taken: the
asker writes it at once); and the node that took a batch writes it even if it has lost the partition
since, so a batch is handed over at most once.

A node that does not route (its `ROUTE_APPENDS` off, during a rolling change of it) writes its own
appends to every partition and holds none: its row says so, and the others leave it out when they
share out the writing (engine/cluster/registry.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.cluster.bus import NatsBus
from engine.fanout.live import recorded
from engine.log.appender import Appender, RouteLost
from engine.log.lifecycle import STOP_TIMEOUT, cancel_and_wait
from engine.log.partition_locks import Standing, balance
from engine.log.partitions import read_heads
from engine.model import errors
from engine.model.errors import EngineError, Rejected, StoreUnavailable
from engine.model.events import (
    AppendOutcome,
    CellWrite,
    Committed,
    Conflict,
    Duplicate,
    NewEvent,
    RecordedEvent,
    Refused,
)

log = logging.getLogger(__name__)

# How long a partition's subscription given up still answers: stray batches arrive within milliseconds.
_STRAYS_LINGER = 0.5

# The advisory locks that elect a partition's writer, `(LOCK_CLASS, partition)`; the projector
# runner's are another class, so a node may project partitions it does not write.
LOCK_CLASS: Final = 0x636F6C77  # "colw"
_NOT_TAKEN: Final = b'{"taken":false}'


def append_subject_for(log_subject: str) -> str:
    """The stem of the append subjects, beside the bus's `collab.<log id>.log`."""
    return log_subject.removesuffix(".log") + ".append"


# The wire: a batch is a JSON list of events, an answer a list of outcomes, each a short list.


def encode_batch(events: Sequence[NewEvent]) -> bytes:
    return orjson.dumps(
        [
            [
                e.stream_id,
                e.type,
                e.data,
                e.metadata,
                e.expected_version,
                e.idempotency_key,
                e.user_id,
                [
                    [c.sheet_id, c.cell_id, c.room_id, c.requested_version, c.value, c.formula]
                    for c in e.cells
                ],
            ]
            for e in events
        ]
    )


def decode_batch(payload: bytes) -> list[NewEvent]:
    """ValueError when the payload is not a batch."""
    try:
        items = orjson.loads(payload)
        if not isinstance(items, list):
            raise TypeError("not a list")
        return [_decoded_event(*item) for item in items]
    except Exception as exc:
        raise ValueError(f"not a batch: {type(exc).__name__}: {exc}") from exc


def _decoded_event(
    stream_id: str,
    type_: str,
    data: dict[str, Any],
    metadata: dict[str, Any],
    expected_version: int | None,
    idempotency_key: str | None,
    user_id: str | None,
    cells: list[list[Any]],
) -> NewEvent:
    if not (isinstance(stream_id, str) and isinstance(type_, str)):
        raise TypeError("a stream id and a type are strings")
    if not (isinstance(data, dict) and isinstance(metadata, dict)):
        raise TypeError("data and metadata are objects")
    return NewEvent(
        stream_id,
        type_,
        data,
        metadata,
        expected_version,
        idempotency_key,
        user_id,
        tuple(CellWrite(*cell) for cell in cells),
    )


def encode_outcomes(outcomes: Sequence[AppendOutcome | BaseException]) -> bytes:
    items: list[list[Any]] = []
    for o in outcomes:
        if isinstance(o, Committed):
            items.append(["c", o.position, o.stream_version, o.recorded_at.isoformat(), o.data, o.partition])
        elif isinstance(o, Duplicate):
            items.append(["d", o.position, o.stream_version, o.recorded_at.isoformat(), o.partition])
        elif isinstance(o, Conflict):
            items.append(["x", o.expected_version, o.actual_version])
        elif isinstance(o, Refused):
            error = o.error
            items.append(["r", type(error).__name__, error.message, error.details])
        else:  # the item failed in the writer's lane, alone or with its batch
            kind = "unavailable" if isinstance(o, StoreUnavailable) else "failed"
            items.append(["e", kind, f"{type(o).__name__}: {o}"])
    return orjson.dumps({"taken": True, "outcomes": items})


def decode_outcomes(payload: bytes) -> list[AppendOutcome | Exception] | None:
    """The outcomes of an answer, or None if the batch was not taken. ValueError when malformed."""
    try:
        answer = orjson.loads(payload)
        if not answer["taken"]:
            return None
        return [_decoded_outcome(item) for item in answer["outcomes"]]
    except Exception as exc:
        raise ValueError(f"not an answer: {type(exc).__name__}: {exc}") from exc


def _decoded_outcome(item: list[Any]) -> AppendOutcome | Exception:
    kind = item[0]
    if kind == "c":
        _, position, version, at, data, partition = item
        return Committed(position, version, datetime.fromisoformat(at), data, partition)
    if kind == "d":
        _, position, version, at, partition = item
        return Duplicate(position, version, datetime.fromisoformat(at), partition)
    if kind == "x":
        return Conflict(item[1], item[2])
    if kind == "r":
        _, name, message, details = item
        found = getattr(errors, name, None)
        kind_of = found if isinstance(found, type) and issubclass(found, Rejected) else Rejected
        return Refused(kind_of(message, **details))
    if kind == "e":
        _, failure, message = item
        if failure == "unavailable":
            return StoreUnavailable(f"the partition's writer: {message}")
        return EngineError(f"the partition's writer could not append the event: {message}")
    raise ValueError(f"unknown outcome {kind!r}")


class AppendRouting:
    """This node's side of routing: the partitions it writes (`owns`), the batches it hands to their
    writers (`forward`), and the batches it writes for the other nodes."""

    def __init__(
        self,
        db_engine: AsyncEngine,
        appender: Appender,
        bus: NatsBus,
        *,
        share: Callable[[], Standing],
        timeout: float,
        deliver: Callable[[list[RecordedEvent]], None],
        poll_seconds: float = 1.0,
    ) -> None:
        """`deliver` publishes to this node's own connections what it wrote for other nodes: the bus
        carries those commits to everyone else, but never back to the node that sent them."""
        self.db_engine = db_engine
        self.deliver = deliver
        self.appender = appender
        self.bus = bus
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self.held: set[int] = set()  # the partitions whose lock this node holds: it writes them
        self.forwards = 0  # batches handed to another node and answered
        self.written_for_others = 0  # events committed here for another node's callers
        self.not_taken = 0  # batches handed over that nobody took: written by their own node
        self._share = share
        self._subscriptions: dict[int, Subscription] = {}
        self._subscribed_on: Client | None = None
        self._answering: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def owns(self, partition: int) -> bool:
        return partition in self.held

    @property
    def serving(self) -> frozenset[int]:
        """The partitions whose batches this node takes from the others now (subscribed)."""
        return frozenset(self._subscriptions)

    def figures(self) -> dict[str, object]:
        return {
            "writes_partitions": sorted(self.held),
            "batches_forwarded": self.forwards,
            "batches_not_taken": self.not_taken,
            "events_written_for_others": self.written_for_others,
        }

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="append-routing")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task, STOP_TIMEOUT)
        await asyncio.gather(*(cancel_and_wait(t, STOP_TIMEOUT) for t in list(self._answering)))

    # Handing a batch over.

    async def forward(
        self, partition: int, events: Sequence[NewEvent]
    ) -> list[AppendOutcome | Exception] | None:
        client = self.bus.client
        if client is None or not client.is_connected or self.bus.subject is None:
            return None
        subject = f"{append_subject_for(self.bus.subject)}.{partition}"
        try:
            reply = await client.request(subject, encode_batch(events), timeout=self.timeout)
        except (nats.errors.NoRespondersError, nats.errors.MaxPayloadError):
            self.not_taken += 1
            return None  # sent to nobody: nothing was written
        except Exception as exc:
            raise RouteLost(f"no answer from partition {partition}'s writer: {type(exc).__name__}") from exc
        try:
            outcomes = decode_outcomes(reply.data)
        except ValueError as exc:
            raise RouteLost(f"partition {partition}'s writer answered {exc}") from exc
        if outcomes is None:
            self.not_taken += 1
            return None
        if len(outcomes) != len(events):
            raise RouteLost(f"partition {partition}'s writer answered {len(outcomes)} of {len(events)}")
        self.forwards += 1
        return outcomes

    # Writing for the others.

    async def _received(self, msg: Msg) -> None:
        partition = int(msg.subject.rsplit(".", 1)[1])
        if not self.owns(partition):
            # A partition handed over, its subscription draining: answered here, so the answer has
            # left before the drain ends (the stop cancels the tasks below) and the asker writes it.
            with contextlib.suppress(Exception):
                await msg.respond(_NOT_TAKEN)
            return
        # Answered in a task of its own: the subscription's next batch need not wait for this commit.
        task = asyncio.create_task(self._answer_or_log(msg, partition))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer_or_log(self, msg: Msg, partition: int) -> None:
        try:
            await self._answer(msg, partition)
        except Exception as exc:  # the bus went away before the answer left: the asker's request times out
            log.warning("append routing: a batch's answer was not sent: %s: %s", type(exc).__name__, exc)

    async def _answer(self, msg: Msg, partition: int) -> None:
        try:
            events = decode_batch(msg.data)
        except ValueError as exc:  # another release's node: it writes its batch itself
            log.warning("a batch for partition %d could not be read: %s", partition, exc)
            await msg.respond(_NOT_TAKEN)
            return
        queued = None
        # Stopping, full, or the log's partition count not known yet: nothing is queued.
        with contextlib.suppress(StoreUnavailable):
            if self.owns(partition) and all(self._partition(e) == partition for e in events):
                queued = self.appender.submit_many(events, here=True)
        if queued is None:
            await msg.respond(_NOT_TAKEN)
            return
        results = await asyncio.gather(*queued, return_exceptions=True)
        self.written_for_others += sum(1 for r in results if isinstance(r, Committed))
        # Its own connections first: the bus never brings this node its own commits, and the asker's
        # answer must not wait on anything that can fail.
        self.deliver(
            [recorded(e, r) for e, r in zip(events, results, strict=True) if isinstance(r, Committed)]
        )
        await msg.respond(encode_outcomes(results))

    def _partition(self, event: NewEvent) -> int:
        return self.appender.partition_of(event.stream_id)

    # Holding partitions.

    async def _run(self) -> None:
        while True:
            try:
                await self._hold()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or the bus is away: nothing held, try again
                log.error("append routing: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(self.poll_seconds)

    async def _hold(self) -> None:
        conn = await self.db_engine.connect()
        try:
            while True:
                before = set(self.held)
                await balance(conn, LOCK_CLASS, self.held, await read_heads(conn), self._share())
                if self.held != before:
                    log.info("append routing: this node writes partitions %s", sorted(self.held))
                await self._subscribe()
                await asyncio.sleep(self.poll_seconds)
        finally:
            self.held.clear()
            # Ending the session is what releases the locks, also when the connection broke; first,
            # so that a drain below (bounded, as a stop is) never keeps them from the other nodes.
            with contextlib.suppress(Exception):
                await conn.invalidate()
            await conn.close()
            with contextlib.suppress(Exception):
                await self._subscribe(bound=1.0)

    async def _subscribe(self, bound: float | None = None) -> None:
        """Subscribe to the append subject of each partition held, and of no other; a subscription
        given up is drained for at most `bound` seconds (the routing timeout by default)."""
        client = self.bus.client
        if client is not self._subscribed_on:  # a new client (the bus connected late): none carry over
            self._subscriptions, self._subscribed_on = {}, client
        if client is None or self.bus.subject is None:
            return
        stem = append_subject_for(self.bus.subject)
        leaving = [self._subscriptions.pop(p) for p in list(self._subscriptions) if p not in self.held]
        for partition in sorted(self.held - self._subscriptions.keys()):
            # A queue group: while a partition changes hands two nodes may listen on its subject for a
            # moment, and each batch must still reach only one of them.
            subject = f"{stem}.{partition}"
            self._subscriptions[partition] = await client.subscribe(subject, queue=subject, cb=self._received)
        bound = self.timeout if bound is None else bound
        await asyncio.gather(*(self._leave(client, subscription, bound) for subscription in leaving))

    @staticmethod
    async def _leave(client: Client, subscription: Subscription, bound: float) -> None:
        """Drained, not unsubscribed: the batches the bus routed here before it heard that this node
        stopped listening are still answered (not taken, so their askers write them at once).
        Unsubscribing dropped them, and their askers failed after the whole timeout. Off the bus
        nothing more can arrive, and a drain would wait."""
        try:
            with contextlib.suppress(Exception):
                if client.is_connected:
                    await asyncio.wait_for(AppendRouting._drain(client, subscription), bound)
                else:
                    await subscription.unsubscribe()
        finally:
            # A drain cut short (a reconnect in its middle, its bound, a stop) leaves the client
            # holding the subscription, which it would subscribe again at its next reconnect: the
            # node would stay in the partition's queue group for good. nats-py has no public call.
            sid = subscription._id
            if sid in client._subs:
                subscription._stop_processing()
                client._remove_sub(sid)

    @staticmethod
    async def _drain(client: Client, subscription: Subscription) -> None:
        """nats-py's drain (unsubscribe, a round trip, the batches received until then answered), and
        then a while longer listening: the server can deliver a batch another node published as the
        unsubscribe arrived after the round trip that was to flush it (it matched the subscription
        before the unsubscribe and sent it after), and the client drops a message for a subscription
        it no longer knows. Answered as not taken instead, it is written by its asker at once; dropped,
        its asker waited out the whole timeout (seen once in a few dozen runs of ten handovers
        under load)."""
        await client._send_unsubscribe(subscription._id)
        await client.flush()
        await asyncio.sleep(_STRAYS_LINGER)
        await subscription._pending_queue.join()


__all__ = [
    "LOCK_CLASS",
    "AppendRouting",
    "append_subject_for",
    "decode_batch",
    "decode_outcomes",
    "encode_batch",
    "encode_outcomes",
]
