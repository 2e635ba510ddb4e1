"""`LogFollower`: how events other nodes commit reach this node's clients (docs/architecture.md).

After its commits a node sends at most one small NOTIFY per `notify_interval`, on its own connection
and never inside the append transaction (NOTIFY takes a database-wide lock at commit), and only while
it has live peers (engine/cluster/registry.py), naming the partitions it committed in (in a log of
one, just "commit <node>"). Each node keeps one LISTEN connection; a notification from another node
wakes its reader, which reads each named partition after the last position this node published there
and offers it to `DeliveryOrders` (engine/fanout/delivery_order.py), which publishes each partition
in position order.

Notifications are not durable (a dropped connection, a restarted server), so the reader also polls
every `poll_interval`: it reads every partition's head in one statement and then the partitions ahead
of what it published. A lost wake-up costs latency, never an event. Each read is an indexed range scan
on the primary key.

With a bus (`NATS_URL`, engine/cluster/bus.py) the events themselves reach the node, and it reads the
log only to repair: a gap that stays open `repair_after` seconds after it was seen (a bus message
lost or very late), and, every `poll_interval`, a partition's head ahead of what it published that is
still ahead `repair_after` later (a lost last message, a bus outage). No NOTIFY is sent for commits
then; the LISTEN connection still carries the other channels (engine/cluster/control.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import asyncpg

from engine.cluster.bus import NatsBus
from engine.cluster.registry import NodeRegistry
from engine.fanout.delivery_order import DeliveryOrders
from engine.fanout.live import recorded
from engine.log.lifecycle import STOP_TIMEOUT, cancel_and_wait
from engine.log.session_settings import session_settings
from engine.log.store import EventLog
from engine.model.events import Committed, NewEvent, RecordedEvent

log = logging.getLogger(__name__)

CHANNEL: Final = "collab_log"
_PAGE: Final = 1000
_HELLO: Final = "hello"
_BYE: Final = "bye"
_COMMIT: Final = "commit"


class LogFollower:
    def __init__(
        self,
        store: EventLog,
        orders: DeliveryOrders,
        dsn: str,
        registry: NodeRegistry,
        *,
        bus: NatsBus | None = None,
        poll_interval: float = 0.5,
        notify_interval: float = 0.003,
        retry_interval: float = 1.0,
        repair_after: float = 0.1,
    ) -> None:
        self.node_id = registry.node_id
        self.bus = bus
        self.poll_interval = poll_interval
        self.notify_interval = notify_interval
        self.retry_interval = retry_interval
        self.repair_after = repair_after
        self.notifications_sent = 0
        self.notifications_received = 0
        self.reads = 0  # range reads of the log
        self.head_reads = 0  # reads of every partition's head
        self._head_read_at = 0.0  # monotonic time of the last head read
        self._store = store
        self._orders = orders
        self._dsn = dsn
        self._registry = registry
        self._conn: Any = None  # asyncpg.Connection while listening
        self._wake = asyncio.Event()
        self._committed = asyncio.Event()  # set by `committed`, consumed by the one notifier task
        self._committed_in: set[int] = set()  # the partitions of this node's commits not yet announced
        self._announced: set[int] = set()  # the partitions other nodes announced commits in, unread
        # Without a bus: read every partition behind its head next (start, lost wake-ups, failed reads).
        self._read_every = True
        self._conn_lock = asyncio.Lock()  # asyncpg runs one query at a time per connection
        self._tasks: list[asyncio.Task[None]] = []
        self._channels: dict[str, Callable[[str], None]] = {}  # other channels this connection hears

    async def start(self) -> None:
        try:
            await self._listen()
        except Exception as exc:  # the database is away: `_keep_listening` retries until it is back
            log.warning("LISTEN connection failed, retrying: %s: %s", type(exc).__name__, exc)
        if self.bus is not None:
            await self.bus.start(self.offer_peers_events)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_loop(), name=f"log-follower:{self.node_id}"),
            loop.create_task(self._keep_listening(), name=f"log-listener:{self.node_id}"),
        ]
        if self.bus is None:
            self._tasks.append(loop.create_task(self._notify_loop(), name=f"log-notifier:{self.node_id}"))

    async def stop(self) -> None:
        await asyncio.gather(*(cancel_and_wait(task, STOP_TIMEOUT) for task in self._tasks))
        self._tasks = []
        await self._notify(_BYE)  # the node's routing and projecting have already let go
        if self.bus is not None:
            await self.bus.stop()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 2.0)
            self._conn = None

    def wake(self) -> None:
        """Read every partition behind its head now (a held own commit waits for the positions before
        it, a lost connection may have lost notifications)."""
        self._read_every = True
        self._wake.set()

    async def listen_also(self, channel: str, on_payload: Callable[[str], None]) -> None:
        """Hear `channel` on the LISTEN connection too, now and after every reconnect."""
        self._channels[channel] = on_payload
        async with self._conn_lock:
            conn = self._conn
            if conn is not None and not conn.is_closed():
                await conn.add_listener(channel, self._relay(on_payload))

    async def send(self, channel: str, payload: str) -> bool:
        """NOTIFY `channel` on the LISTEN connection; False while it is reconnecting."""
        async with self._conn_lock:
            conn = self._conn
            if conn is None or conn.is_closed():
                return False
            try:
                await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
            except Exception as exc:
                log.warning("NOTIFY on %s failed: %s: %s", channel, type(exc).__name__, exc)
                return False
            return True

    def committed(self, event: NewEvent, outcome: Committed) -> None:
        """This node committed `event`: send it on the bus, or wake the peers at most once per
        `notify_interval` so that they read it."""
        if self.bus is not None:
            self.bus.publish(recorded(event, outcome))
        elif self._registry.has_peers:
            self._committed_in.add(outcome.partition)
            self._committed.set()

    async def wait_for_peers(self, partition: int, position: int) -> None:
        """With a bus, give the partition's events before `position` up to `repair_after` seconds to
        arrive on it before the caller reads them from the log; without one (or while it is away),
        the log is the only way."""
        if self.bus is not None and self.bus.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.repair_after):
                    await self._orders.of(partition).wait_delivered(position)

    # Notifying.

    async def _notify_loop(self) -> None:
        """One sender, so NOTIFYs never overlap on the connection. The flag is cleared before each
        send: a commit during a send sets it again and is announced by the next one."""
        while True:
            await self._committed.wait()
            await asyncio.sleep(self.notify_interval)
            self._committed.clear()
            partitions, self._committed_in = self._committed_in, set()
            await self._notify(_COMMIT, partitions)

    async def _notify(self, kind: str, partitions: Iterable[int] = ()) -> None:
        """Send `<kind> <node>`, and the partitions when any is not 0: in a log of one the payload is
        what nodes of earlier versions send and understand."""
        payload = f"{kind} {self.node_id}"
        if any(partitions):
            payload += " " + ",".join(map(str, sorted(partitions)))
        async with self._conn_lock:
            conn = self._conn
            if conn is None or conn.is_closed():
                return  # the peers' polling covers it; the listener is reconnecting
            try:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
                self.notifications_sent += 1
            except Exception as exc:
                log.warning("NOTIFY failed (peers will poll): %s: %s", type(exc).__name__, exc)

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        kind, _, rest = payload.partition(" ")
        node, _, partitions = rest.partition(" ")
        if node == self.node_id:
            return
        self.notifications_received += 1
        if kind == _BYE:
            # Counted out at once, not at the next heartbeat read: the partitions it gave up are
            # shared among the others at their next look (nodes of earlier versions take it for
            # a hello, and count it until their next read).
            self._registry.gone(node)
            return
        self._registry.saw(node)
        if kind != _COMMIT:
            self.wake()
            return
        try:
            self._announced.update({int(p) for p in partitions.split(",")} if partitions else {0})
        except ValueError:
            self._read_every = True  # a payload this version does not know: read what every head says
        self._wake.set()

    # Listening.

    @staticmethod
    def _relay(on_payload: Callable[[str], None]) -> Callable[[object, int, str, str], None]:
        return lambda _conn, _pid, _channel, payload: on_payload(payload)

    async def _listen(self) -> None:
        # A peer sees this node alive by its sessions' name, so this one ends too if its host vanishes.
        registry = self._registry
        settings = session_settings(name=registry.session, vanish_within=registry.dead_after)
        conn = await asyncpg.connect(self._dsn, timeout=self.retry_interval * 5, server_settings=settings)
        await conn.add_listener(CHANNEL, self._on_notification)
        for channel, on_payload in self._channels.items():
            await conn.add_listener(channel, self._relay(on_payload))
        self._conn = conn
        await self._notify(_HELLO)  # peers start waking us now, not at their next heartbeat read

    async def _keep_listening(self) -> None:
        """Reconnect the LISTEN connection whenever it is lost, and read once it is back."""
        while True:
            await asyncio.sleep(self.retry_interval)
            if self._conn is not None and not self._conn.is_closed():
                continue
            try:
                await self._listen()
            except Exception as exc:
                log.warning("LISTEN connection lost, retrying: %s: %s", type(exc).__name__, exc)
                continue
            log.info("LISTEN connection restored")
            self.wake()  # notifications sent while it was down are lost: read what they announced

    # Reading.

    async def _read_loop(self) -> None:
        while True:
            woken = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
                    woken = True
            self._wake.clear()
            try:
                # Polled on time even while notifications keep waking it: a lost one (a failed NOTIFY,
                # a read that failed after its announcement was taken) is found by the poll.
                poll = not woken or self._poll_due()
                if self.bus is None:
                    await self._catch_up(poll=poll)
                else:
                    await self._repair(poll=poll)
            except Exception as exc:
                log.warning("reading the log failed: %s: %s", type(exc).__name__, exc)
                self._read_every = True  # what was announced and not read is behind its head
                if self.bus is not None:  # every held bus message wakes the loop: pause regardless
                    await asyncio.sleep(self.retry_interval)
                    continue
                with contextlib.suppress(TimeoutError):  # the database is away: pause, or less if woken
                    async with asyncio.timeout(self.retry_interval):
                        await self._wake.wait()

    async def _catch_up(self, *, poll: bool) -> None:
        """Read the partitions other nodes announced commits in; on a poll, or when told to, every
        partition whose head is ahead of what this node published."""
        orders = self._orders
        announced, self._announced = self._announced, set()
        if poll or self._read_every or not orders.started:
            self._read_every = False
            heads = await self._read_heads()
            orders.start_at(heads)
            behind: dict[int, int | None] = {p: h for p, h in heads.items() if _published(orders, p) < h}
        else:
            behind = {p: None for p in sorted(announced) if orders.knows(p)}
            if len(behind) < len(announced):  # a partition this node has no start for: read the heads
                self._read_every = True
                self._wake.set()
        for partition, head in behind.items():
            await self._read_partition(partition, head)

    # Repairing what the bus lost.

    def offer_peers_events(self, events: list[RecordedEvent]) -> None:
        """Events another node's callers committed: from the bus, or written here for them
        (engine/cluster/routed_appends.py), which the bus never echoes back."""
        if not self._orders.started:
            # Where this node starts is not known yet (the database was away at start): offering
            # now would start at this message and pass over earlier positions still on their way.
            # The read loop learns the head first; whatever this held is read from the log then.
            self.wake()
            return
        self._orders.offer_all(events)

    def _poll_due(self) -> bool:
        return time.monotonic() - self._head_read_at >= self.poll_interval

    async def _repair(self, *, poll: bool) -> None:
        """Read from the log what the bus has not brought `repair_after` seconds after this node
        knew it was committed: in each partition, the positions before the highest held one (a gap)
        and, on a poll, those up to the head (a lost last message, an outage)."""
        orders = self._orders
        heads: Mapping[int, int] = {}
        if not orders.started or poll:  # a wake is a gap: its held position is the target
            heads = await self._read_heads()
            orders.start_at(heads)
        targets = dict(heads)
        for partition, order in orders:
            if (held := order.highest_held) is not None:
                targets[partition] = max(targets.get(partition, 0), held)
        behind = {p: target for p, target in targets.items() if _published(orders, p) < target}
        if not behind:
            return
        await asyncio.sleep(self.repair_after)  # what is in flight on the bus arrives meanwhile
        for partition, target in sorted(behind.items()):
            await self._read_partition(partition, target)

    async def _read_partition(self, partition: int, upto: int | None) -> None:
        """Read the partition after what this node published there, up to `upto` (to its end when
        None), and offer it, page by page."""
        order = self._orders.of(partition)
        while True:
            after = _published(self._orders, partition)
            if upto is not None and after >= upto:
                return
            limit = _PAGE if upto is None else min(_PAGE, upto - after)
            page = await self._store.read_all(after=after, limit=limit, partition=partition)
            self.reads += 1
            order.offer_all(page)
            if len(page) < limit:  # the end of what is committed
                return

    async def _read_heads(self) -> dict[int, int]:
        heads = await self._store.heads()
        self.head_reads += 1
        self._head_read_at = time.monotonic()
        return heads

    def stats(self) -> dict[str, Any]:
        """How other nodes' events reach this one, for `/ws/stats/detailed` and its peers' views."""
        bus = self.bus
        return {
            "via": "nats" if bus is not None else "notify",
            "delivered_position": self._orders.of(0).delivered,
            "delivered_positions": {str(p): at for p, at in self._orders.delivered.items()},
            "held": self._orders.held,
            "peers": sorted(self._registry.peers),
            "sharing": self._registry.sharing(),
            "sharing_writes": self._registry.sharing(writing=True),
            "listening": self._conn is not None and not self._conn.is_closed(),
            "log_reads": self.reads,
            "head_reads": self.head_reads,
            "notifications_sent": self.notifications_sent,
            "notifications_received": self.notifications_received,
            "bus_connected": bus is not None and bus.connected,
            "bus_messages_sent": bus.messages_sent if bus is not None else 0,
            "bus_messages_received": bus.messages_received if bus is not None else 0,
            "bus_events_received": bus.events_received if bus is not None else 0,
            "bus_send_failures": bus.send_failures if bus is not None else 0,
        }


def _published(orders: DeliveryOrders, partition: int) -> int:
    """Every position of the partition up to this one is published (its head once started)."""
    delivered = orders.of(partition).delivered
    assert delivered is not None, "read after the partition's starting point is known"
    return delivered


__all__ = ["CHANNEL", "LogFollower"]
