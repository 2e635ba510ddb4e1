"""Leaves for the connections of a node that died without saying goodbye (kill -9, a lost host).

A node that stops cleanly appends its connections' leaves itself (Node.stop). One that dies
leaves them joined, and every room would show its users forever. Survivors notice the silence in
`nodes` (engine/cluster/registry.py) and append, for each membership the dead node's connections still
hold, a `UserLeftRoom` with reason `node_lost`, then mark the node stopped.

Which memberships: the dead node's joins (metadata `node`) since it started, without a later leave of
the same connection in that room. `recorded_at >= started_at` lets the BRIN index on `recorded_at`
skip the log written before that node existed. The AI requests it was running die with it too: each
it started without a recorded end gets an `AiFailed` ("the server running it stopped") in the same
pass, so the requester hears that it ended.

Several survivors may find the same dead node at once. Each leave carries an idempotency key made of
the connection and the room, so the log records it once whoever gets there first, and a survivor
that dies halfway is completed by the next one. The node may not be dead at all, only cut off from
the database: its row stays locked from the reading of its memberships until it is marked stopped,
so that a beat of the node in between finds it stopped, and the node, which then drops its
connections, records their leaves too, under the same keys (engine/node.py). A join such a node
handed to another node shortly before can commit after the memberships were read: they are read
again once that must have happened (`record_late_departures`), by whichever survivor gets there first,
since the mark also records when that second look is due.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.cluster.registry import NodeRegistry
from engine.log.connectivity import is_connectivity_error
from engine.log.partitions import partition_count
from engine.model.catalogue import (
    AI_CANCELLED,
    AI_COMPLETED,
    AI_FAILED,
    AI_REQUEST_STARTED,
    NODE_LOST,
    USER_JOINED_ROOM,
    USER_LEFT_ROOM,
    AiFailed,
    UserLeftRoom,
)
from engine.model.errors import StoreUnavailable
from engine.model.events import AppendOutcome, Committed, NewEvent, Origin
from engine.projections.ai_requests import end_key

log = logging.getLogger(__name__)

Commit = Callable[[NewEvent], Awaitable[AppendOutcome]]  # the node's: appended, then published

_DEAD = """
SELECT node_id, started_at FROM nodes
WHERE node_id <> :node AND stopped_at IS NULL AND heartbeat_at < now() - make_interval(secs => :dead_after)
"""
_OPEN_MEMBERSHIPS = """
SELECT j.data->>'room_id' AS room_id, j.data->>'user_id' AS user_id, j.data->>'connection_id' AS connection_id
FROM events j
WHERE j.partition = :partition AND j.type = :joined AND j.recorded_at >= :started_at
  AND j.metadata->>'node' = :dead
  AND NOT EXISTS (
    SELECT 1 FROM events l
    WHERE l.partition = j.partition AND l.stream_id = j.stream_id AND l.stream_version > j.stream_version
      AND l.type = :left
      AND l.data->>'connection_id' = j.data->>'connection_id'
  )
ORDER BY j.position
"""
# AI requests the dead node started and recorded no end of: their runs died with it.
_UNFINISHED_AI = """
SELECT s.data->>'user_id' AS user_id, s.data->>'request_id' AS request_id
FROM events s
WHERE s.partition = :partition AND s.type = :started AND s.recorded_at >= :started_at
  AND s.metadata->>'node' = :dead
  AND NOT EXISTS (
    SELECT 1 FROM events e
    WHERE e.partition = s.partition AND e.stream_id = s.stream_id AND e.stream_version > s.stream_version
      AND e.type IN (:completed, :failed, :cancelled)
      AND e.data->>'request_id' = s.data->>'request_id'
  )
ORDER BY s.position
"""
NODE_LOST_ERROR = "the server running it stopped"
# Held from before the dead node's memberships are read until its row is marked stopped: a beat of the
# node in between (it was cut off, not dead) waits, then finds its row stopped and drops its
# connections, instead of beating on while the joins it appends meanwhile are never closed. Locked
# rows are skipped: another survivor is at it.
_CLAIM = """
SELECT 1 FROM nodes
WHERE node_id = :dead AND started_at = :started_at AND stopped_at IS NULL
  AND heartbeat_at < now() - make_interval(secs => :dead_after)
FOR UPDATE SKIP LOCKED
"""
# Its run, not a later one: the node may have registered again since it was found dead.
_MARK_STOPPED = """
UPDATE nodes SET stopped_at = now(), recheck_at = now() + make_interval(secs => :recheck_after)
WHERE node_id = :dead AND started_at = :started_at AND stopped_at IS NULL
"""
# Still stopped: a registration, also one of a version before `recheck_at` that leaves it set, clears
# `stopped_at` and starts a new run, whose joins must stay open.
_RECHECKS_DUE = "SELECT node_id, started_at FROM nodes WHERE recheck_at <= now() AND stopped_at IS NOT NULL"
# Held while the memberships are read again and their leaves commit: a registration of the node meanwhile
# waits, so its new run's joins are never read as the old run's.
_CLAIM_RECHECK = """
SELECT 1 FROM nodes
WHERE node_id = :dead AND started_at = :started_at AND recheck_at <= now() AND stopped_at IS NOT NULL
FOR UPDATE SKIP LOCKED
"""
_RECHECKED = "UPDATE nodes SET recheck_at = NULL WHERE node_id = :dead AND started_at = :started_at"


@dataclass(frozen=True, slots=True)
class DeadNode:
    node_id: str
    started_at: datetime


async def dead_nodes(db_engine: AsyncEngine, node_id: str, dead_after: float) -> list[DeadNode]:
    """Nodes other than `node_id` silent for longer than `dead_after` seconds and not marked stopped."""
    async with db_engine.connect() as conn:
        rows = await conn.execute(text(_DEAD), {"node": node_id, "dead_after": dead_after})
        return [DeadNode(str(row.node_id), row.started_at) for row in rows]


async def leaves_for(conn: AsyncConnection, dead: DeadNode, reaper: str) -> list[NewEvent]:
    """The `UserLeftRoom` events that close the dead node's open memberships (one per connection and
    room, deduplicated across survivors by their idempotency key), read partition by partition: a
    join and its leave are in their room's."""
    kinds = {"joined": USER_JOINED_ROOM, "left": USER_LEFT_ROOM}
    rows = await _of_run(conn, _OPEN_MEMBERSHIPS, dead, kinds)
    memberships = {(row.room_id, row.user_id, row.connection_id) for row in rows}
    return [
        lost_leave(room_id, user_id, connection_id, dead.node_id, reaper)
        for room_id, user_id, connection_id in sorted(memberships)
    ]


async def ai_endings_for(conn: AsyncConnection, dead: DeadNode, reaper: str) -> list[NewEvent]:
    """An `AiFailed` for each AI request the dead node started and never ended, so that its
    requester's connections, on every node, get an `ai_error` instead of waiting for good; one
    ending per request however many survivors or runs record one (its `end_key`)."""
    kinds = {
        "started": AI_REQUEST_STARTED,
        "completed": AI_COMPLETED,
        "failed": AI_FAILED,
        "cancelled": AI_CANCELLED,
    }
    return [
        AiFailed(row.user_id, row.request_id, NODE_LOST_ERROR).new(
            Origin(reaper, row.user_id),
            key=end_key(row.request_id),
            request_id=row.request_id,
            lost_node=dead.node_id,
        )
        for row in await _of_run(conn, _UNFINISHED_AI, dead, kinds)
    ]


async def _of_run(conn: AsyncConnection, query: str, dead: DeadNode, kinds: dict[str, str]) -> list[Row[Any]]:
    """The rows `query` finds among the dead run's events, partition by partition (a statement on the
    log names its partition)."""
    found: list[Row[Any]] = []
    for partition in range(await partition_count(conn)):
        params = {**kinds, "partition": partition, "started_at": dead.started_at, "dead": dead.node_id}
        found += (await conn.execute(text(query), params)).all()
    return found


def lost_leave(room_id: str, user_id: str, connection_id: str, lost_node: str, reaper: str) -> NewEvent:
    """A membership of `lost_node`'s connection closed for it, by a survivor or by the node itself
    once it learns it was taken for dead: the same idempotency key either way, so it is recorded once."""
    return UserLeftRoom(room_id, user_id, connection_id, NODE_LOST).new(
        Origin(reaper, user_id, connection_id), key=_key(connection_id, room_id), lost_node=lost_node
    )


def _key(connection_id: str, room_id: str) -> str:
    """Longer than any `client_msg_id` (64 characters at most), so no client can take it first."""
    digest = hashlib.sha256(f"{connection_id}\x00{room_id}".encode()).hexdigest()
    return f"node-lost:{digest}"


async def mark_stopped(conn: AsyncConnection, dead: DeadNode, *, recheck_after: float) -> None:
    """Mark the dead run stopped, its memberships to be read again `recheck_after` seconds on."""
    marked = {"dead": dead.node_id, "started_at": dead.started_at, "recheck_after": recheck_after}
    await conn.execute(text(_MARK_STOPPED), marked)


async def record_departures(
    db_engine: AsyncEngine,
    registry: NodeRegistry,
    commit: Commit,
    *,
    recheck_after: float,
    retry_interval: float = 1.0,
) -> list[DeadNode]:
    """Append the leaves of the connections of every node that stopped heartbeating, then mark it
    stopped (run after each heartbeat of a node that can judge its peers), its row locked throughout.
    Leaves that fail are tried again for up to `dead_after`; the row is marked only once every leave
    is in the log, so that a survivor after an outage completes them. The mark makes a second look
    due `recheck_after` seconds on (`record_late_departures`). Returns the nodes it marked."""
    dead_after = registry.dead_after
    marked: list[DeadNode] = []
    for dead in await dead_nodes(db_engine, registry.node_id, dead_after):
        run = {"dead": dead.node_id, "started_at": dead.started_at}
        recorded = await _close_run(
            db_engine,
            registry,
            dead,
            commit,
            lock=(_CLAIM, {**run, "dead_after": dead_after}),
            done=partial(mark_stopped, dead=dead, recheck_after=recheck_after),
            retry_interval=retry_interval,
        )
        if recorded is None:
            continue  # it beat meanwhile, another survivor is at it, or it failed (tried after a later beat)
        marked.append(dead)
        registry.gone(dead.node_id)
        log.warning(
            "node %s stopped heartbeating: %d departures of its connections and ends of its AI runs recorded",
            dead.node_id,
            recorded,
        )
    return marked


async def record_late_departures(
    db_engine: AsyncEngine,
    registry: NodeRegistry,
    commit: Commit,
    *,
    retry_interval: float = 1.0,
) -> list[DeadNode]:
    """Close the memberships of nodes marked stopped that their first reading missed, for every node
    whose second look is due: a join it handed to the node writing its room's partition shortly before
    it may be taken for dead (engine/node.py) can commit after that reading, within its writer's
    queue and commit, which the mark's `recheck_after` bounds. Any survivor makes the look, so it is
    not lost with the one that marked the node; a node that failed is left due, for a later pass.
    Nothing if the node registered again: it records its old connections' departures itself, and its
    new run's joins must stay open. Returns the nodes looked at again."""
    async with db_engine.connect() as conn:
        due = [DeadNode(str(row.node_id), row.started_at) for row in await conn.execute(text(_RECHECKS_DUE))]
    looked: list[DeadNode] = []
    for dead in due:
        run = {"dead": dead.node_id, "started_at": dead.started_at}
        recorded = await _close_run(
            db_engine,
            registry,
            dead,
            commit,
            lock=(_CLAIM_RECHECK, run),
            done=partial(_looked_again, dead=dead),
            retry_interval=retry_interval,
        )
        if recorded is None:
            continue  # registered again, another survivor is at it, or it failed (still due)
        looked.append(dead)
        if recorded:
            log.warning("node %s: %d late joins or AI requests closed", dead.node_id, recorded)
    return looked


async def _looked_again(conn: AsyncConnection, dead: DeadNode) -> None:
    await conn.execute(text(_RECHECKED), {"dead": dead.node_id, "started_at": dead.started_at})


async def _close_run(
    db_engine: AsyncEngine,
    registry: NodeRegistry,
    dead: DeadNode,
    commit: Commit,
    *,
    lock: tuple[str, dict[str, object]],
    done: Callable[[AsyncConnection], Awaitable[None]],
    retry_interval: float,
) -> int | None:
    """How many of `dead`'s open memberships and AI requests were ended here, its row held by `lock`
    (a statement that returns no row when there is nothing to do here) from before they are read
    until `done` has recorded that their ends are all in the log; None if the row could not be locked
    or the ends failed (logged: the row stays as it was, for a later pass)."""
    try:
        async with db_engine.begin() as conn:
            # Idle while the leaves commit on other connections: a server-wide idle timeout must not end
            # the claim, and its lock, halfway.
            await conn.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))
            if (await conn.execute(text(lock[0]), lock[1])).first() is None:
                return None
            ended = [
                *await leaves_for(conn, dead, registry.node_id),
                *await ai_endings_for(conn, dead, registry.node_id),
            ]
            bound = registry.dead_after
            recorded = await commit_all(ended, commit, bound=bound, retry_interval=retry_interval)
            await done(conn)
        return recorded
    except Exception as exc:  # the other dead nodes go on
        log.warning("closing node %s's memberships: %s: %s", dead.node_id, type(exc).__name__, exc)
        return None


async def commit_all(
    leaves: list[NewEvent],
    commit: Commit,
    *,
    bound: float,
    retry_interval: float = 1.0,
) -> int:
    """Commit every leave (a Duplicate counts as done: another survivor recorded it), trying those
    that fail for want of the store again; how many were recorded here. Raises the last such failure
    once `bound` has passed, and any other at once."""
    recorded_here = 0
    deadline = time.monotonic() + bound
    while True:
        outcomes = await asyncio.gather(*(commit(leave) for leave in leaves), return_exceptions=True)
        recorded_here += sum(isinstance(outcome, Committed) for outcome in outcomes)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if not failures:
            return recorded_here
        for failure in failures:
            if not isinstance(failure, StoreUnavailable) and not is_connectivity_error(failure):
                raise failure
        if time.monotonic() >= deadline:
            raise failures[-1]
        leaves = [leave for leave, o in zip(leaves, outcomes, strict=True) if isinstance(o, BaseException)]
        await asyncio.sleep(retry_interval)


__all__ = [
    "NODE_LOST_ERROR",
    "DeadNode",
    "ai_endings_for",
    "commit_all",
    "dead_nodes",
    "leaves_for",
    "lost_leave",
    "mark_stopped",
    "record_departures",
    "record_late_departures",
]
