"""Bringing one connection up to date on one AI request: what a retried `ai_request` gets besides its ack.

A requester's connection hears of a request's steps only while it is open, so a tab that reconnected
after a network blip never gets the steps published meanwhile, its answer included. Its retry of the
request (the same request_id, acked as the original) therefore also gets the request's latest
recorded step, as recorded (its own `seq` and `ts`), queued before the ack: the request's ending if it
ended (a step recorded after an ending does not count, as in engine/projections/ai_requests.py), else
its latest `ai_progress` (or its `ai_start`). The steps after that reach it live, as they reach every
connection of the requester.

Exact, as a room's catch-up is (engine/fanout/catch_up.py), from the connection's span of the user's
topic (`SendQueue.span`):

* Never twice: a step at or above the first seq queued to the connection was published to it (the
  user's topic is published in seq order, and every AI step to every connection of the user), and
  one sent apart by an earlier retry is remembered (`SendQueue.reaches`): neither is sent again. The
  node first waits until it has published the step itself (within the append timeout): a step below
  the first seq queued is then one published before the connection joined.
* Never behind a later step: the step is queued with no await after the check that nothing of the
  user's stream past what was read has been queued to the connection. When something was, the stream
  is read on from there first (at most `MAX_READS` times; then the step goes anyway, and its `seq`
  tells a client that it is older than what it has).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from engine.fanout.subscriber import Subscriber
from engine.features.ai.run import RequestKey, idempotency_key
from engine.model.catalogue import AI_CANCELLED, AI_COMPLETED, AI_EVENTS, AI_FAILED
from engine.model.events import RecordedEvent
from engine.model.reading import PAGE, ReadStream
from engine.model.streams import user_stream
from engine.projections.ai_requests import end_key
from engine.protocol.ai_rendering import render_ai
from engine.protocol.rendering import encode

ENDINGS = frozenset({AI_COMPLETED, AI_FAILED, AI_CANCELLED})
MAX_READS = 10  # reads of a busy user stream before the latest step is sent regardless

ReadByKey = Callable[[str, str, str], Awaitable[RecordedEvent | None]]
"""The event a user appended to a stream under an idempotency key, if any."""
Published = Callable[[RecordedEvent], Awaitable[None]]
"""Waits (within a bound) until this node has published a recorded event."""


async def bring_up_to_date(
    subscriber: Subscriber,
    key: RequestKey,
    *,
    read_by_key: ReadByKey,
    read_stream: ReadStream,
    published: Published,
) -> None:
    """Queue the request's latest recorded step for the connection unless it has it; see the module
    docstring. Nothing for a request never started. Raises StoreUnavailable, SubscriberClosed."""
    user_id, request_id = key
    stream = user_stream(user_id)
    latest = await read_by_key(user_id, end_key(request_id), stream)
    read_to = 0 if latest is None else latest.stream_version
    if latest is None:
        started = await read_by_key(user_id, idempotency_key(request_id), stream)
        if started is None:
            return
        latest, read_to = await _read_on(read_stream, key, started, started.stream_version)
    reads = 1
    while True:
        await published(latest)
        await subscriber.wait_for_room()
        # From this check to the offer below nothing awaits: no step can be queued in between.
        span = subscriber.span(stream)
        if latest.type in ENDINGS or span is None or span[1] <= read_to or reads >= MAX_READS:
            break
        latest, read_to = await _read_on(read_stream, key, latest, read_to)
        reads += 1
    if not subscriber.reaches(stream, latest.stream_version):
        subscriber.offer_apart(stream, latest.stream_version, encode(render_ai(latest)))


async def _read_on(
    read: ReadStream, key: RequestKey, latest: RecordedEvent, after: int
) -> tuple[RecordedEvent, int]:
    """The request's latest step among `latest` and the user's events after version `after` (its
    ending as soon as one is found), and the version read up to."""
    user_id, request_id = key
    while True:
        page = await read(user_stream(user_id), after_version=after, limit=PAGE)
        for event in page:
            if event.type in AI_EVENTS and event.data.get("request_id") == request_id:
                if event.type in ENDINGS:
                    return event, event.stream_version
                latest = event
        if page:
            after = page[-1].stream_version
        if len(page) < PAGE:
            return latest, after


__all__ = ["MAX_READS", "bring_up_to_date"]
