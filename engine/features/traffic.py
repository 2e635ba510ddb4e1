"""What a node counts about its own traffic: messages by type, errors by code, a rolling rate, uptime.

Pure bookkeeping, no I/O and no event loop: the WebSocket layer calls `message_received` and
`error_sent` once per message, and `/ws/stats`, `/ws/stats/detailed` and `/metrics` read the figures.
The clock is injected (monotonic seconds), so the rate and the uptime are testable without sleeping.

The counters are this node's since it started, never the log's: the log's own figures (its head,
what this node appended) come from the appender and the store (engine/features/stats.py).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Final

Clock = Callable[[], float]

RATE_WINDOW_SECONDS: Final = 60
"""`messages_per_second` averages over this many whole seconds (fewer right after start): long enough
to smooth bursts, short enough that a dashboard sees a load change within a minute."""


class RollingRate:
    """Events per second over the last `window` seconds, in one-second buckets.

    Memory is bounded by the window, whatever the rate: a bucket holds a count, never the events.
    """

    def __init__(self, clock: Clock, window: int = RATE_WINDOW_SECONDS) -> None:
        if window < 1:
            raise ValueError("the window must be at least one second")
        self._clock = clock
        self._window = window
        self._started = clock()
        self._buckets: deque[tuple[int, int]] = deque()  # (second, count), oldest first

    def add(self, count: int = 1) -> None:
        second = int(self._clock())
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1] = (second, self._buckets[-1][1] + count)
        else:
            self._buckets.append((second, count))
        self._expire(second)

    def per_second(self) -> float:
        """The average over the window, or over the time since start if that is shorter."""
        now = self._clock()
        self._expire(int(now))
        span = min(float(self._window), max(now - self._started, 1.0))
        return sum(count for _, count in self._buckets) / span

    def _expire(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self._window:
            self._buckets.popleft()


class EngineStats:
    """One node's traffic counters since it started."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._messages: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._rate = RollingRate(clock)

    def message_received(self, kind: str) -> None:
        """Count one inbound message of type `kind` (a validated type, so the set of labels is bounded)."""
        self._messages[kind] += 1
        self._rate.add()

    def error_sent(self, code: str) -> None:
        """Count one error message sent to a client, by its code."""
        self._errors[code] += 1

    @property
    def messages_by_type(self) -> Mapping[str, int]:
        return dict(sorted(self._messages.items()))

    @property
    def errors_by_code(self) -> Mapping[str, int]:
        return dict(sorted(self._errors.items()))

    @property
    def messages_total(self) -> int:
        return sum(self._messages.values())

    @property
    def errors_total(self) -> int:
        return sum(self._errors.values())

    @property
    def messages_per_second(self) -> float:
        return self._rate.per_second()

    @property
    def uptime_seconds(self) -> float:
        return self._clock() - self._started


__all__ = ["RATE_WINDOW_SECONDS", "EngineStats", "RollingRate"]
