"""Asking the other nodes to act: a request reaches whichever node holds its subject (a connection, a run).

A connection lives on one node, but an admin's REST call lands on any. The node that got the call acts
itself when it holds the connection; otherwise it asks every peer on the `collab_control` channel (the
LISTEN connection of engine/cluster/follower.py) and waits for the answers: the node that holds it
acts and says so, the others say it is not theirs (also a node that does not serve the op). A request
every live peer disclaims is answered as not found; one that some peer leaves unanswered within
`timeout` seconds as unavailable (it may be that peer's).

Why NOTIFY and not a table of connections: connections come and go far more often than admins ask,
and a row per connection would put a database write in every handshake. The cost moves to the rare
request instead: one NOTIFY out, one per peer back. What the holder does is recorded in the log as
usual (the leaves of a removed connection), so nothing here needs to be durable.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from engine.cluster.follower import LogFollower
from engine.cluster.registry import NodeRegistry
from engine.model.errors import StoreUnavailable

log = logging.getLogger(__name__)

CHANNEL: Final = "collab_control"
# A NOTIFY payload is at most 8000 bytes: answers are cut to fit.
MAX_PAYLOAD: Final = 7900

Handler = Callable[[str], Awaitable[Mapping[str, Any] | None]]
"""Acts on this node for a request's subject (a connection id): the result, or None if not here."""


@dataclass
class _Pending:
    asked: frozenset[str]
    answered: set[str] = field(default_factory=set)
    undecided: set[str] = field(default_factory=set)  # peers that could not tell (their store down)
    result: asyncio.Future[Mapping[str, Any] | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ClusterControl:
    def __init__(self, follower: LogFollower, registry: NodeRegistry, *, timeout: float = 3.0) -> None:
        self.node_id = registry.node_id
        self.timeout = timeout
        self._follower = follower
        self._registry = registry
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._follower.listen_also(CHANNEL, self._on_payload)

    def serve(self, op: str, handler: Handler) -> None:
        """Answer requests `op` from other nodes with `handler`."""
        self._handlers[op] = handler

    async def ask(
        self, op: str, subject: str, *, wait_seconds: float | None = None
    ) -> Mapping[str, Any] | None:
        """Ask every live peer to do `op` on `subject`: the result of the one that did, or None when
        each disclaimed it. StoreUnavailable when some did not answer within `wait_seconds` (by
        default `timeout`; an op whose holder takes longer to act, e.g. to commit, says so), or could
        not tell (its handler raised StoreUnavailable): one of them may hold the subject, so "not
        found" would be a guess."""
        peers = self._registry.peers
        if not peers:
            return None
        request_id = uuid.uuid4().hex
        pending = self._pending[request_id] = _Pending(peers)
        try:
            sent = await self._follower.send(
                CHANNEL, _encode({"op": op, "id": request_id, "subject": subject, "from": self.node_id})
            )
            if not sent:  # reconnecting: a peer may hold the subject
                raise StoreUnavailable("the other nodes cannot be reached now; try again")
            wait = self.timeout if wait_seconds is None else wait_seconds
            try:
                async with asyncio.timeout(wait):
                    return await pending.result
            except TimeoutError:
                silent = sorted(pending.asked - pending.answered)
                log.warning("nodes %s did not answer %s of %s within %.1fs", silent, op, subject, wait)
                raise StoreUnavailable(f"other nodes did not answer within {wait:g}s; try again") from None
        finally:
            self._pending.pop(request_id, None)

    def _on_payload(self, payload: str) -> None:
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(message, dict) or message.get("from") == self.node_id:
            return
        if "answer" in message:
            self._answered(message)
        elif "op" in message and "id" in message:  # an op this node does not serve is not its own
            task = asyncio.get_running_loop().create_task(self._act(message))
            self._tasks.add(task)  # kept until done: a task nobody holds may be collected early
            task.add_done_callback(self._tasks.discard)

    async def _act(self, request: Mapping[str, Any]) -> None:
        handler = self._handlers.get(str(request["op"]))
        undecided = False
        try:
            result = None if handler is None else await handler(str(request["subject"]))
        except StoreUnavailable as exc:  # whether it holds the subject cannot be told now
            log.warning(
                "could not act on %s of %s for node %s: %s",
                request["op"],
                request["subject"],
                request["from"],
                exc,
            )
            result, undecided = None, True
        except Exception:
            log.exception(
                "acting on %s of %s for node %s failed", request["op"], request["subject"], request["from"]
            )
            result = None
        answer = {"answer": request["id"], "to": request["from"], "from": self.node_id, "result": result}
        if undecided:
            answer["undecided"] = True
        await self._follower.send(CHANNEL, _encode(answer))

    def _answered(self, answer: Mapping[str, Any]) -> None:
        pending = self._pending.get(str(answer["answer"]))
        if pending is None or pending.result.done():
            return
        if answer.get("result") is not None:
            pending.result.set_result(answer["result"])
            return
        pending.answered.add(str(answer["from"]))
        if answer.get("undecided"):
            pending.undecided.add(str(answer["from"]))
        if not pending.asked <= pending.answered:
            return
        if pending.undecided:  # one of them may hold the subject: "not found" would be a guess
            undecided = ", ".join(sorted(pending.undecided))
            pending.result.set_exception(StoreUnavailable(f"node {undecided} could not tell now; try again"))
        else:
            pending.result.set_result(None)


def _encode(message: Mapping[str, Any]) -> str:
    """The payload, with lists in the result cut until it fits a NOTIFY."""
    encoded = orjson.dumps(message)
    result = message.get("result")
    while len(encoded) > MAX_PAYLOAD and isinstance(result, dict):
        lists = {key: value for key, value in result.items() if isinstance(value, list) and value}
        if not lists:
            break
        longest = max(lists, key=lambda key: len(lists[key]))
        result = {**result, longest: lists[longest][: len(lists[longest]) // 2], "truncated": True}
        encoded = orjson.dumps({**message, "result": result})
    return encoded.decode()


__all__ = ["CHANNEL", "ClusterControl", "Handler"]
