"""`StatsReporting`: the figures `/ws/stats`, `/ws/stats/detailed` and `/metrics` show, read from the
parts of the engine that keep them (engine/stats.py's counters, the appender, the hub).

Everything here is this node's and read without I/O, except the log's head, which is the database's
and is read on demand. Figures are per node on purpose: nodes share only PostgreSQL (DESIGN.md,
principle 7), so a cluster view is the sum of the nodes' own reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.appender import AppenderStats, is_connectivity_error
from engine.core import EngineCore
from engine.errors import StoreUnavailable
from engine.stats import EngineStats


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
        return len({room for connection in self._connections.values() for room in connection.rooms})

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

    async def log_head(self) -> int:
        """The newest committed position of the whole log (every node's appends)."""
        try:
            return await self.store.head()
        except Exception as exc:
            if is_connectivity_error(exc):
                raise StoreUnavailable(f"the event log is unreachable: {type(exc).__name__}") from exc
            raise


__all__ = ["NodeStats", "StatsReporting"]
