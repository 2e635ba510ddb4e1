"""`RateLimitSync`: rate limits per user across nodes, through PostgreSQL (docs/protocol.md: "Limits hold
per user across all of that user's connections and across nodes").

Why an exchange and not a shared counter per message: a database round trip per message would put a
write in every message's path, for a limit of 60 a minute. Instead each node counts on its own
(engine/features/limits.py) and, every `interval` seconds, adds what it counted to `rate_counts` (per user,
node and wall-clock-aligned minute and hour window), records the blocks it imposed in `rate_blocks`,
and reads back what the other nodes counted for the users it serves. A user spread over several nodes
can therefore exceed a limit by at most what they send within one interval. Redis is not needed for
this (the seed calls it optional).

Windows are aligned on the wall clock so that every node adds to the same rows; the other nodes'
estimate is the same sliding-window counter as the local one: the current window plus the previous
one weighted by its overlap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.log.lifecycle import STOP_TIMEOUT, cancel_and_wait

log = logging.getLogger(__name__)

MINUTE: Final = 60
HOUR: Final = 3600
PERIODS: Final = (MINUTE, HOUR)


@dataclass(frozen=True, slots=True)
class Remote:
    """What other nodes counted for one user: sliding estimates for the minute and the hour."""

    minute: float = 0.0
    hour: float = 0.0


class SharedCounts(Protocol):
    """A node's rate limiter as the exchange sees it (engine/features/limits.py `RateLimiter`)."""

    def take_unshared(self) -> dict[str, int]: ...
    def take_new_blocks(self) -> dict[str, tuple[float, str]]: ...
    def give_back(self, counts: dict[str, int]) -> None: ...
    def known_users(self) -> list[str]: ...
    def remote_of(self, user_id: str) -> Remote: ...
    def set_remote(self, remote: dict[str, Remote]) -> None: ...
    def block(self, user_id: str, seconds: float, reason: str) -> None: ...


KEEP: Final = timedelta(hours=3)  # rows older than this no longer count towards any window

_ADD = """
INSERT INTO rate_counts (user_id, node_id, period, window_start, count)
SELECT u, :node, :period, :start, c FROM unnest(CAST(:users AS text[]), CAST(:counts AS int[])) AS t(u, c)
ON CONFLICT (user_id, node_id, period, window_start) DO UPDATE SET count = rate_counts.count + excluded.count
"""
_BLOCK = """
INSERT INTO rate_blocks (user_id, blocked_until, reason) VALUES (:user, :until, :reason)
ON CONFLICT (user_id) DO UPDATE
SET blocked_until = GREATEST(rate_blocks.blocked_until, excluded.blocked_until), reason = excluded.reason
"""
_OTHERS = """
SELECT user_id, period, window_start, sum(count) AS count FROM rate_counts
WHERE user_id = ANY(CAST(:users AS text[])) AND node_id <> :node AND window_start >= :since
GROUP BY user_id, period, window_start
"""
_BLOCKS = """
SELECT user_id, blocked_until, reason FROM rate_blocks
WHERE user_id = ANY(CAST(:users AS text[])) AND blocked_until > :now
"""
_FORGET = "DELETE FROM rate_counts WHERE window_start < :before"
_FORGET_BLOCKS = "DELETE FROM rate_blocks WHERE blocked_until < :before"


def window_start(now: datetime, period: int) -> datetime:
    """The start of the wall-clock-aligned window of `period` seconds that holds `now`."""
    epoch = now.timestamp()
    return datetime.fromtimestamp(epoch - epoch % period, UTC)


def estimate(counts: dict[datetime, int], now: datetime, period: int) -> float:
    """Sliding-window estimate from aligned windows: current + previous x overlap."""
    current = window_start(now, period)
    previous = current - timedelta(seconds=period)
    overlap = 1.0 - (now - current).total_seconds() / period
    return counts.get(current, 0) + counts.get(previous, 0) * overlap


class RateLimitSync:
    def __init__(
        self,
        db_engine: AsyncEngine,
        limiter: SharedCounts,
        node_id: str,
        *,
        interval: float = 1.0,
    ) -> None:
        self.interval = interval
        self._db_engine = db_engine
        self._limiter = limiter
        self._node_id = node_id
        self._task: asyncio.Task[None] | None = None
        self._last_cleanup = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"rate-sync:{self._node_id}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task, STOP_TIMEOUT)
            self._task = None
        try:
            await self.exchange()  # what was counted since the last exchange still counts elsewhere
        except Exception as exc:
            log.debug("last rate-limit exchange failed: %s: %s", type(exc).__name__, exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.exchange()
            except Exception as exc:  # the database is away: counts stay local until it is back
                log.warning("rate-limit exchange failed: %s: %s", type(exc).__name__, exc)

    def remote_of(self, user_id: str) -> Remote:
        """What the other nodes had counted for `user_id` at the last exchange."""
        return self._limiter.remote_of(user_id)

    async def exchange(self) -> None:
        """Share this node's counts and blocks, and take the other nodes' for the users it serves."""
        now = datetime.now(UTC)
        unshared = self._limiter.take_unshared()
        blocks = self._limiter.take_new_blocks()
        users = self._limiter.known_users()
        try:
            async with self._db_engine.begin() as conn:
                if unshared:
                    names, counts = list(unshared), list(unshared.values())
                    for period in PERIODS:
                        await conn.execute(
                            text(_ADD),
                            {
                                "node": self._node_id,
                                "period": period,
                                "start": window_start(now, period),
                                "users": names,
                                "counts": counts,
                            },
                        )
                for user_id, (seconds, reason) in blocks.items():
                    until = now + timedelta(seconds=seconds)
                    await conn.execute(text(_BLOCK), {"user": user_id, "until": until, "reason": reason})
                if not users:
                    return
                since = window_start(now, HOUR) - timedelta(hours=1)
                rows = (
                    await conn.execute(text(_OTHERS), {"users": users, "node": self._node_id, "since": since})
                ).all()
                blocked = (await conn.execute(text(_BLOCKS), {"users": users, "now": now})).all()
        except Exception:
            # Not shared after all: count them again next time rather than lose them.
            self._limiter.give_back(unshared)
            raise
        windows: dict[tuple[str, int], dict[datetime, int]] = {}
        for row in rows:
            user_id, period, start, count = str(row[0]), int(row[1]), row[2], int(row[3])
            windows.setdefault((user_id, period), {})[start] = count
        remote = {
            user_id: Remote(
                minute=estimate(windows.get((user_id, MINUTE), {}), now, MINUTE),
                hour=estimate(windows.get((user_id, HOUR), {}), now, HOUR),
            )
            for user_id in {user_id for user_id, _ in windows}
        }
        self._limiter.set_remote(remote)
        for row in blocked:
            self._limiter.block(row.user_id, (row.blocked_until - now).total_seconds(), row.reason)
        await self._cleanup(now)

    async def _cleanup(self, now: datetime) -> None:
        if time.monotonic() - self._last_cleanup < HOUR / 4:
            return
        self._last_cleanup = time.monotonic()
        async with self._db_engine.begin() as conn:
            await conn.execute(text(_FORGET), {"before": now - KEEP})
            await conn.execute(text(_FORGET_BLOCKS), {"before": now})


__all__ = ["RateLimitSync", "Remote", "SharedCounts", "estimate", "window_start"]
