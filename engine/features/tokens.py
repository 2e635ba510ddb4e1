"""Tokens on open connections: a warning before a connection's token expires, and the close when it has.

A token is checked once, at the handshake; an open socket would otherwise outlive it for ever. So each
connection's expiry is tracked here: `token_expiring {expires_at}` is sent 60 seconds before (or half
the token's lifetime, when that is shorter), and when `exp` passes the connection gets an
`AUTHENTICATION_FAILED` error ("token expired") and is closed with 4401. `refresh_token` swaps the
token in place and re-tracks the connection with the new expiry (engine/session.py).

One task serves every connection of the node: deadlines are kept in a heap, and the task sleeps until
the earliest. Re-tracking or forgetting a connection leaves its old deadlines in the heap; they are
recognised as stale when they come up (the generation moved on) and skipped, which keeps tracking
O(log n). So that a node whose connections come and go does not hold every closed connection's
deadlines until they pass (a token may live for hours), the heap is rebuilt without the stale ones
once they outnumber the live ones three to one (amortised O(1) per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from engine.features.ports import Flush, Reply
from engine.model.actors import Actor
from engine.protocol import error, token_expiring
from engine.protocol.close_codes import CloseCode
from engine.protocol.error_codes import AUTHENTICATION_FAILED

log = logging.getLogger(__name__)

WARN_BEFORE: Final = timedelta(seconds=60)
# Below this many deadlines the heap is never rebuilt: stale entries cost nothing worth the copy.
COMPACT_FROM: Final = 64
Now = Callable[[], datetime]
CloseConnection = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who a verified token names, and until when it may act (None: the token has no `exp`)."""

    actor: Actor
    expires_at: datetime | None


class VerifyToken(Protocol):
    """Verifies a token as the handshake does; raises AuthenticationFailed. The api provides it: the
    engine never sees JWT."""

    def __call__(self, token: str) -> Credentials: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TokenExpiry:
    def __init__(self, *, reply: Reply, flush: Flush, close: CloseConnection, now: Now = _utc_now) -> None:
        self._reply = reply
        self._flush = flush
        self._close = close
        self._now = now
        self._deadlines: list[tuple[datetime, int, str, bool]] = []  # (when, generation, connection, expiry?)
        self._generation: dict[str, int] = {}
        self._expires_at: dict[str, datetime] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def track(self, connection_id: str, expires_at: datetime | None) -> None:
        """(Re)schedule the connection's warning and expiry; a token without `exp` is not tracked."""
        generation = self._generation.get(connection_id, 0) + 1
        self._generation[connection_id] = generation
        if expires_at is None:
            self._expires_at.pop(connection_id, None)
            return
        self._expires_at[connection_id] = expires_at
        lifetime = max(expires_at - self._now(), timedelta(0))
        warn_at = expires_at - min(WARN_BEFORE, lifetime / 2)
        heapq.heappush(self._deadlines, (warn_at, generation, connection_id, False))
        heapq.heappush(self._deadlines, (expires_at, generation, connection_id, True))
        self._compact()
        self._wake.set()

    def forget(self, connection_id: str) -> None:
        self._generation.pop(connection_id, None)
        self._expires_at.pop(connection_id, None)
        self._compact()

    @property
    def pending(self) -> int:
        """How many deadlines the heap holds, stale ones included."""
        return len(self._deadlines)

    def expired(self, connection_id: str) -> bool:
        """Whether the connection's token has expired (checked on every message, between sweeps)."""
        expires_at = self._expires_at.get(connection_id)
        return expires_at is not None and self._now() >= expires_at

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="token-expiry")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close_expired(self, connection_id: str) -> None:
        """Tell the connection its token expired, then close it with 4401."""
        self.forget(connection_id)
        notice = error(AUTHENTICATION_FAILED, "token expired", now=self._now())
        try:
            async with asyncio.timeout(2):
                await self._reply(connection_id, notice)
                await self._flush(connection_id)
        except Exception as exc:  # gone already, or not reading: it is closed either way
            log.debug("expiry notice to %s not delivered: %s", connection_id, type(exc).__name__)
        self._close(connection_id, CloseCode.AUTHENTICATION_FAILED)

    def _compact(self) -> None:
        """Drop the stale deadlines once they are three in four: each connection has at most two live."""
        if len(self._deadlines) > max(COMPACT_FROM, 8 * len(self._expires_at)):
            self._deadlines = [d for d in self._deadlines if self._generation.get(d[2]) == d[1]]
            heapq.heapify(self._deadlines)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self._now()
            while self._deadlines and self._deadlines[0][0] <= now:
                _, generation, connection_id, expiry = heapq.heappop(self._deadlines)
                if self._generation.get(connection_id) != generation:
                    continue  # re-tracked or forgotten since
                if expiry:
                    await self.close_expired(connection_id)
                else:
                    with contextlib.suppress(Exception):  # a connection that is gone needs no warning
                        await self._reply(connection_id, token_expiring(self._expires_at[connection_id]))
            delay = (self._deadlines[0][0] - self._now()).total_seconds() if self._deadlines else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if delay is None else max(0.0, delay))


__all__ = ["Credentials", "TokenExpiry", "VerifyToken"]
