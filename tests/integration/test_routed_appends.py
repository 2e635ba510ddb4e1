"""Routed appends on a real NATS and the real PostgreSQL: each partition of a log of four written by
the node holding it, the other node handing it its batches; what nobody holds written where it was
asked for; an answer that never comes failing like a dropped commit, with nothing written."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import nats
import pytest
from nats.aio.msg import Msg

from engine.cluster.bus import NatsBus, log_subject
from engine.cluster.routed_appends import AppendRouting, append_subject_for
from engine.log.appender import Appender
from engine.log.partition_locks import ALONE, Standing
from engine.log.partitions import partition_of
from engine.log.store import EventStore, create_db_engine
from engine.model.errors import EngineError, StoreUnavailable
from engine.model.events import Committed, Conflict, Duplicate, NewEvent, RecordedEvent
from tests.api.conftest import fresh_database

PARTITIONS = 4
TIMEOUT = 1.0  # a commit's bound; short, so that the unanswered batch fails quickly
PATIENT_TIMEOUT = 5.0  # for a test whose failure is a batch never answered, not a slow one
HANG_GUARD = 30.0  # bounds a wait that would otherwise hang; not a speed check


@dataclass
class Node:
    appender: Appender
    bus: NatsBus
    routing: AppendRouting
    delivered: list[RecordedEvent] = field(default_factory=list)


@pytest.fixture
async def store(server_url: str) -> AsyncIterator[EventStore]:
    async with fresh_database(server_url, PARTITIONS) as url:
        db = create_db_engine(url, pool_size=PARTITIONS * 2 + 4)
        try:
            yield EventStore(db)
        finally:
            await db.dispose()


async def start_node(
    store: EventStore,
    url: str,
    name: str,
    share: Callable[[], Standing],
    *,
    count_known: bool = True,
    bound: float = TIMEOUT,
) -> Node:
    subject = await log_subject(store.db_engine)

    async def stem() -> str:
        return subject

    bus = NatsBus(url, stem, name)
    await bus.start(lambda _events: None)
    # Without the count, the appender learns it at its first append (a node started during an outage).
    appender = Appender(store, partitions=PARTITIONS if count_known else None, timeout=bound)
    await appender.start()
    delivered: list[RecordedEvent] = []
    routing = AppendRouting(
        store.db_engine,
        appender,
        bus,
        share=share,
        timeout=bound,
        deliver=delivered.extend,
        poll_seconds=0.1,
    )
    await routing.start()
    appender.route = routing
    return Node(appender, bus, routing, delivered)


async def stop_node(node: Node) -> None:
    await node.appender.stop()
    await node.routing.stop()
    await node.bus.stop()


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while not condition():  # noqa: ASYNC110 (state of other tasks, polled)
            await asyncio.sleep(0.05)


def room_in(partition: int, tag: str) -> str:
    n = 0
    while partition_of(f"room:{tag}-{n}", PARTITIONS) != partition:
        n += 1
    return f"room:{tag}-{n}"


@pytest.fixture
async def two_nodes(store: EventStore, nats_url: str) -> AsyncIterator[tuple[Node, Node]]:
    one = await start_node(store, nats_url, "one", lambda: Standing(0, 2))
    await until(lambda: len(one.routing.held) == 2 and one.routing.serving == one.routing.held)
    two = await start_node(store, nats_url, "two", lambda: Standing(1, 2))
    await until(lambda: len(two.routing.held) == 2 and two.routing.serving == two.routing.held)
    try:
        yield one, two
    finally:
        await stop_node(one)
        await stop_node(two)


async def test_each_partition_is_written_by_its_holder(
    store: EventStore, two_nodes: tuple[Node, Node]
) -> None:
    one, two = two_nodes
    tag = uuid.uuid4().hex[:6]
    events = [
        NewEvent(room_in(p, tag), "RoutedProbe", {"i": i}) for i in range(10) for p in range(PARTITIONS)
    ]
    outcomes = await asyncio.gather(*(one.appender.append(e) for e in events))
    assert all(isinstance(o, Committed) for o in outcomes)

    # Node one's own writers committed only its partitions; node two committed the rest for it.
    for partition, lane in one.appender._lanes.items():
        written_here = sum(lane.writer.paths.values())
        assert (written_here > 0) == (partition in one.routing.held)
    theirs = [e for e in events if partition_of(e.stream_id, PARTITIONS) in two.routing.held]
    assert one.appender.forwarded == two.routing.written_for_others == len(theirs) == 20
    assert one.routing.forwards >= 1 and one.routing.not_taken == 0
    # Node two publishes to its own connections what it wrote for node one (the bus never echoes).
    committed = [o for o in outcomes if isinstance(o, Committed)]
    assert sorted((e.partition, e.position) for e in two.delivered) == sorted(
        (o.partition, o.position) for o, e in zip(committed, events, strict=True) if e in theirs
    )

    # The log holds each event once, gapless and in each stream's order.
    for partition in range(PARTITIONS):
        read = await store.read_all(0, 1000, partition)
        assert [e.position for e in read] == list(range(1, len(read) + 1))
        assert [e.data["i"] for e in read if e.type == "RoutedProbe"] == list(range(10))


async def test_decisions_made_by_the_holder_come_back(two_nodes: tuple[Node, Node]) -> None:
    one, two = two_nodes
    (partition,) = sorted(two.routing.held)[:1]
    stream = room_in(partition, uuid.uuid4().hex[:6])
    first = NewEvent(stream, "RoutedProbe", {"i": 0}, idempotency_key="k-1", user_id="u1")
    committed = await one.appender.append(first)
    again = await one.appender.append(first)
    conflict = await one.appender.append(NewEvent(stream, "RoutedProbe", {"i": 1}, expected_version=0))
    assert isinstance(committed, Committed) and committed.partition == partition
    assert isinstance(again, Duplicate) and again.position == committed.position
    assert conflict == Conflict(expected_version=0, actual_version=1)
    assert one.appender.forwarded == 3


async def test_an_event_the_holder_cannot_write_fails_alone(two_nodes: tuple[Node, Node]) -> None:
    one, two = two_nodes
    stream = room_in(sorted(two.routing.held)[0], uuid.uuid4().hex[:6])
    events = [
        NewEvent(stream, "RoutedProbe", {"i": i}) for i in ("one", "bad\u0000", "three")
    ]  # jsonb: no NUL
    queued = [one.appender.submit(e) for e in events]
    assert all(q is not None for q in queued)
    first, bad, third = await asyncio.gather(*(q for q in queued if q is not None), return_exceptions=True)
    assert isinstance(first, Committed) and isinstance(third, Committed)
    assert third.stream_version == first.stream_version + 1
    assert type(bad) is EngineError and "could not append" in bad.message
    assert one.appender.forwarded == 3 and one.routing.forwards == 1


async def test_a_holder_that_does_not_know_the_log_yet_takes_no_batch(
    store: EventStore, nats_url: str
) -> None:
    late = await start_node(store, nats_url, "late", lambda: ALONE, count_known=False)  # takes all
    await until(lambda: late.routing.held == late.routing.serving == set(range(PARTITIONS)))
    asker = await start_node(store, nats_url, "asker", lambda: ALONE)  # finds none free
    try:
        outcome = await asker.appender.append(NewEvent(room_in(0, "late"), "RoutedProbe", {"i": 0}))
        assert isinstance(outcome, Committed)
        assert asker.routing.not_taken == 1 and late.routing.written_for_others == 0
    finally:
        await stop_node(asker)
        await stop_node(late)


class ElsewhereRoute:
    """A route that places every partition on another node and takes no batch: what a holder that
    has just lost its partitions sees."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def owns(self, partition: int) -> bool:
        return False

    async def forward(self, partition: int, events: Sequence[NewEvent]) -> None:
        self.asked.append(len(events))


async def test_a_batch_taken_for_another_node_is_never_handed_on(store: EventStore) -> None:
    route = ElsewhereRoute()
    appender = Appender(store, partitions=PARTITIONS, timeout=TIMEOUT, route=route)
    await appender.start()
    try:
        stream = room_in(1, uuid.uuid4().hex[:6])
        taken = appender.submit_many([NewEvent(stream, "RoutedProbe", {"i": i}) for i in range(3)], here=True)
        assert taken is not None
        assert all(isinstance(o, Committed) for o in await asyncio.gather(*taken))
        assert route.asked == []  # written where it was taken
        own = await appender.append(NewEvent(stream, "RoutedProbe", {"i": 3}))
        assert isinstance(own, Committed) and own.stream_version == 4
        assert route.asked == [1]  # this node's own event was offered to the holder first
    finally:
        await appender.stop()


async def test_nobody_holding_a_partition_means_it_is_written_here(store: EventStore, nats_url: str) -> None:
    alone = await start_node(store, nats_url, "alone", lambda: Standing(0, 2))  # holds two of four
    try:
        await until(lambda: len(alone.routing.held) == 2)
        (free,) = sorted(set(range(PARTITIONS)) - alone.routing.held)[:1]
        outcome = await alone.appender.append(NewEvent(room_in(free, "free"), "RoutedProbe", {"i": 0}))
        assert isinstance(outcome, Committed) and outcome.partition == free
        assert alone.routing.not_taken == 1 and alone.appender.forwarded == 0
    finally:
        await stop_node(alone)


async def test_an_answer_that_never_comes_fails_the_batch_and_writes_nothing(
    store: EventStore, nats_url: str
) -> None:
    alone = await start_node(store, nats_url, "alone", lambda: Standing(0, 2))
    silent = await nats.connect(nats_url)
    try:
        await until(lambda: len(alone.routing.held) == 2 and alone.bus.subject is not None)
        (free,) = sorted(set(range(PARTITIONS)) - alone.routing.held)[:1]
        heard: list[Msg] = []

        async def hear(msg: Msg) -> None:
            heard.append(msg)  # and never answer, as a writer that froze

        assert alone.bus.subject is not None
        await silent.subscribe(f"{append_subject_for(alone.bus.subject)}.{free}", cb=hear)
        await silent.flush()
        head = (await store.heads())[free]
        with pytest.raises(StoreUnavailable, match="client_msg_id"):
            await alone.appender.append(NewEvent(room_in(free, "silent"), "RoutedProbe", {"i": 0}))
        assert len(heard) == 1
        assert (await store.heads())[free] == head
    finally:
        await silent.close()
        await stop_node(alone)


async def test_batches_on_their_way_while_partitions_change_hands_are_all_answered(
    store: EventStore, nats_url: str
) -> None:
    """Every partition changes hands ten times while both nodes append to all of them. A holder that
    hands a partition over still answers the batches the bus already routed to it: unsubscribing
    dropped them, and their askers failed after the whole timeout with nothing written."""
    nothing = Standing(PARTITIONS, PARTITIONS + 1)  # a share of no partition
    standings = {"one": ALONE, "two": nothing}
    # Eight senders' commits on a busy machine can outlast TIMEOUT; a dropped batch waits out any bound.
    one = await start_node(store, nats_url, "one", lambda: standings["one"], bound=PATIENT_TIMEOUT)
    two = await start_node(store, nats_url, "two", lambda: standings["two"], bound=PATIENT_TIMEOUT)
    rooms = [room_in(p, uuid.uuid4().hex[:6]) for p in range(PARTITIONS)]
    failures: list[BaseException] = []
    done = asyncio.Event()

    async def keep_appending(node: Node, sender: int) -> int:
        sent = 0
        while not done.is_set():
            try:
                await node.appender.append(NewEvent(rooms[sent % PARTITIONS], "RoutedProbe", {"s": sender}))
            except EngineError as exc:
                failures.append(exc)
            sent += 1
        return sent

    def writes_all(node: Node) -> bool:
        return node.routing.held == node.routing.serving == set(range(PARTITIONS))

    try:
        senders = [asyncio.create_task(keep_appending(n, i)) for i, n in enumerate([one, two] * 4)]
        for _ in range(10):
            holder = one if standings["one"] is ALONE else two
            await until(lambda holder=holder: writes_all(holder))
            standings["one"], standings["two"] = standings["two"], standings["one"]
        done.set()
        sent = await asyncio.gather(*senders)
        assert failures == []
        assert sum(sent) > 0 and one.appender.forwarded > 0 and two.appender.forwarded > 0
    finally:
        done.set()
        await stop_node(one)
        await stop_node(two)


async def test_a_drain_cut_short_leaves_no_subscription_behind(nats_url: str) -> None:
    """A partition's subscription given up, whose drain does not end within its bound (here a batch
    whose handling never ends; a reconnect in the middle of the drain does the same), is forgotten by
    the client all the same: nats-py would otherwise subscribe it again at its next reconnect, and the
    node would stay in the partition's queue group for good."""
    client = await nats.connect(nats_url)
    never = asyncio.Event()

    async def handling_that_never_ends(_msg: Msg) -> None:
        await never.wait()

    subject = f"routed-leave-{uuid.uuid4().hex[:8]}"
    subscription = await client.subscribe(subject, cb=handling_that_never_ends)
    try:
        await client.publish(subject, b"batch")
        await client.flush()
        await AppendRouting._leave(client, subscription, 0.2)
        assert subscription._id not in client._subs
    finally:
        never.set()
        await client.close()


async def test_a_subscription_left_is_gone_from_the_server_too(nats_url: str) -> None:
    """Leaving tells the server (a batch published afterwards finds no responder, so its asker writes
    it at once) and not only the client: a subscription forgotten by the client alone would go on
    taking batches that nobody answers."""
    holder, asker = await nats.connect(nats_url), await nats.connect(nats_url)
    subject = f"routed-left-{uuid.uuid4().hex[:8]}"

    async def answer(msg: Msg) -> None:
        await msg.respond(b"taken")

    try:
        subscription = await holder.subscribe(subject, queue=subject, cb=answer)
        await holder.flush()
        async with asyncio.timeout(HANG_GUARD):
            while True:  # the server has been seen to answer "no responders" just after a subscribe
                with contextlib.suppress(nats.errors.NoRespondersError):
                    reply = await asker.request(subject, b"batch", timeout=HANG_GUARD)
                    break
                await asyncio.sleep(0.05)
        assert reply.data == b"taken"
        await AppendRouting._leave(holder, subscription, HANG_GUARD)
        assert subscription._id not in holder._subs
        with pytest.raises(nats.errors.NoRespondersError):
            await asker.request(subject, b"batch", timeout=HANG_GUARD)
    finally:
        await holder.close()
        await asker.close()
