"""Per-user rate limits of inbound messages on this node (PROTOCOL.md, "Rate limiting").

Two budgets per user, shared by all of that user's connections on this node:

* the seed's: `per_minute` and `per_hour` messages; exceeding either blocks the user for
  `block_seconds` (the seed's `WEBSOCKET_BLOCK_DURATION_MINUTES`), during which every counted message
  is refused, volatile ones included;
* the volatile budget: `cursor_move`, `typing_*` and `file_upload_progress` count against
  `volatile_per_second` instead of the seed's limits, and exceeding it refuses the message without a
  block (a user must never be blocked for moving the mouse).

`ping` is never counted. A refused message is not counted either, so a client that keeps sending
while limited does not push its own `retry_after` further out.

Algorithm: a sliding-window *counter* per limit (the count of the current fixed window plus the
previous window's count weighted by how much of it still overlaps the sliding window). Chosen over a
sliding-window log, which is exact but keeps one timestamp per message (up to 1000 per user for the
hour), and over a token bucket, whose refill lets twice the limit through across a window boundary
and so does not mean "N per minute". The counter keeps two integers per limit per user, and its
estimate assumes the previous window's messages were spread evenly, which is the usual trade-off.

Bounded memory: users idle for longer than the longest window (and not blocked) are forgotten, in a
sweep run at most once per `prune_interval` seconds from `check` itself.

Pure apart from the clock, which is passed in (a function returning seconds, e.g. `time.monotonic`):
no asyncio, no I/O. Limits hold per node only; across nodes is issue 5.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.errors import Rejected

Clock = Callable[[], float]

# Inbound message types that count against the volatile budget; `ping` is not counted at all.
VOLATILE_MESSAGES = frozenset({"cursor_move", "typing_start", "typing_stop", "file_upload_progress"})
UNCOUNTED_MESSAGES = frozenset({"ping"})

MINUTE = 60.0
HOUR = 3600.0
SECOND = 1.0


class RateLimitExceeded(Rejected):
    """Refused for a rate limit; nothing was persisted. `details["retry_after"]`: whole seconds, >= 1."""

    code = "RATE_LIMIT_EXCEEDED"


@dataclass(frozen=True, slots=True)
class RateLimits:
    per_minute: int = 60
    per_hour: int = 1000
    block_seconds: float = 15 * 60
    volatile_per_second: int = 30


@dataclass(slots=True)
class _Window:
    """A sliding-window counter of `length` seconds."""

    length: float
    start: float = 0.0  # of the current fixed window
    current: int = 0
    previous: int = 0

    def _roll(self, now: float) -> None:
        elapsed = now - self.start
        if elapsed < self.length:
            return
        windows = int(elapsed // self.length)
        self.previous = self.current if windows == 1 else 0
        self.current = 0
        self.start += windows * self.length

    def estimate(self, now: float) -> float:
        self._roll(now)
        overlap = 1.0 - (now - self.start) / self.length
        return self.previous * overlap + self.current

    def add(self, now: float) -> None:
        self._roll(now)
        self.current += 1

    def fits(self, now: float, limit: int) -> bool:
        """Whether one more message stays within `limit` (a hair of slack for float rounding)."""
        return self.estimate(now) + 1 <= limit + 1e-9

    def retry_after(self, now: float, limit: int) -> float:
        """Seconds from `now` until one more message fits: the estimate is at most `limit - 1`."""
        self._roll(now)
        room = limit - 1
        end = self.start + self.length
        if self.current <= room and self.previous > 0:
            # previous * (1 - (t - start) / length) + current <= room, within this window
            t = self.start + self.length * (1.0 - (room - self.current) / self.previous)
            if t < end:
                return max(0.0, t - now)
        # In the next window: current becomes previous, weighted down as that window goes on.
        fraction = 1.0 - room / self.current if self.current else 0.0
        return max(0.0, end + self.length * max(0.0, fraction) - now)


@dataclass(slots=True)
class _User:
    minute: _Window
    hour: _Window
    second: _Window
    blocked_until: float = 0.0
    block_reason: str = ""  # repeated while blocked, in the seed's words
    last_seen: float = 0.0


@dataclass
class RateLimiter:
    """One per node (it lives in the Engine). `check` before acting on a message: it counts the message
    or raises RateLimitExceeded."""

    limits: RateLimits = field(default_factory=RateLimits)
    clock: Clock = time.monotonic
    prune_interval: float = MINUTE
    _users: dict[str, _User] = field(default_factory=dict, init=False, repr=False)
    _last_prune: float | None = field(default=None, init=False, repr=False)

    def check(self, user_id: str, message_type: str) -> None:
        """Count `message_type` from `user_id`, or raise RateLimitExceeded (and count nothing)."""
        if message_type in UNCOUNTED_MESSAGES:
            return
        now = self.clock()
        self._prune(now)
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User(
                minute=_Window(MINUTE, start=now),
                hour=_Window(HOUR, start=now),
                second=_Window(SECOND, start=now),
            )
        user.last_seen = now
        limits = self.limits
        if now < user.blocked_until:
            raise _exceeded(user.block_reason, user.blocked_until - now)
        if message_type in VOLATILE_MESSAGES:
            if not user.second.fits(now, limits.volatile_per_second):
                wait = user.second.retry_after(now, limits.volatile_per_second)
                raise _exceeded("too many requests per second", wait)
            user.second.add(now)
            return
        for window, limit, period in (
            (user.minute, limits.per_minute, "minute"),
            (user.hour, limits.per_hour, "hour"),
        ):
            if not window.fits(now, limit):
                if limits.block_seconds > 0:
                    user.blocked_until = now + limits.block_seconds
                    user.block_reason = f"too many requests per {period}"
                    wait = limits.block_seconds
                else:
                    wait = window.retry_after(now, limit)
                raise _exceeded(f"too many requests per {period}", wait)
        user.minute.add(now)
        user.hour.add(now)

    def forget(self, user_id: str) -> None:
        self._users.pop(user_id, None)

    @property
    def tracked_users(self) -> int:
        return len(self._users)

    def _prune(self, now: float) -> None:
        if self._last_prune is not None and now - self._last_prune < self.prune_interval:
            return
        self._last_prune = now
        idle = [
            user_id
            for user_id, user in self._users.items()
            if now - user.last_seen > HOUR and now >= user.blocked_until
        ]
        for user_id in idle:
            del self._users[user_id]


def _exceeded(why: str, wait: float) -> RateLimitExceeded:
    return RateLimitExceeded(f"Rate limit exceeded: {why}", retry_after=max(1, math.ceil(wait)))


__all__ = [
    "UNCOUNTED_MESSAGES",
    "VOLATILE_MESSAGES",
    "RateLimitExceeded",
    "RateLimiter",
    "RateLimits",
]
