"""`DeliveryOrder`: each node publishes committed events in position order, whoever wrote them.

Why a partition's position and not each stream's seq: positions are gapless within a partition and
follow commit order (engine/log/store.py), and a stream lives in one partition
(engine/log/partitions.py), so publishing each partition strictly in position order gives every
stream's events in seq order on every node with one counter per partition, and no stream needs to be
known in advance. `DeliveryOrders` keeps one `DeliveryOrder` per partition: partitions are
independent, so a gap in one holds back none of the others. Each node
publishes its own commits the moment the appender returns them (no await in between: handlers rely
on it), and the events other nodes wrote when its log follower reads them (engine/cluster/follower.py).
While a single node writes, each own commit is the next position and nothing ever waits.

When an own commit finds positions before it not yet published (another node committed in
between), it is held until the follower has read those from the log; its caller waits for that.
Whichever side offers a position first publishes it; the other finds it already delivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping

from engine.model.events import RecordedEvent

log = logging.getLogger(__name__)

Publish = Callable[[RecordedEvent], None]


class DeliveryOrder:
    def __init__(
        self, publish: Publish, delivered: int | None, *, on_gap: Callable[[], None] | None = None
    ) -> None:
        # Every position up to here has been published (or skipped). None until known: a node that
        # started while the database was away learns it from the first read of the head.
        self.delivered = delivered
        self._publish = publish
        self._held: dict[int, RecordedEvent] = {}
        self._highest_held = 0  # only read while something is held; releases take the lowest first
        self._advanced = asyncio.Event()
        self._waiting = 0  # callers in `wait_delivered`: only then is an advance worth announcing
        self._on_gap = on_gap or (lambda: None)

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def highest_held(self) -> int | None:
        """The highest position waiting for earlier ones, if any: those are all committed."""
        return self._highest_held if self._held else None

    def offer(self, event: RecordedEvent) -> bool:
        """Publish `event` if it is the next position (then whatever it unblocks); hold it if earlier
        positions are missing. True once it is published, now or before."""
        position = event.position
        if self.delivered is None:  # nothing was known before this: start here
            self.delivered = position - 1
        if position <= self.delivered:
            return True
        if position > self.delivered + 1:
            self._held[position] = event
            self._highest_held = max(self._highest_held if len(self._held) > 1 else 0, position)
            self._on_gap()
            return False
        self._deliver(event)
        while (following := self._held.pop(position := position + 1, None)) is not None:
            self._deliver(following)
        self._announce()
        return True

    def start_at(self, head: int) -> None:
        """Set the starting point once it is known (a no-op when it already is)."""
        if self.delivered is None:
            self.delivered = head
            self._announce()  # a wait for a position up to the head is over

    def offer_all(self, events: list[RecordedEvent]) -> None:
        """Offer a page read from the log, in position order."""
        for event in events:
            self.offer(event)

    async def wait_delivered(self, position: int) -> None:
        """Wait until `position` is published (callers bound the wait; a position still held then is
        published as soon as the positions before it are read)."""
        self._waiting += 1
        try:
            while self.delivered is None or self.delivered < position:
                await self._advanced.wait()
        finally:
            self._waiting -= 1

    def _announce(self) -> None:
        if self._waiting:
            self._advanced.set()
            self._advanced = asyncio.Event()

    def _deliver(self, event: RecordedEvent) -> None:
        self.delivered = event.position
        try:
            self._publish(event)
        except Exception:
            # One event that cannot be published (a stream this code does not fan out) must not stop
            # every later event of every stream: it is recorded and skipped.
            log.exception("could not publish event at position %d (%s)", event.position, event.type)


class DeliveryOrders:
    """One `DeliveryOrder` per partition, made when the partition is first named."""

    def __init__(
        self,
        publish: Publish,
        heads: Mapping[int, int] | None,
        *,
        on_gap: Callable[[], None] | None = None,
    ) -> None:
        self._publish = publish
        self._on_gap = on_gap
        self._orders: dict[int, DeliveryOrder] = {}
        # False until every partition's starting point is known (see `DeliveryOrder.delivered`).
        self.started = heads is not None
        for partition, head in (heads or {}).items():
            self.of(partition).start_at(head)

    def of(self, partition: int) -> DeliveryOrder:
        order = self._orders.get(partition)
        if order is None:
            order = self._orders[partition] = DeliveryOrder(self._publish, None, on_gap=self._on_gap)
        return order

    def knows(self, partition: int) -> bool:
        """Whether the partition's starting point is known (its order exists and has started)."""
        order = self._orders.get(partition)
        return order is not None and order.delivered is not None

    def __iter__(self) -> Iterator[tuple[int, DeliveryOrder]]:
        return iter(sorted(self._orders.items()))

    def offer(self, event: RecordedEvent) -> bool:
        return self.of(event.partition).offer(event)

    def offer_all(self, events: list[RecordedEvent]) -> None:
        for event in events:
            self.offer(event)

    def start_at(self, heads: Mapping[int, int]) -> None:
        """Each partition starts at its head unless its starting point is known already."""
        for partition, head in heads.items():
            self.of(partition).start_at(head)
        self.started = True

    @property
    def held(self) -> int:
        return sum(order.held for order in self._orders.values())

    @property
    def delivered(self) -> dict[int, int | None]:
        return {partition: order.delivered for partition, order in self}


__all__ = ["DeliveryOrder", "DeliveryOrders"]
