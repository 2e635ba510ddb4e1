"""The narrow interfaces the node kernel hands its feature components (engine/node.py).

A component asks for what it uses, one function each, never for the node: `commit` appends an event
and publishes it before anything else can run, `submit` queues one without waiting (for a connection
that reads its next message before this one commits), `reply` queues messages for one connection behind
what is already queued for it (so replies and fanned-out events reach a socket in one order),
`flush` waits until they have gone out. Tests hand in their own, over the memory store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from engine.model.events import AppendOutcome, Committed, Duplicate, NewEvent
from engine.protocol import ack


class Commit(Protocol):
    """Append and publish. Raises StoreUnavailable, or the `Rejected` of a decision made inside the
    append; a Duplicate is returned unpublished (its original was published), and so is a Conflict
    (an expected version that did not hold: only claims set one)."""

    async def __call__(self, event: NewEvent, /) -> AppendOutcome: ...


class Submit(Protocol):
    """Queue an event for appending now, in the caller's order; the awaitable is what `Commit` would
    return, publishing included, and must be awaited at once. None when it cannot be queued without
    waiting: `Commit` it instead. Raises StoreUnavailable."""

    def __call__(self, event: NewEvent, /) -> Awaitable[AppendOutcome] | None: ...


@dataclass(frozen=True, slots=True)
class Submitted:
    """A message whose event is queued: `outcome` settles it (publishing included), `answer` replies
    to the sender with that outcome, once the connection's earlier messages are answered."""

    outcome: Awaitable[AppendOutcome]
    answer: Callable[[AppendOutcome], Awaitable[None]]


class Reply(Protocol):
    """Queue messages for one connection. Raises SubscriberClosed once it is gone."""

    async def __call__(self, connection_id: str, /, *messages: dict[str, Any]) -> None: ...


class Flush(Protocol):
    """Wait until what is queued for the connection has been sent."""

    async def __call__(self, connection_id: str, /) -> None: ...


async def acknowledge(
    reply: Reply,
    connection_id: str,
    client_msg_id: str | None,
    outcome: AppendOutcome,
    *,
    room_id: str | None = None,
    volatile: bool = False,
) -> None:
    """The sender's `ack` once its event is durable (again, with the original `seq`, for a repeat).
    Volatile events take no place in a sequence: their ack has no `seq`."""
    if client_msg_id is None or not isinstance(outcome, Committed | Duplicate):
        return
    seq = None if volatile else outcome.stream_version
    await reply(connection_id, ack(client_msg_id, room_id=room_id, seq=seq))


__all__ = ["Commit", "Flush", "Reply", "Submit", "Submitted", "acknowledge"]


async def commit_leaves(commit: Commit, leaves: list[NewEvent], log: logging.Logger) -> None:
    """Commit a departed connection's leaves, one commit call each, awaited together: each room's is
    published in its seq order, and many rooms take about one commit. A leave that fails is logged:
    the connection is gone either way."""
    outcomes = await asyncio.gather(*(commit(leave) for leave in leaves), return_exceptions=True)
    for leave, outcome in zip(leaves, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            log.error("could not record the departure from %s: %s", leave.stream_id, outcome)
