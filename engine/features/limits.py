"""Per-user rate limits of inbound messages on this node (docs/protocol.md, `RATE_LIMIT_EXCEEDED`).

Two budgets per user, shared by all of that user's connections on this node:

* the seed's: `per_minute` and `per_hour` messages; exceeding either blocks the user for
  `block_seconds` (the seed's `WEBSOCKET_BLOCK_DURATION_MINUTES`), during which every durable message
  is refused;
* the volatile budget: `cursor_move`, `typing_*` and `file_upload_progress` count against
  `volatile_per_second` instead of the seed's limits, and exceeding it refuses the message without a
  block; a block does not refuse them (a user must never be blocked for moving the mouse).

Reads are never counted: `ping`, `load_sheet`, `refresh_token`. A range update (`cells_update`)
counts as one message, however many cells it writes. A refused message is not counted either, so a
client that keeps sending while limited does not push its own `retry_after` further out.

Algorithm: a sliding-window *counter* per limit (the count of the current fixed window plus the
previous window's count weighted by how much of it still overlaps the sliding window). Chosen over a
sliding-window log, which is exact but keeps one timestamp per message (up to 1000 per user for the
hour), and over a token bucket, whose refill lets twice the limit through across a window boundary
and so does not mean "N per minute". The counter keeps two integers per limit per user, and its
estimate assumes the previous window's messages were spread evenly, which is the usual trade-off.

Bounded memory: users idle for longer than the longest window (and not blocked) are forgotten, in a
sweep run at most once per `prune_interval` seconds from `check` itself.

Pure apart from the clock, which is passed in (a function returning seconds, e.g. `time.monotonic`):
no asyncio, no I/O.

Across nodes: each node counts its own messages here and engine/cluster/rate_sync.py exchanges them through
PostgreSQL every second or so. What other nodes counted for a user (`set_remote`: their sliding
estimates for the minute and the hour) is added to this node's own estimate, and a block another
node imposed (`block`) applies here too. So a user's limits hold across all their connections on all
nodes, give or take what one user sends within one exchange interval. The volatile budget (per
second) stays per node: an exchange every second cannot track it, and it only protects the node.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.cluster.rate_sync import Remote
from engine.model.errors import Rejected

Clock = Callable[[], float]

# Inbound message types that count against the volatile budget; `ping` is not counted at all.
VOLATILE_MESSAGES = frozenset({"cursor_move", "typing_start", "typing_stop", "file_upload_progress"})
UNCOUNTED_MESSAGES = frozenset({"ping", "load_sheet", "refresh_token"})

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
    _remote: dict[str, Remote] = field(default_factory=dict, init=False, repr=False)
    _unshared: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _new_blocks: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def check(self, user_id: str, message_type: str) -> None:
        """Count `message_type` from `user_id`, or raise RateLimitExceeded (and count nothing)."""
        if message_type in UNCOUNTED_MESSAGES:
            return
        now = self.clock()
        self._prune(now)
        user = self._user(user_id, now)
        limits = self.limits
        # A block refuses durable messages only: a user must never be blocked for moving the mouse,
        # and volatile messages have a budget of their own.
        if now < user.blocked_until and message_type not in VOLATILE_MESSAGES:
            raise _exceeded(user.block_reason, user.blocked_until - now)
        if message_type in VOLATILE_MESSAGES:
            if not user.second.fits(now, limits.volatile_per_second):
                wait = user.second.retry_after(now, limits.volatile_per_second)
                raise _exceeded("too many requests per second", wait)
            user.second.add(now)
            return
        remote = self._remote.get(user_id, _NOTHING_REMOTE)
        for window, limit, others, period in (
            (user.minute, limits.per_minute, remote.minute, "minute"),
            (user.hour, limits.per_hour, remote.hour, "hour"),
        ):
            # Other nodes' messages take their share of the limit; what is left is this node's.
            left = limit - others
            if window.estimate(now) + 1 > left + 1e-9:
                if limits.block_seconds > 0:
                    user.blocked_until = now + limits.block_seconds
                    user.block_reason = f"too many requests per {period}"
                    self._new_blocks[user_id] = user.block_reason
                    wait = limits.block_seconds
                else:
                    wait = window.retry_after(now, max(1, math.floor(left)))
                raise _exceeded(f"too many requests per {period}", wait)
        user.minute.add(now)
        user.hour.add(now)
        self._unshared[user_id] = self._unshared.get(user_id, 0) + 1

    def _user(self, user_id: str, now: float) -> _User:
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User(
                minute=_Window(MINUTE, start=now),
                hour=_Window(HOUR, start=now),
                second=_Window(SECOND, start=now),
            )
        user.last_seen = now
        return user

    def forget(self, user_id: str) -> None:
        self._users.pop(user_id, None)
        self._remote.pop(user_id, None)

    # Sharing with other nodes (engine/cluster/rate_sync.py).

    def take_unshared(self) -> dict[str, int]:
        """Messages counted here since the last call, per user: for the other nodes."""
        taken, self._unshared = self._unshared, {}
        return taken

    def take_new_blocks(self) -> dict[str, tuple[float, str]]:
        """Blocks imposed here since the last call: user -> (seconds left, reason)."""
        now = self.clock()
        taken, self._new_blocks = self._new_blocks, {}
        return {
            user_id: (self._users[user_id].blocked_until - now, reason)
            for user_id, reason in taken.items()
            if user_id in self._users and self._users[user_id].blocked_until > now
        }

    def give_back(self, counts: dict[str, int]) -> None:
        """Counts `take_unshared` returned that could not be shared: shared with the next ones."""
        for user_id, count in counts.items():
            self._unshared[user_id] = self._unshared.get(user_id, 0) + count

    def known_users(self) -> list[str]:
        """Users this node tracks: whose counts on other nodes it needs."""
        return list(self._users)

    def remote_of(self, user_id: str) -> Remote:
        return self._remote.get(user_id, _NOTHING_REMOTE)

    def set_remote(self, remote: dict[str, Remote]) -> None:
        """Other nodes' estimates for the users this node tracks (users missing: none)."""
        self._remote = remote

    def touch(self, user_id: str) -> None:
        """Track `user_id` before their first message (they just connected), so their counts on
        other nodes are known before they send anything here."""
        self._user(user_id, self.clock())

    def block(self, user_id: str, seconds: float, reason: str) -> None:
        """A block another node imposed: applies here for `seconds` more, unless one here lasts longer."""
        now = self.clock()
        user = self._user(user_id, now)
        if now + seconds > user.blocked_until:
            user.blocked_until = now + seconds
            user.block_reason = reason

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


_NOTHING_REMOTE = Remote()


class BadFrameBudget:
    """Frames one connection sent that failed before reaching a handler (invalid JSON, an unknown
    type, a schema violation): at most `limit` within any `window` seconds.

    Each such frame costs the server a parse and an error reply, and costs the client nothing: one
    user with a few sockets could keep a core busy answering garbage and slow everyone else. A
    correct client never sends one, so the budget is small and going over it closes the connection
    (1008). A sliding log, exact, of at most `limit + 1` timestamps.
    """

    def __init__(self, limit: int, window: float, clock: Clock = time.monotonic) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._times: deque[float] | None = None  # made at the first bad frame: most never send one

    def spend(self) -> bool:
        """Count one bad frame; False when it is over the budget."""
        if self._times is None:
            self._times = deque(maxlen=self._limit + 1)
        now = self._clock()
        while self._times and now - self._times[0] >= self._window:
            self._times.popleft()
        self._times.append(now)
        return len(self._times) <= self._limit


def _exceeded(why: str, wait: float) -> RateLimitExceeded:
    return RateLimitExceeded(f"Rate limit exceeded: {why}", retry_after=max(1, math.ceil(wait)))


__all__ = [
    "UNCOUNTED_MESSAGES",
    "VOLATILE_MESSAGES",
    "RateLimitExceeded",
    "RateLimiter",
    "RateLimits",
]
