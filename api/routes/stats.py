"""`GET /api/v1/ws/stats` (the seed's shape, plus the log's figures) and `GET /api/v1/ws/stats/detailed`
(per message type, per error code, per node, appender and fanout internals). The summary is for any
authenticated caller, the detailed view for admins.

Nodes share only PostgreSQL: each publishes its figures there, so `nodes` is a mapping `{node_id:
figures}` of every live node (the others as of their last heartbeat). The top-level figures are the
sums over `nodes`, except `uptime_seconds` (the answering node's) and `socket_writes` (the answering
node's sockets).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator

from api import turn_writes
from api.deps import EngineDep
from api.rest_auth import ActorDep, AdminDep
from engine.features.stats import ClusterStats, NodeStats
from engine.protocol import iso

router = APIRouter(tags=["stats"])


class ErrorBody(BaseModel):
    """Every REST error (api/http_errors.py)."""

    error: str
    code: str


# What an admin endpoint may answer besides 200, for /docs and clients generated from the schema.
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no token, or a bad one (AUTHENTICATION_FAILED)"},
    403: {"model": ErrorBody, "description": "the token lacks the admin role (PERMISSION_DENIED)"},
    503: {"model": ErrorBody, "description": "the engine is stopping or the log is unreachable"},
}


class Stats(BaseModel):
    """The seed's `/ws/stats`, plus what the log says."""

    total_connections: int = Field(description="open WebSocket connections, on every live node")
    authenticated_connections: int = Field(
        description="connections past authentication (a socket counts once its token is verified)"
    )
    rooms_active: int = Field(description="rooms with at least one connection on any node")
    messages_per_second: float = Field(
        description="inbound messages a second over the last minute, all nodes together"
    )
    uptime_seconds: float = Field(description="of the node that answers")
    events_appended: int = Field(description="events the live nodes appended since they started")
    log_head: int = Field(
        description="events in the log: its newest committed position in a log of one partition, the "
        "sum of the partitions' heads in a log of several (positions are gapless in each)"
    )
    log_heads: dict[str, int] = Field(description="each partition's newest committed position, by partition")
    node_id: str = Field(description="the node that answers")
    nodes_alive: int = Field(
        description="nodes that heartbeat; other nodes' figures are as of their last heartbeat"
    )
    timestamp: str


class HistogramStats(BaseModel):
    buckets: dict[str, int] = Field(description="count per upper bound (not cumulative); last is +Inf")
    sum: float
    count: int


class RoutingFigures(BaseModel):
    writes_partitions: list[int] = Field(description="the partitions this node writes for the whole cluster")
    batches_forwarded: int = Field(description="batches handed to their partition's writer on another node")
    batches_not_taken: int = Field(
        description="batches handed over that no writer took (none yet, or the bus away): written here"
    )
    events_written_for_others: int = Field(description="events this node committed for other nodes")


class AppenderFigures(BaseModel):
    batches: int
    events: int
    failed_batches: int
    queue_depth: int = Field(description="appends waiting for the next commit")
    write_paths: dict[str, int] = Field(description="batches committed per path (known, read, locked)")
    batch_size: HistogramStats
    commit_latency_ms: HistogramStats
    routing: RoutingFigures | None = Field(default=None, description="with ROUTE_APPENDS and a bus")


class FanoutFigures(BaseModel):
    delivered: int
    written_directly: int = Field(
        description="of the frames delivered, those written at once because the socket had room"
    )
    dropped_volatile: int
    coalesced: int
    duplicates: int
    slow_consumer_closes: int
    sink_failures: int
    subscribers: int
    topics: int
    max_queue: int
    high_water: int
    queue_depth_max: int
    queue_depth_total: int
    queue_depths: dict[str, int] = Field(description="connections with messages queued, by connection id")


class DeliveryFigures(BaseModel):
    via: str = Field(description="how other nodes' events reach this one: `nats` (NATS_URL) or `notify`")
    delivered_position: int | None = Field(
        description="every position of partition 0 (the whole log, in a log of one) up to here is "
        "published here"
    )
    delivered_positions: dict[str, int | None] = Field(
        default_factory=dict,
        description="the same for each partition, by partition; null while its starting point is unknown "
        "(empty from a node of an earlier version)",
    )
    held: int = Field(description="events that arrived before earlier positions, waiting for them")
    peers: list[str]
    sharing: list[str] = Field(
        default_factory=list,
        description="the nodes sharing out the log's partitions, this one included, oldest first: the live "
        "peers, less any whose database sessions are gone (a crash) before its heartbeat ages "
        "(empty from a node of an earlier version)",
    )
    sharing_writes: list[str] = Field(
        default_factory=list,
        description="those of `sharing` that share out writing the partitions (ROUTE_APPENDS): less the "
        "peers that route no appends (empty from a node of an earlier version)",
    )
    listening: bool = Field(description="the LISTEN connection is up")
    log_reads: int = Field(description="range reads of the log: after each wake-up, or with a bus to repair")
    head_reads: int = Field(description="reads of every partition's head: at each poll, and to start")
    held_reads: int = Field(
        description="range reads by this node's own commits, for the positions other nodes wrote just before"
    )
    notifications_sent: int
    notifications_received: int
    bus_connected: bool
    bus_messages_sent: int
    bus_messages_received: int
    bus_events_received: int
    bus_send_failures: int = Field(description="messages not sent (the bus away): peers repair them")


class NodeFigures(BaseModel):
    connections: int
    rooms_active: int
    messages_per_second: float
    uptime_seconds: float
    messages_received: int
    errors_sent: int
    events_appended: int
    messages_by_type: dict[str, int]
    errors_by_code: dict[str, int] = Field(description="error messages sent to WebSocket clients, by code")
    appender: AppenderFigures
    fanout: FanoutFigures
    delivery: DeliveryFigures | None = Field(
        default=None, description="absent on a node without a database (a memory log)"
    )

    @field_validator("delivery", mode="before")
    @classmethod
    def _none_when_empty(cls, value: object) -> object:
        return value or None


class SocketWriteFigures(BaseModel):
    writes: int = Field(description="socket writes of frames the publisher handed over without waiting")
    frames: int = Field(description="the frames they carried: all a connection got in one loop turn")


class DetailedStats(Stats):
    messages_by_type: dict[str, int]
    errors_by_code: dict[str, int]
    nodes: dict[str, NodeFigures]
    socket_writes: SocketWriteFigures = Field(description="the answering node's, since it started")


def _node_figures(node: NodeStats) -> NodeFigures:
    return NodeFigures.model_validate(node, from_attributes=True)


async def _summary(engine: EngineDep, cluster: ClusterStats) -> dict[str, object]:
    nodes = cluster.nodes.values()
    heads = await engine.log_heads()
    connections = sum(node.connections for node in nodes)
    return {
        "total_connections": connections,
        # Only authenticated sockets are registered with the engine (api/routes/websocket.py).
        "authenticated_connections": connections,
        "rooms_active": cluster.rooms_active,
        "messages_per_second": round(sum(node.messages_per_second for node in nodes), 3),
        "uptime_seconds": cluster.own.uptime_seconds,
        "events_appended": sum(node.events_appended for node in nodes),
        "log_head": sum(heads.values()),
        "log_heads": {str(partition): head for partition, head in sorted(heads.items())},
        "node_id": cluster.own.node_id,
        "nodes_alive": len(cluster.nodes),
        "timestamp": iso(datetime.now(UTC)),
    }


@router.get("/ws/stats", response_model=Stats, responses=_ERRORS)
async def stats(engine: EngineDep, _: ActorDep) -> Stats:
    """Connections, rooms, message rate and uptime (the seed's figures), and the log's head: aggregate
    figures, for any authenticated caller (only the detailed view is for admins)."""
    return Stats.model_validate(await _summary(engine, await engine.cluster_stats()))


@router.get("/ws/stats/detailed", response_model=DetailedStats, responses=_ERRORS)
async def stats_detailed(engine: EngineDep, _: AdminDep) -> DetailedStats:
    """The summary, plus messages by type, errors by code, and each node's appender and fanout."""
    cluster = await engine.cluster_stats()
    return DetailedStats.model_validate(
        {
            **await _summary(engine, cluster),
            "messages_by_type": _summed(node.messages_by_type for node in cluster.nodes.values()),
            "errors_by_code": _summed(node.errors_by_code for node in cluster.nodes.values()),
            "nodes": {node_id: _node_figures(node) for node_id, node in cluster.nodes.items()},
            "socket_writes": SocketWriteFigures(
                writes=turn_writes.counts.writes, frames=turn_writes.counts.frames
            ),
        }
    )


def _summed(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for each in counts:
        total.update(each)
    return dict(total)
