"""`StatsReporting`: the figures `/ws/stats`, `/ws/stats/detailed` and `/metrics` show, read from the
parts of the engine that keep them (engine/features/traffic.py's counters, the appender, the hub).

Everything here is this node's and read without I/O, except the log's head, which is the database's
and is read on demand. Figures are per node on purpose: nodes share only PostgreSQL (DESIGN.md,
principle 7), so a cluster view is the sum of the nodes' own reports.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.core import EngineCore
from engine.features.traffic import EngineStats
from engine.log.appender import AppenderStats, is_connectivity_error
from engine.model.errors import StoreUnavailable

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


@dataclass(frozen=True)
class ClusterStats:
    """This node's figures and every live node's (this one included), and the rooms with members on
    any of them (a room with members on two nodes counts once)."""

    own: NodeStats
    nodes: Mapping[str, NodeStats]
    rooms_active: int


class StatsReporting(EngineCore):
    """Statistics of the `Engine` (engine/service.py mixes them in)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = EngineStats()

    @property
    def appender_stats(self) -> AppenderStats:
        """The appender's batch and latency figures (raises StoreUnavailable before start)."""
        return self._running_appender().stats

    @property
    def rooms_active(self) -> int:
        """Rooms with at least one connection on this node."""
        return len(self._active_rooms())

    def node_stats(self) -> NodeStats:
        """This node's figures now. Raises StoreUnavailable when the engine is not running."""
        appender = self._running_appender()
        hub = self.hub.stats()
        depths: dict[str, int] = hub.pop("queue_depths")  # type: ignore[assignment]
        return NodeStats(
            node_id=self.node_id,
            connections=self.connection_count,
            rooms_active=self.rooms_active,
            messages_per_second=round(self.stats.messages_per_second, 3),
            uptime_seconds=round(self.stats.uptime_seconds, 3),
            messages_received=self.stats.messages_total,
            errors_sent=self.stats.errors_total,
            events_appended=appender.stats.events,
            messages_by_type=self.stats.messages_by_type,
            errors_by_code=self.stats.errors_by_code,
            appender={
                **appender.stats.as_dict(),
                "queue_depth": appender.queue_depth,
                "write_paths": appender.write_paths,
            },
            # Only connections with something queued: an idle node of thousands of sockets stays short.
            fanout={
                **hub,
                "queue_depth_total": sum(depths.values()),
                "queue_depths": {cid: depth for cid, depth in depths.items() if depth},
            },
        )

    def _node_report(self) -> Mapping[str, Any] | None:
        """What this node stores with each heartbeat (engine/cluster/registry.py) for peers to show."""
        try:
            report = asdict(self.node_stats())
        except StoreUnavailable:
            return None
        report["active_rooms"] = sorted(self._active_rooms())
        return report

    def _active_rooms(self) -> set[str]:
        return {room for connection in self._connections.values() for room in connection.rooms}

    async def cluster_stats(self) -> ClusterStats:
        """Every live node's figures: this node's as of now, the others' as of their last heartbeat."""
        own = self.node_stats()
        nodes = {own.node_id: own}
        rooms = self._active_rooms()
        try:
            reports = await self.nodes.reports() if self.nodes is not None else {}
        except Exception as exc:
            if is_connectivity_error(exc):
                raise StoreUnavailable(f"the node table is unreachable: {type(exc).__name__}") from exc
            raise
        for node_id, report in reports.items():
            if node_id == own.node_id or not isinstance(report, dict):
                continue
            rooms.update(report.pop("active_rooms", ()))
            try:
                nodes[node_id] = NodeStats(**report)
            except TypeError:  # written by a node running other code (a rolling upgrade): skipped
                log.warning("node %s reports figures this code does not read", node_id)
        return ClusterStats(own=own, nodes=nodes, rooms_active=len(rooms))

    async def log_head(self) -> int:
        """The newest committed position of the whole log (every node's appends)."""
        try:
            return await self.store.head()
        except Exception as exc:
            if is_connectivity_error(exc):
                raise StoreUnavailable(f"the event log is unreachable: {type(exc).__name__}") from exc
            raise


__all__ = ["NodeStats", "StatsReporting"]
