"""`GET /metrics`: the node's figures in Prometheus' text format.

A custom collector reads the engine's own counters at scrape time (engine/features/traffic.py, the appender's
histograms, the hub), so nothing is counted twice and the hot path pays nothing for metrics. Each app
gets its own `CollectorRegistry`: the global one would mix the engines of every app a process builds
(tests build many) and refuse a second registration.

Unauthenticated, like `/ws/health`: Prometheus scrapers rarely carry a JWT, and the figures are
aggregate counts with no user, room or message content. Keep the port off the public internet (or
filter `/metrics` at the proxy) if even those counts are sensitive.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from engine.log.appender import Histogram
from engine.model.errors import StoreUnavailable
from engine.service import Engine

METRICS_PATH = "/metrics"


def _histogram(name: str, doc: str, histogram: Histogram, scale: float = 1.0) -> HistogramMetricFamily:
    """The appender's per-bucket counts as Prometheus' cumulative buckets; `scale` converts units."""
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip(histogram.bounds, histogram.counts, strict=False):
        cumulative += count
        buckets.append((floatToGoString(bound * scale), cumulative))  # type: ignore[no-untyped-call]
    buckets.append(("+Inf", histogram.count))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=histogram.total * scale)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(family: CounterMetricFamily, label_values: Sequence[tuple[str, int]]) -> CounterMetricFamily:
    for label, value in label_values:
        family.add_metric([label], value)
    return family


class EngineCollector(Collector):
    """Reads `app.state.engine` at each scrape; yields nothing before the lifespan has started it."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        engine: Engine | None = getattr(self._app.state, "engine", None)
        if engine is None:
            return
        try:
            node = engine.node_stats()
            appender = engine.appender_stats
        except StoreUnavailable:  # stopping: report nothing rather than half the families
            return
        yield _gauge("collab_connections", "Open WebSocket connections on this node.", node.connections)
        yield _gauge(
            "collab_rooms_active", "Rooms with at least one connection on this node.", node.rooms_active
        )
        yield _gauge(
            "collab_uptime_seconds", "Seconds since this node's engine started.", node.uptime_seconds
        )
        yield _labelled(
            CounterMetricFamily(
                "collab_messages_received", "Inbound WebSocket messages, by type.", labels=["type"]
            ),
            list(node.messages_by_type.items()),
        )
        yield _labelled(
            CounterMetricFamily(
                "collab_errors_sent", "Error messages sent to WebSocket clients, by code.", labels=["code"]
            ),
            list(node.errors_by_code.items()),
        )
        yield _counter("collab_events_appended", "Events this node appended to the log.", appender.events)
        yield _counter("collab_append_batches", "Group-commit batches committed.", appender.batches)
        yield _counter(
            "collab_append_failed_batches", "Group-commit batches that failed.", appender.failed_batches
        )
        yield _histogram("collab_append_batch_size", "Events per committed batch.", appender.batch_size)
        yield _histogram(
            "collab_append_commit_latency_seconds",
            "Time to commit one batch.",
            appender.commit_latency_ms,
            scale=0.001,
        )
        yield _gauge(
            "collab_append_queue_depth", "Appends waiting for the next commit.", node.appender["queue_depth"]
        )
        fanout = node.fanout
        yield _gauge(
            "collab_fanout_queue_depth", "Messages queued for all connections.", fanout["queue_depth_total"]
        )
        yield _gauge(
            "collab_fanout_queue_depth_max", "Deepest connection send queue.", fanout["queue_depth_max"]
        )
        delivered = CounterMetricFamily(
            "collab_fanout_messages",
            "Fanout outcomes, by outcome (delivered counts frames).",
            labels=["outcome"],
        )
        for outcome in ("delivered", "dropped_volatile", "coalesced", "duplicates"):
            delivered.add_metric([outcome], fanout[outcome])
        yield delivered
        yield _counter(
            "collab_slow_consumer_closes",
            "Connections closed as slow consumers.",
            fanout["slow_consumer_closes"],
        )


_TEXT_RESPONSE: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}
}


def install_metrics(app: FastAPI) -> CollectorRegistry:
    """Give `app` its own registry with the engine's collector, and the `/metrics` route."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(app))
    app.state.metrics_registry = registry

    @app.get(METRICS_PATH, tags=["monitoring"], response_class=Response, responses=_TEXT_RESPONSE)
    async def metrics(request: Request) -> Response:
        """Prometheus text exposition of this node's figures (no authentication: see api/metrics.py)."""
        body = generate_latest(request.app.state.metrics_registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return registry


__all__ = ["METRICS_PATH", "EngineCollector", "install_metrics"]
