"""Stopping background tasks without letting one of them hang a shutdown.

A task cancelled while asyncpg waits on the server (a query, or the cancel request asyncpg sends for
it) can take as long as the network lets it to end. A node that is shutting down must still finish:
it waits a bounded time, then leaves the task to die with the pool it is about to dispose.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

log = logging.getLogger(__name__)

STOP_TIMEOUT: Final = 5.0


async def cancel_and_wait(task: asyncio.Task[Any], timeout: float = STOP_TIMEOUT) -> bool:  # noqa: ASYNC109
    """Cancel `task` and wait up to `timeout` seconds for it to end; False if it did not."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.warning("task %s did not stop within %.0f s; abandoning it", task.get_name(), timeout)
        return False
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("task %s ended with %s: %s", task.get_name(), type(exc).__name__, exc)
    return True


__all__ = ["STOP_TIMEOUT", "cancel_and_wait"]
