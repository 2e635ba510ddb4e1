"""api/metrics.py: the appender's per-bucket counts become Prometheus' cumulative buckets."""

from __future__ import annotations

from api.metrics import _histogram
from engine.log.appender import Histogram


def test_histogram_buckets_are_cumulative_and_scaled() -> None:
    latency = Histogram((1, 10, 100))
    for value in (0.5, 5, 5, 50, 5000):  # milliseconds; the last is beyond every bound
        latency.observe(value)
    family = _histogram("latency_seconds", "doc", latency, scale=0.001)
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("latency_seconds_bucket", "0.001")] == 1
    assert samples[("latency_seconds_bucket", "0.01")] == 3
    assert samples[("latency_seconds_bucket", "0.1")] == 4
    assert samples[("latency_seconds_bucket", "+Inf")] == 5
    assert samples[("latency_seconds_count", None)] == 5
    assert abs(samples[("latency_seconds_sum", None)] - 5.0605) < 1e-9


def test_histogram_without_observations_is_all_zero() -> None:
    family = _histogram("batch_size", "doc", Histogram((1, 2)))
    assert {s.labels.get("le"): s.value for s in family.samples if s.name == "batch_size_bucket"} == {
        "1.0": 0,
        "2.0": 0,
        "+Inf": 0,
    }
