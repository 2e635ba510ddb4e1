"""`NatsBus`: committed events travel to the other nodes on NATS when `NATS_URL` is set.

Why: a NOTIFY only says that something was committed, so every node reads every event back from
PostgreSQL after every wake-up. On the bus the events themselves travel, and a node reads the log
only to repair what the bus lost (engine/cluster/follower.py). PostgreSQL stays the only truth: the
bus is best effort, and a message lost, late, too large or sent while the bus was away costs
latency, never an event.

One subject per log partition, `collab.<log id>.log.<partition>`, and each node subscribes to them
all: the log id (a random uuid in `log_head`) keeps the logs of different databases apart on a shared
NATS. NATS keeps each publisher's messages in order on a subject; the messages of different nodes
interleave, and `DeliveryOrders` (engine/fanout/delivery_order.py) puts each partition back in
position order. Nodes connect with `no_echo`, so none hears its own events back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.log.lifecycle import STOP_TIMEOUT, cancel_and_wait
from engine.model.events import RecordedEvent

log = logging.getLogger(__name__)


def log_subject_for(log_id: str) -> str:
    """The subjects' common stem: a partition's subject is `<stem>.<partition>`."""
    return f"collab.{log_id}.log"


def subject_for(log_id: str, partition: int = 0) -> str:
    return f"{log_subject_for(log_id)}.{partition}"


async def log_subject(db_engine: AsyncEngine) -> str:
    """The stem of the subjects of the log in this database (every partition shares its log id)."""
    async with db_engine.connect() as conn:
        log_id = (await conn.execute(text("SELECT log_id FROM log_head WHERE partition = 0"))).scalar_one()
    return log_subject_for(str(log_id))


def encode_event(event: RecordedEvent) -> bytes:
    """One event as one line of JSON (orjson escapes newlines inside strings)."""
    return orjson.dumps(
        {
            "p": event.position,
            "s": event.stream_id,
            "v": event.stream_version,
            "t": event.type,
            "d": event.data,
            "m": event.metadata,
            "r": event.recorded_at.isoformat(),
            "u": event.user_id,
            "k": event.idempotency_key,
            "q": event.partition,
        }
    )


def decode_events(payload: bytes) -> list[RecordedEvent]:
    """The events of one bus message; ValueError when any line is not an event."""
    try:
        return [_decoded(orjson.loads(line)) for line in payload.split(b"\n")]
    except Exception as exc:
        raise ValueError(f"not an event: {type(exc).__name__}: {exc}") from exc


def _decoded(item: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(
        position=int(item["p"]),
        stream_id=item["s"],
        stream_version=int(item["v"]),
        type=item["t"],
        data=item["d"],
        metadata=item["m"],
        recorded_at=datetime.fromisoformat(item["r"]),
        user_id=item["u"],
        idempotency_key=item["k"],
        partition=int(item.get("q", 0)),
    )


def messages(lines: list[bytes], max_payload: int) -> Iterator[bytes]:
    """`lines` joined into as few messages of at most `max_payload` bytes as keep their order. A line
    longer than that on its own is left out: the receivers repair it from the log."""
    batch: list[bytes] = []
    size = 0
    for line in lines:
        if len(line) > max_payload:
            log.info("an event of %d bytes is over the bus's %d: peers read it", len(line), max_payload)
            continue
        if batch and size + 1 + len(line) > max_payload:
            yield b"\n".join(batch)
            batch, size = [], 0
        size += len(line) + (1 if batch else 0)
        batch.append(line)
    if batch:
        yield b"\n".join(batch)


Subject = Callable[[], Awaitable[str]]
"""The stem of the subjects this log's events travel on (`log_subject`); asked at every connect, since
the database may be away at start."""


class NatsBus:
    def __init__(
        self,
        url: str,
        subject: Subject,
        node_id: str,
        *,
        retry_interval: float = 1.0,
        ping_interval: int = 120,
    ) -> None:
        self.url = url
        self.node_id = node_id
        self.retry_interval = retry_interval
        # A link that goes silent without closing is noticed after three pings unanswered.
        self.ping_interval = ping_interval
        self.subject: str | None = None
        self.messages_sent = 0
        self.messages_received = 0
        self.events_received = 0
        self.send_failures = 0
        self._subject = subject
        self._client: Client | None = None
        self._on_events: Callable[[list[RecordedEvent]], None] = lambda _events: None
        self._outbox: list[RecordedEvent] = []
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._warned = False
        self._lost_at: float | None = time.monotonic()  # since when out of reach (monotonic); None: connected
        self._last_outage = (0.0, 0.0)  # when the last loss began and ended (monotonic)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    def _out_of_reach(self) -> float:
        """Seconds the bus has been out of reach: since this node lost it, or since the bus was made
        if it never connected; 0 while connected."""
        if self.connected:  # whatever the callbacks have said so far
            self._back(time.monotonic())
            return 0.0
        if self._lost_at is None:  # lost, and its callback not run yet
            self._lost_at = time.monotonic()
        return time.monotonic() - self._lost_at

    def reachable(self, grace: float) -> bool:
        """Connected, or out of reach for less than `grace` seconds (a reconnect is under way). Back
        from a loss that long, only once connected for `grace` again: a link that keeps failing
        does not move what depends on it back and forth at each reconnect."""
        if self._out_of_reach() >= grace:
            return False
        began, ended = self._last_outage
        return ended - began < grace or time.monotonic() - ended >= grace

    def _back(self, now: float) -> None:
        if self._lost_at is not None:
            self._last_outage = (self._lost_at, now)
            self._lost_at = None

    @property
    def client(self) -> Client | None:
        """The connection, once made (it reconnects by itself): routed appends share it."""
        return self._client

    async def start(self, on_events: Callable[[list[RecordedEvent]], None]) -> None:
        """Connect and subscribe, or keep trying in the background: until then peers' events come from
        the follower's reads of the log."""
        self._on_events = on_events
        loop = asyncio.get_running_loop()
        connecting = loop.create_task(self._connect_until_done(), name=f"bus-connect:{self.node_id}")
        self._tasks = [connecting, loop.create_task(self._send_loop(), name=f"bus-sender:{self.node_id}")]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(connecting), self.retry_interval * 2)

    async def stop(self) -> None:
        await asyncio.gather(*(cancel_and_wait(task, STOP_TIMEOUT) for task in self._tasks))
        self._tasks = []
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                # What was committed last (a shutdown's departures) still goes out, then the buffer.
                await asyncio.wait_for(self._send(client), 1.0)
                await asyncio.wait_for(client.flush(), 1.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2.0)

    def publish(self, event: RecordedEvent) -> None:
        """Send `event` to the other nodes; the events of one loop turn travel as one message."""
        self._outbox.append(event)
        self._ready.set()

    async def _connect_until_done(self) -> None:
        while self._client is None:
            try:
                await self._connect()
            except Exception as exc:
                log.warning("bus at %s unavailable, retrying: %s: %s", self.url, type(exc).__name__, exc)
                await asyncio.sleep(self.retry_interval)

    async def _connect(self) -> None:
        subject = await self._subject()
        # The client retries by itself from here on, the first connection included, for as long as
        # the node runs (max_reconnect_attempts=-1).
        client = await nats.connect(
            self.url,
            name=self.node_id,
            no_echo=True,
            connect_timeout=2,
            reconnect_time_wait=self.retry_interval,
            max_reconnect_attempts=-1,
            ping_interval=self.ping_interval,
            max_outstanding_pings=2,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        try:
            await client.subscribe(f"{subject}.*", cb=self._on_message)
        except BaseException:  # not left reconnecting forever behind a node that gave up on it
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2.0)
            raise
        self.subject, self._client = subject, client
        if client.is_connected:
            self._back(time.monotonic())
        log.info("bus connected: %s on %s", subject, self.url)

    async def _send_loop(self) -> None:
        """One sender, so this node's messages leave in the order it published them."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            client = self._client
            if client is None or client.is_closed:
                if self._outbox:
                    self.send_failures += 1
                self._outbox = []
                continue
            await self._send(client)

    async def _send(self, client: Client) -> None:
        events, self._outbox = self._outbox, []
        if not events or self.subject is None:
            return
        lines: dict[int, list[bytes]] = {}
        for event in sorted(events, key=lambda e: (e.partition, e.position)):
            try:
                lines.setdefault(event.partition, []).append(encode_event(event))
            except Exception as exc:  # the peers repair it from the log
                log.warning("event at position %d not sent on the bus: %s", event.position, exc)
        for partition, partition_lines in lines.items():
            for payload in messages(partition_lines, client.max_payload):
                try:
                    await client.publish(f"{self.subject}.{partition}", payload)
                    self.messages_sent += 1
                except Exception as exc:  # a full reconnect buffer: the peers repair from the log
                    self.send_failures += 1
                    log.info("bus publish failed: %s: %s", type(exc).__name__, exc)

    async def _on_message(self, message: Msg) -> None:
        try:
            events = decode_events(message.data)
        except ValueError as exc:
            log.warning("ignored a malformed bus message on %s: %s", message.subject, exc)
            return
        self.messages_received += 1
        self.events_received += len(events)
        self._on_events(events)

    async def _on_error(self, exc: Exception) -> None:
        if self._client is None and not self._warned:  # never connected yet: say so once
            self._warned = True
            log.warning(
                "bus at %s unreachable (%s: %s); retrying, and until then peers' events come from the log",
                self.url, type(exc).__name__, exc,
            )  # fmt: skip
        else:
            log.info("bus: %s: %s", type(exc).__name__, exc)

    async def _on_disconnected(self) -> None:
        if self._lost_at is None:
            self._lost_at = time.monotonic()
        if self._tasks:  # not when this node closed it (`stop`)
            log.warning("bus disconnected: peers' events come from the log until it is back")

    async def _on_reconnected(self) -> None:
        self._back(time.monotonic())
        log.info("bus reconnected")


__all__ = [
    "NatsBus",
    "decode_events",
    "encode_event",
    "log_subject",
    "log_subject_for",
    "messages",
    "subject_for",
]
