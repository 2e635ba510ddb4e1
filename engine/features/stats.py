"""The figures `/ws/stats`, `/ws/stats/detailed` and `/metrics` show, read from the parts of the
engine that keep them (traffic.py's counters, the appender, the hub, the connections).

Everything here is this node's and read without I/O, except the log's head, which is the database's
and is read on demand. Figures are per node on purpose: nodes share only PostgreSQL, so a cluster view
is the sum of the nodes' own reports.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.fanout.hub import Hub
from engine.features.connections import Connections
from engine.features.traffic import EngineStats
from engine.log.appender import Appender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeStats:
    """One node's figures at one moment."""

    node_id: str
    connections: int
    rooms_active: int
    messages_per_second: float
    uptime_seconds: float
    messages_received: int
    errors_sent: int
    events_appended: int
    messages_by_type: Mapping[str, int] = field(default_factory=dict)
    errors_by_code: Mapping[str, int] = field(default_factory=dict)
    appender: Mapping[str, Any] = field(default_factory=dict)
    fanout: Mapping[str, Any] = field(default_factory=dict)
    # How other nodes' events reach this one (engine/cluster/follower.py); empty on a memory log.
    delivery: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterStats:
    """This node's figures and every live node's (this one included), and the rooms with members on
    any of them (a room with members on two nodes counts once)."""

    own: NodeStats
    nodes: Mapping[str, NodeStats]
    rooms_active: int


def node_stats(
    node_id: str,
    traffic: EngineStats,
    appender: Appender,
    hub: Hub,
    connections: Connections,
    delivery: Mapping[str, Any] | None = None,
    routing: Mapping[str, Any] | None = None,
) -> NodeStats:
    """This node's figures now, read from the parts that keep them (no I/O)."""
    figures = hub.stats()
    depths: dict[str, int] = figures.pop("queue_depths")  # type: ignore[assignment]
    return NodeStats(
        node_id=node_id,
        connections=len(connections),
        rooms_active=len(connections.rooms_active()),
        messages_per_second=round(traffic.messages_per_second, 3),
        uptime_seconds=round(traffic.uptime_seconds, 3),
        messages_received=traffic.messages_total,
        errors_sent=traffic.errors_total,
        events_appended=appender.stats.events,
        messages_by_type=traffic.messages_by_type,
        errors_by_code=traffic.errors_by_code,
        appender={
            **appender.stats.as_dict(),
            "queue_depth": appender.queue_depth,
            "write_paths": appender.write_paths,
            "routing": dict(routing) if routing is not None else None,
        },
        # Only connections with something queued: an idle node of thousands of sockets stays short.
        fanout={
            **figures,
            "queue_depth_total": sum(depths.values()),
            "queue_depths": {cid: depth for cid, depth in depths.items() if depth},
        },
        delivery=dict(delivery or {}),
    )


def heartbeat_report(own: NodeStats, active_rooms: set[str]) -> dict[str, Any]:
    """What a node stores with each heartbeat (engine/cluster/registry.py) for its peers to show."""
    report = asdict(own)
    report["active_rooms"] = sorted(active_rooms)
    return report


def cluster_stats(own: NodeStats, active_rooms: set[str], reports: Mapping[str, Any]) -> ClusterStats:
    """Every live node's figures: this node's as of now, the others' as of their last heartbeat."""
    nodes = {own.node_id: own}
    rooms = set(active_rooms)
    for node_id, report in reports.items():
        if node_id == own.node_id or not isinstance(report, dict):
            continue
        report = dict(report)
        rooms.update(report.pop("active_rooms", ()))
        try:
            nodes[node_id] = NodeStats(**report)
        except TypeError:  # written by a node running other code (a rolling upgrade): skipped
            log.warning("node %s reports figures this code does not read", node_id)
    return ClusterStats(own=own, nodes=nodes, rooms_active=len(rooms))


__all__ = ["ClusterStats", "NodeStats", "cluster_stats", "heartbeat_report", "node_stats"]
