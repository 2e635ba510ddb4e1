"""engine/features/traffic.py: counters, the rolling rate and uptime, driven by a fake clock."""

from __future__ import annotations

import pytest

from engine.features.traffic import RATE_WINDOW_SECONDS, EngineStats, RollingRate


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_stats_count_messages_by_type_and_errors_by_code() -> None:
    stats = EngineStats(FakeClock())
    for kind in ("join_room", "cell_update", "cell_update", "ping"):
        stats.message_received(kind)
    stats.error_sent("VERSION_CONFLICT")
    stats.error_sent("VERSION_CONFLICT")
    stats.error_sent("INVALID_JSON")
    assert stats.messages_by_type == {"cell_update": 2, "join_room": 1, "ping": 1}
    assert stats.errors_by_code == {"INVALID_JSON": 1, "VERSION_CONFLICT": 2}
    assert (stats.messages_total, stats.errors_total) == (4, 3)


def test_stats_views_are_copies() -> None:
    stats = EngineStats(FakeClock())
    stats.message_received("ping")
    view = stats.messages_by_type
    stats.message_received("ping")
    assert view == {"ping": 1}


def test_stats_uptime_follows_the_clock() -> None:
    clock = FakeClock()
    stats = EngineStats(clock)
    assert stats.uptime_seconds == 0
    clock.now += 42.5
    assert stats.uptime_seconds == 42.5


def test_rate_right_after_start_divides_by_at_least_one_second() -> None:
    clock = FakeClock()
    rate = RollingRate(clock)
    rate.add(3)
    assert rate.per_second() == 3.0
    clock.now += 2
    assert rate.per_second() == 1.5


def test_rate_averages_over_the_window_once_it_is_full() -> None:
    clock = FakeClock()
    rate = RollingRate(clock, window=10)
    for _ in range(20):
        rate.add(2)
        clock.now += 1
    # 20 seconds in: only the last 10 one-second buckets count, 2 each.
    assert rate.per_second() == pytest.approx(2.0, abs=0.21)


def test_rate_drops_to_zero_after_a_quiet_window() -> None:
    clock = FakeClock()
    stats = EngineStats(clock)
    for _ in range(100):
        stats.message_received("cursor_move")
    assert stats.messages_per_second == 100
    clock.now += RATE_WINDOW_SECONDS + 1
    assert stats.messages_per_second == 0
    assert stats.messages_by_type == {"cursor_move": 100}  # totals are never forgotten


def test_rate_memory_is_bounded_by_the_window() -> None:
    clock = FakeClock()
    rate = RollingRate(clock, window=5)
    for _ in range(1000):
        rate.add()
        clock.now += 0.5
    assert len(rate._buckets) <= 5


def test_rate_refuses_an_empty_window() -> None:
    with pytest.raises(ValueError, match="at least one second"):
        RollingRate(FakeClock(), window=0)
