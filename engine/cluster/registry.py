"""`NodeRegistry`: this process's heartbeat row in `nodes`, and which other nodes are alive.

Why in PostgreSQL: nodes share nothing else (docs/architecture.md). A node with no live peer sends
no NOTIFY after its commits, so a single node pays nothing for being clusterable; a node that starts
announces itself at once (engine/cluster/follower.py), so its peers start waking it without waiting for a
heartbeat, and one that stops says goodbye the same way, so they stop counting it at once (the log's
partitions are shared among the nodes counted). The same rows tell survivors when a node stopped
heartbeating without saying goodbye.

A node that crashes says no goodbye, and its row looks alive for `dead_after` seconds. Its database
sessions end with its process, though, and every session of a node carries its `session_name` as
`application_name`. The live set is read every `look_interval` between beats (with beats a second or
less apart, the beats do it), and a node whose row names a session that `pg_stat_activity` showed in
none of the reads over half a look or more stops counting in the sharing: its partitions are taken
over within two or three seconds instead of `dead_after`. (One read is not enough: after a database
restart live nodes open their sessions again within about a second.) Everything else that judges
death (the reaping of its connections, `peers`) still waits for the heartbeat's silence: a lost
session alone is not proof enough to take a node's users out of their rooms. A node records its name
only if PostgreSQL shows it (a pooler may not pass it on), and where `pg_stat_activity` cannot be
read every node counts as its heartbeat says. Whether a node writes for the others is in its row too
(`routes`: ROUTE_APPENDS, while its bus is within reach); a change is recorded at its next look, not
its next beat, so that its peers soon share out what it stopped writing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.log import jsonb
from engine.log.connectivity import is_connectivity_error
from engine.log.lifecycle import STOP_TIMEOUT, cancel_and_wait
from engine.log.partition_locks import Standing

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A beat never revives a row someone else marked stopped: see `_beat`.
_BEAT = """
UPDATE nodes SET heartbeat_at = now(), stats = CAST(:stats AS jsonb), routes_appends = :routes
WHERE node_id = :node AND stopped_at IS NULL
"""
# The name is recorded only if this session carries it, so that peers never look for a name a pooler
# or a proxy dropped on the way (they would count a live node out for good).
_REGISTER = """
INSERT INTO nodes (node_id, stats, session_name, routes_appends)
VALUES (:node, CAST(:stats AS jsonb),
        CASE WHEN current_setting('application_name') = :session THEN :session END, :routes)
ON CONFLICT (node_id) DO UPDATE
SET started_at = now(), heartbeat_at = now(), stopped_at = NULL, stats = excluded.stats,
    session_name = excluded.session_name, routes_appends = excluded.routes_appends, recheck_at = NULL
"""
_REPORTS = """
SELECT node_id, stats FROM nodes
WHERE stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => :dead_after) AND stats IS NOT NULL
"""
_LIVE = """
SELECT node_id, started_at, session_name, routes_appends FROM nodes
WHERE stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => :dead_after)
"""
# Apart from `_LIVE`, so that a role denied `pg_stat_activity` still beats and reads its peers.
_SESSIONS = """
SELECT DISTINCT application_name FROM pg_stat_activity
WHERE datname = current_database() AND application_name = ANY(CAST(:names AS text[]))
"""
_STOPPED = "UPDATE nodes SET stopped_at = now() WHERE node_id = :node"


def session_name(node_id: str) -> str:
    """The `application_name` of a node's sessions: its id where PostgreSQL keeps that whole (at most
    63 printable ASCII bytes), else a digest of it, so that no two nodes' names can be confused."""
    name = f"collab {node_id}"
    if len(name) <= 63 and name.isascii() and name.isprintable():
        return name
    return f"collab {hashlib.sha256(node_id.encode()).hexdigest()[:40]}"


class NodeRegistry:
    def __init__(
        self,
        db_engine: AsyncEngine,
        node_id: str,
        *,
        interval: float = 5.0,
        dead_after: float = 15.0,
        look_interval: float = 1.0,
        session: str | None = None,
        routes: bool | Callable[[], bool] | None = None,
        after_beat: Callable[[], Awaitable[None]] | None = None,
        on_reaped: Callable[[], Awaitable[None]] | None = None,
        report: Callable[[], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self.node_id = node_id
        self.interval = interval
        self.dead_after = dead_after
        self.look_interval = look_interval  # how often the live set is read between beats
        # The `application_name` of this node's sessions (`session_name`), None if they carry none.
        self.session = session
        # Whether this node writes the partitions it holds for others (None: unsaid), or what says it
        # now (its bus may be lost): its own share follows at once, its row within a look.
        self._routes = routes
        self._routes_written: bool | None = None  # as last written, or tried: a failure waits for the beat
        self._db_engine = db_engine
        self._peers: dict[str, float] = {}  # node id -> monotonic time it was last known alive
        self._started: dict[str, datetime] = {}  # live node id (this one too) -> its row's started_at
        # Beating peers whose sessions were missing at every read since (monotonic), and those of them
        # a later read still missed, half a look or more after the first: crashed.
        self._missing_since: dict[str, float] = {}
        self._crashed: frozenset[str] = frozenset()
        self._departed: set[str] = set()  # said goodbye, their rows not yet marked stopped
        self._not_routing: frozenset[str] = frozenset()  # peers whose rows say they write for nobody
        self._sessions_unreadable = False  # logged once
        self._task: asyncio.Task[None] | None = None
        self._judging: asyncio.Task[None] | None = None  # `after_beat`, apart: it must not delay a beat
        self._after_beat = after_beat  # e.g. recording the departures of dead nodes' connections
        self._on_reaped = on_reaped  # this node was declared dead while alive: drop its connections
        self._registered = False
        # Since when this node's beats have succeeded without a failure (monotonic), None while failing.
        self._reachable_since: float | None = None
        self._beaten_at: float | None = None  # when it sent the last beat the database took (monotonic)
        self._report = report  # this node's figures, stored with each beat for peers to read

    @property
    def routes(self) -> bool | None:
        routes = self._routes
        return routes() if callable(routes) else routes

    @property
    def peers(self) -> frozenset[str]:
        """Other nodes heard from within `dead_after` seconds."""
        horizon = time.monotonic() - self.dead_after
        return frozenset(node for node, seen in self._peers.items() if seen > horizon)

    def sharing(self, *, writing: bool = False) -> list[str]:
        """The nodes that share out the log's partitions, this one included, in the order every node
        gives them: oldest first, so a node that joins takes only what the others have over their new
        shares, and a node that restarts after a crash does not displace the survivors while its ghost
        still counts. A peer whose sessions are gone is left out before its heartbeat ages.

        `writing`: those that share out writing them (ROUTE_APPENDS): only peers read from their rows,
        less those whose rows say they route nothing. A peer only heard announcing itself waits for the
        next read (a second): counted at once, a node that does not route took a share nobody held."""
        counted = self.peers - self._crashed
        if writing:
            counted = (counted & self._started.keys()) - self._not_routing
        if not (writing and self.routes is False):
            counted |= {self.node_id}
        return sorted(counted, key=self._seniority)

    def standing(self, *, writing: bool = False) -> Standing:
        """This node's place in `sharing`: while the nodes' views of who is alive agree, their shares
        add up. A node not among them (one that routes nothing, asked about writing) has no share."""
        nodes = self.sharing(writing=writing)
        rank = nodes.index(self.node_id) if self.node_id in nodes else len(nodes)
        return Standing(rank, len(nodes))

    def writing_standing(self) -> Standing:
        """`standing` among the nodes that write for the others: what append routing shares out."""
        return self.standing(writing=True)

    def _seniority(self, node: str) -> tuple[bool, datetime, str]:
        # A node only heard announcing itself, not yet read from its row, counts as the newest.
        started = self._started.get(node)
        return (started is None, started or _EPOCH, node)

    @property
    def has_peers(self) -> bool:
        """`bool(peers)` without building the set: asked after every commit."""
        horizon = time.monotonic() - self.dead_after
        return any(seen > horizon for seen in self._peers.values())

    @property
    def may_be_counted_dead(self) -> bool:
        """Whether a peer may take this node for dead soon, and record its connections' departures:
        its last beat the database took is older than `dead_after` less a margin for appends in
        flight (an interval, or half the slack between a beat and `dead_after` when that is less: a
        healthy node's beat may be that late, at least half an interval, before it says so). Until it
        beats again nothing more is appended in those connections' names (engine/node.py): cut off
        from the database alone, a node could still hand its appends to the nodes that route them."""
        beaten_at = self._beaten_at
        if beaten_at is None:
            return True
        slack = self.dead_after - self.interval
        return time.monotonic() - beaten_at > self.dead_after - min(self.interval, slack / 2)

    def saw(self, node_id: str) -> None:
        """A peer announced itself (a NOTIFY): count it alive now, before the next heartbeat read."""
        if node_id != self.node_id:
            self._peers[node_id] = time.monotonic()
            self._missing_since.pop(node_id, None)
            self._crashed -= {node_id}
            self._departed.discard(node_id)

    def gone(self, node_id: str) -> None:
        """A peer said goodbye: not counted from now on, also by a read made before its row was marked."""
        self._peers.pop(node_id, None)
        self._departed.add(node_id)

    @property
    def _retry_interval(self) -> float:
        return min(self.interval, self.look_interval)

    async def start(self) -> None:
        try:
            await self._beat()
            self._reachable_since = time.monotonic()
        except Exception as exc:  # the database is away: the next heartbeat registers this node
            log.warning("could not register node %s yet: %s: %s", self.node_id, type(exc).__name__, exc)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"heartbeat:{self.node_id}")

    async def stop(self) -> None:
        for task in (self._task, self._judging):
            if task is not None:
                await cancel_and_wait(task, STOP_TIMEOUT)
        self._task = self._judging = None
        try:
            await self._execute(_STOPPED)
        except Exception as exc:  # the database may be the reason we stop; peers will see the silence
            log.warning("could not record node %s as stopped: %s: %s", self.node_id, type(exc).__name__, exc)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        beat_at = loop.time() + (self.interval if self._beaten_at is not None else self._retry_interval)
        failures = 0
        while True:
            await asyncio.sleep(max(0.0, min(self.look_interval, beat_at - loop.time())))
            if loop.time() < beat_at and self.routes == self._routes_written:
                await self.look()
                continue
            beat_at = loop.time() + self.interval
            try:
                await self._beat()
            except Exception as exc:  # keep beating: an outage ends, and peers only need the next one
                self._reachable_since = None
                # Again at the next look, not a heartbeat later: a node taken for dead meanwhile learns
                # it from a beat, and one that may be counted dead appends again only after one.
                beat_at = loop.time() + self._retry_interval
                failures += 1
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "heartbeat of node %s failed: %s: %s",
                    self.node_id,
                    type(exc).__name__,
                    exc,
                )
                continue
            if failures:
                log.info("heartbeat of node %s succeeded after %d failures", self.node_id, failures)
                failures = 0
            if self._reachable_since is None:
                self._reachable_since = time.monotonic()
            judging = self._judging is not None and not self._judging.done()
            if self._after_beat is not None and self._can_judge_peers() and not judging:
                # Apart from the beats: recording a dead node's departures can take seconds, and a
                # late beat would have this node refuse its own connections' appends meanwhile.
                self._judging = loop.create_task(self._judge(self._after_beat), name=f"judge:{self.node_id}")

    async def _judge(self, after_beat: Callable[[], Awaitable[None]]) -> None:
        try:
            await after_beat()
        except Exception as exc:  # retried after the next beat
            log.warning("after the heartbeat of %s: %s: %s", self.node_id, type(exc).__name__, exc)

    def _can_judge_peers(self) -> bool:
        """Whether a peer's silence can mean its death: only once this node itself has reached the
        database for `dead_after` seconds. After an outage (a PostgreSQL restart) every node's last beat
        is old; judged at once, live peers would be reaped and their users dropped from their rooms.
        A live peer beats again within that allowance, the same one any node gets."""
        since = self._reachable_since
        return since is not None and time.monotonic() - since >= self.dead_after

    async def _beat(self) -> None:
        """Beat; register first if this node has no live row yet.

        A row that was live and is now marked stopped means a peer took this node for dead (it
        stalled longer than `dead_after`) and recorded its connections' departures. Those
        connections must not carry on as if still in their rooms, so `on_reaped` drops them before
        the node registers again, with a new `started_at` that keeps a later reaper off the old joins.
        """
        sent_at = time.monotonic()  # peers judge the row by the database's clock as the beat began
        if self._registered and await self._execute(_BEAT) == 0:
            log.error("node %s was taken for dead by a peer; dropping its connections", self.node_id)
            if self._on_reaped is not None:
                await self._on_reaped()
            self._registered = False
        if not self._registered:
            sent_at = time.monotonic()
            await self._execute(_REGISTER)
            self._registered = True
        self._beaten_at = sent_at
        await self._refresh()

    async def look(self) -> None:
        """Read the live set now; the heartbeat task does between beats, so that a crashed peer's
        share is taken over within a look or two."""
        try:
            await self._refresh()
        except Exception as exc:  # the next beat says whether the database is away, and logs it
            log.debug("reading the live nodes failed: %s: %s", type(exc).__name__, exc)

    async def _refresh(self) -> None:
        async with self._db_engine.connect() as conn:
            rows = (await conn.execute(text(_LIVE), {"dead_after": self.dead_after})).all()
            named = {str(row.node_id): row.session_name for row in rows if row.session_name is not None}
            named.pop(self.node_id, None)
            present = await self._sessions(conn, named.values())
        self._started = {str(row.node_id): row.started_at for row in rows}
        self._not_routing = frozenset(
            str(row.node_id) for row in rows if row.routes_appends is False and row.node_id != self.node_id
        )
        self._departed &= self._started.keys()  # marked stopped since: the row says it now
        now = time.monotonic()
        self._peers = {
            node: now for node in self._started if node != self.node_id and node not in self._departed
        }
        missing = set() if present is None else {node for node, name in named.items() if name not in present}
        self._missing_since = {node: self._missing_since.get(node, now) for node in missing}
        # Never on one read: after a database restart live nodes open their sessions again within a second.
        settled = now - self.look_interval / 2
        self._crashed = frozenset(node for node, since in self._missing_since.items() if since <= settled)

    async def _sessions(self, conn: AsyncConnection, names: Iterable[str]) -> set[str] | None:
        """Which of these session names PostgreSQL shows; None if it will not say."""
        wanted = sorted(names)
        if not wanted:
            return set()
        try:
            found = await conn.execute(text(_SESSIONS), {"names": wanted})
        except Exception as exc:
            if is_connectivity_error(exc):
                raise
            if not self._sessions_unreadable:
                log.warning(
                    "cannot read pg_stat_activity (%s: %s): a crashed peer is counted until its heartbeat "
                    "ages (NODE_DEAD_AFTER_SECONDS)",
                    type(exc).__name__,
                    exc,
                )
                self._sessions_unreadable = True
            return None
        return {str(name) for (name,) in found}

    async def reports(self) -> dict[str, Any]:
        """The figures each live node stored with its last beat, by node id."""
        async with self._db_engine.connect() as conn:
            rows = await conn.execute(text(_REPORTS), {"dead_after": self.dead_after})
            return {str(row.node_id): row.stats for row in rows}

    async def _execute(self, sql: str) -> int:
        stats = jsonb.dumps(self._report()) if self._report is not None else None
        routes = self._routes_written = self.routes
        async with self._db_engine.begin() as conn:
            params = {"node": self.node_id, "stats": stats, "session": self.session, "routes": routes}
            return int((await conn.execute(text(sql), params)).rowcount)


__all__ = ["NodeRegistry", "session_name"]
