"""Who holds the log's partitions among real server processes.

A node killed with SIGKILL says no goodbye, and its heartbeat row looks alive until
`NODE_DEAD_AFTER_SECONDS` have passed. Its database sessions end with it, though: the survivor stops
counting it when sharing out the log's partitions once its reads of the live set between heartbeats
have missed them for a while, and takes over the partitions it projected and wrote: here before its
own next heartbeat (half a minute away), let alone the heartbeat's verdict on the dead node (a
minute), which its users' departures still wait for. And a node that routes no appends takes no share
of the writing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect

from api.tokens import mint_token
from bench.vanish import Host, can_make_hosts, nats_server, other_host, tcp_postgres
from engine.cluster import routed_appends
from engine.cluster.registry import session_name
from engine.log.appender import REFUSED_UNVOUCHED
from engine.log.partitions import partition_of
from engine.log.store import create_db_engine
from engine.model.streams import room_stream
from engine.protocol.close_codes import CloseCode
from engine.readmodels import runner
from tests.api.conftest import SECRET, fresh_database, make_settings, start_node_process
from tests.api.live_helpers import Message, greet, join, of_type, pending, send, write_cell
from tests.conftest import ROOT
from tests.fault_proxy import FaultProxy

HEARTBEAT = 30.0  # only the reads between beats (every second) can see the crash within TAKEOVER_GUARD
DEAD_AFTER = 60.0
HANG_GUARD = 30.0  # bounds a wait that would otherwise hang; not a speed check
TAKEOVER_GUARD = 20.0  # under HEARTBEAT, less the few seconds the nodes take to settle
PARTITIONS = 4
BOTH = (runner.LOCK_CLASS, routed_appends.LOCK_CLASS)  # projecting, writing

_LOCKS_HELD = """
SELECT a.application_name AS holder, count(*) AS held FROM pg_locks AS l
JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid::bigint = :lock_class
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
GROUP BY a.application_name
"""


def node_options(heartbeat: float, *, dead_after: float = DEAD_AFTER, **more: object) -> dict[str, object]:
    """The settings of the nodes of a test, on a log of PARTITIONS."""
    return {
        "node_heartbeat_seconds": heartbeat,
        "node_dead_after_seconds": dead_after,
        "log_partitions": PARTITIONS,
        **more,
    }


Started = list[tuple[asyncio.subprocess.Process, int]]  # the node processes of a test, and their ports


async def kill_all(started: Started) -> None:
    for proc, _ in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def detailed(port: int, token: str, *, host: str = "127.0.0.1") -> dict[str, Any]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        body: dict[str, Any] = (await http.get(f"http://{host}:{port}/api/v1/ws/stats/detailed")).json()
        return body


async def locks_held(db: AsyncEngine, lock_class: int) -> dict[str, int]:
    """Each session name's count of the `(lock_class, partition)` advisory locks."""
    async with db.connect() as conn:
        rows = (await conn.execute(text(_LOCKS_HELD), {"lock_class": lock_class})).all()
    return {str(row.holder): int(row.held) for row in rows}


async def sessions_named(db: AsyncEngine, name: str) -> int:
    async with db.connect() as conn:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
        return int((await conn.execute(query, {"name": name})).scalar_one())


async def until_held(
    db: AsyncEngine, expected: dict[str, int], *, classes: Sequence[int] = BOTH, guard: float = HANG_GUARD
) -> None:
    """Until the locks of `classes` (projecting and writing) are held as `expected`, by node id."""
    wanted = {session_name(node): count for node, count in expected.items()}
    async with asyncio.timeout(guard):
        while True:  # a database's locks have no event to wait on: poll them
            if all([await locks_held(db, lock_class) == wanted for lock_class in classes]):
                return
            await asyncio.sleep(0.1)


async def test_a_killed_node_s_partitions_are_taken_over_before_its_heartbeat_ages(
    server_url: str, nats_url: str
) -> None:
    async with fresh_database(server_url, partitions=1) as url:  # the first node splits it
        options = node_options(HEARTBEAT, nats_url=nats_url, route_appends=True)
        started: Started = []
        db = create_db_engine(url)
        try:
            started += [await start_node_process(url, **options) for _ in range(2)]
            (_, survivor_port), (doomed, doomed_port) = started
            token = mint_token(make_settings(url), sub="root", roles=["admin"], secret=SECRET)
            survivor_id = (await detailed(survivor_port, token))["node_id"]
            doomed_id = (await detailed(doomed_port, token))["node_id"]
            await until_held(db, {survivor_id: 2, doomed_id: 2})

            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
            await until_held(db, {survivor_id: PARTITIONS}, guard=TAKEOVER_GUARD)

            figures = (await detailed(survivor_port, token))["nodes"][survivor_id]
            assert figures["appender"]["routing"]["writes_partitions"] == list(range(PARTITIONS))
            # Still alive by its heartbeat: counted as a peer, its users not yet taken out of their rooms.
            assert figures["delivery"]["peers"] == [doomed_id]
            assert figures["delivery"]["sharing"] == [survivor_id]
        finally:
            await db.dispose()
            await kill_all(started)


async def test_a_node_that_routes_no_appends_takes_no_share_of_the_writing(
    server_url: str, nats_url: str
) -> None:
    """During a rolling change of ROUTE_APPENDS one node routes and the other does not: the one that
    routes keeps writing every partition for the others from before the other starts to well after
    both have settled (counted, the other's share had no writer), while both share the projecting."""
    async with fresh_database(server_url, partitions=1) as url:
        options = node_options(HEARTBEAT, nats_url=nats_url)
        started: Started = []
        db = create_db_engine(url)
        try:
            started.append(await start_node_process(url, **options, route_appends=True))
            token = mint_token(make_settings(url), sub="root", roles=["admin"], secret=SECRET)
            router_port = started[0][1]
            router_id = (await detailed(router_port, token))["node_id"]
            await until_held(db, {router_id: PARTITIONS}, classes=[routed_appends.LOCK_CLASS])
            seen: list[tuple[bool, dict[str, int]]] = []  # (both nodes settled, the writing locks)
            settled, watching = asyncio.Event(), asyncio.Event()

            async def watch_writers() -> None:
                while True:  # one sample more once asked to stop, so the last is after the settling
                    stop = watching.is_set()
                    seen.append((settled.is_set(), await locks_held(db, routed_appends.LOCK_CLASS)))
                    if stop:
                        return
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch_writers())
            started.append(await start_node_process(url, **options, route_appends=False))
            other_id = (await detailed(started[1][1], token))["node_id"]
            async with asyncio.timeout(HANG_GUARD):
                while True:  # until the router has read the other's row: it routes nothing
                    figures = (await detailed(router_port, token))["nodes"][router_id]
                    delivery = figures["delivery"]
                    if delivery["sharing"] == [router_id, other_id] and delivery["sharing_writes"] == [
                        router_id
                    ]:
                        break
                    await asyncio.sleep(0.1)
            await until_held(db, {router_id: 2, other_id: 2}, classes=[runner.LOCK_CLASS])
            settled.set()
            await asyncio.sleep(3.0)  # three more of the router's balances (one a second)
            watching.set()
            await watcher
            # Sampled while the other node joined and after both settled: never fewer than all four.
            assert {phase for phase, _ in seen} == {False, True}
            assert all(held == {session_name(router_id): PARTITIONS} for _, held in seen)
            figures = (await detailed(router_port, token))["nodes"][router_id]
            assert figures["appender"]["routing"]["writes_partitions"] == list(range(PARTITIONS))
            other = (await detailed(started[1][1], token))["nodes"][other_id]
            assert other["delivery"]["sharing_writes"] == [router_id]  # not itself: it routes nothing
        finally:
            await db.dispose()
            await kill_all(started)


BUS_GRACE = 2.0  # the nodes' heartbeat: how long a node's bus may be away before it stops writing


async def test_a_node_that_loses_its_bus_leaves_its_share_of_the_writing_to_the_others(
    server_url: str, nats_url: str
) -> None:
    """Nobody can ask a node without a bus to write a batch: while it is out of reach its share of
    the writing goes to the nodes that can be asked, and comes back when its bus does."""
    async with fresh_database(server_url, partitions=1) as url:
        options = node_options(BUS_GRACE, route_appends=True)
        proxy = FaultProxy(nats_url)  # between the second node and the bus
        await proxy.start()
        started: Started = []
        db = create_db_engine(url)
        try:
            started.append(await start_node_process(url, **options, nats_url=nats_url))
            started.append(await start_node_process(url, **options, nats_url=proxy.url))
            token = mint_token(make_settings(url), sub="root", roles=["admin"], secret=SECRET)
            kept_id, cut_id = [(await detailed(port, token))["node_id"] for _, port in started]
            await until_held(db, {kept_id: 2, cut_id: 2})

            await proxy.cut()
            await until_held(db, {kept_id: PARTITIONS}, classes=[routed_appends.LOCK_CLASS])
            cut = (await detailed(started[1][1], token))["nodes"][cut_id]
            assert cut["delivery"]["sharing_writes"] == [kept_id]
            assert cut["appender"]["routing"]["writes_partitions"] == []
            await until_held(db, {kept_id: 2, cut_id: 2}, classes=[runner.LOCK_CLASS])  # unchanged

            await proxy.restore()
            await until_held(db, {kept_id: 2, cut_id: 2})
        finally:
            await db.dispose()
            await kill_all(started)
            await proxy.cut()


# A host that vanishes: the doomed node runs in a network namespace of its own, joined to the
# machine by a veth pair, and reaches a PostgreSQL of the test's own over it; the pair's link is then
# taken down, so its sessions go silent without being closed, as when a machine loses power.
VANISH_HEARTBEAT, VANISH_DEAD_AFTER = 2.0, 6.0  # PostgreSQL drops a silent session within about 4 s
VANISH_GUARD = 20.0  # without the probes the locks stay held for over two hours
needs_hosts = pytest.mark.skipif(
    not can_make_hosts(), reason="a network namespace takes root and ip (Debian's iproute2)"
)


@pytest.fixture(scope="module")
def other() -> Iterator[Host]:
    with other_host() as host:
        yield host


@pytest.fixture(scope="module")
def tcp_server_url(other: Host) -> Iterator[str]:
    addresses = ("127.0.0.1", other.gateway, other.side_gateway)
    with tcp_postgres(ROOT / ".data", addresses, [other.network]) as url:
        yield url


async def start_here_and_there(
    url: str, other: Host, gateway: str, started: Started, options: dict[str, object]
) -> None:
    """A node on this machine, then one on the other host reaching the database at `gateway`."""
    there = make_url(url).set(host=gateway).render_as_string(hide_password=False)
    started.append(await start_node_process(url, **options))
    started.append(await start_node_process(there, host=other.address, enter=other.enter, **options))


@needs_hosts
async def test_a_node_whose_host_vanishes_has_its_partitions_taken_over(
    other: Host, tcp_server_url: str
) -> None:
    """The doomed node's process stays alive, but nothing it sends arrives: PostgreSQL learns of it
    only by the keepalive probes the node's sessions asked for, ends them, and its locks with them."""
    async with fresh_database(tcp_server_url, partitions=1) as url:
        options = node_options(VANISH_HEARTBEAT, dead_after=VANISH_DEAD_AFTER)
        started: Started = []
        db = create_db_engine(url)
        try:
            await start_here_and_there(url, other, other.gateway, started, options)
            token = mint_token(make_settings(url), sub="root", roles=["admin"], secret=SECRET)
            survivor_id = (await detailed(started[0][1], token))["node_id"]
            doomed_id = (await detailed(started[1][1], token, host=other.address))["node_id"]
            projecting = [runner.LOCK_CLASS]
            await until_held(db, {survivor_id: 2, doomed_id: 2}, classes=projecting)

            other.vanish()
            await until_held(db, {survivor_id: PARTITIONS}, classes=projecting, guard=VANISH_GUARD)
            # Every session of its name ends, its LISTEN connection's too: its peers' reads of the
            # live set count it out, whatever its heartbeat settings.
            async with asyncio.timeout(VANISH_GUARD):
                while True:  # no event tells of a session's end: poll
                    if not await sessions_named(db, session_name(doomed_id)):
                        break
                    await asyncio.sleep(0.1)
            assert started[1][0].returncode is None  # alive all along, only out of reach
        finally:
            other.reappear()  # for the module's other tests
            await db.dispose()
            await kill_all(started)


@needs_hosts
async def test_nodes_whose_bus_link_goes_silent_leave_the_writing(server_url: str, other: Host) -> None:
    """The bus sits on the other host, and its link goes down without a connection closing: the
    nodes' bus clients notice by their pings, twice a heartbeat, and with nobody left to ask, no node
    keeps a share of the writing; the projecting, through the database, stays shared."""
    with nats_server(other.address, enter=other.enter) as bus_url:
        async with fresh_database(server_url, partitions=1) as url:
            options = node_options(BUS_GRACE, route_appends=True, nats_url=bus_url)
            started: Started = []
            db = create_db_engine(url)
            try:
                started += [await start_node_process(url, **options) for _ in range(2)]
                token = mint_token(make_settings(url), sub="root", roles=["admin"], secret=SECRET)
                ids = [(await detailed(port, token))["node_id"] for _, port in started]
                await until_held(db, dict.fromkeys(ids, 2))

                other.vanish()
                try:
                    await until_held(db, {}, classes=[routed_appends.LOCK_CLASS], guard=VANISH_GUARD)
                    await until_held(db, dict.fromkeys(ids, 2), classes=[runner.LOCK_CLASS])
                finally:
                    other.reappear()  # for the module's other tests
            finally:
                await db.dispose()
                await kill_all(started)


async def next_matching(ws: ClientConnection, match: Callable[[Message], bool], guard: float) -> Message:
    """The first message that matches, reading past the others, within `guard` seconds."""
    async with asyncio.timeout(guard):
        while True:
            message: Message = json.loads(await ws.recv())
            if match(message):
                return message


def room_written_by(partitions: Sequence[int]) -> str:
    """A room of one of `partitions`."""
    rooms = (f"room-{uuid.uuid4().hex[:8]}" for _ in itertools.count())
    return next(room for room in rooms if partition_of(room_stream(room), PARTITIONS) in partitions)


@needs_hosts
async def test_a_node_cut_off_from_its_database_alone_stops_its_users_edits_until_it_is_back(
    other: Host, tcp_server_url: str
) -> None:
    """The cut node keeps its bus and loses its database, as behind a partition of one path. Its
    sessions end as a vanished host's do, and the survivor takes its partitions over. Over the bus it
    could still hand its users' edits to the survivor, but its peers, which no longer hear its
    heartbeat, record those users' departures: it refuses their edits from before then, so nothing
    reaches a room in the name of someone the room saw leave. Back on its database, it finds itself
    taken for dead and closes their connections, so that their clients come back through a join."""
    with nats_server(other.gateway) as bus_url:  # on this machine: both nodes reach it throughout
        async with fresh_database(tcp_server_url, partitions=1) as url:
            options = node_options(
                VANISH_HEARTBEAT, dead_after=VANISH_DEAD_AFTER, route_appends=True, nats_url=bus_url
            )
            started: Started = []
            db = create_db_engine(url)
            try:
                await start_here_and_there(url, other, other.side_gateway, started, options)
                (_, survivor_port), (_, cut_port) = started
                settings = make_settings(url)
                token = mint_token(settings, sub="root", roles=["admin"], secret=SECRET)
                survivor_id = (await detailed(survivor_port, token))["node_id"]
                cut_id = (await detailed(cut_port, token, host=other.address))["node_id"]
                await until_held(db, {survivor_id: 2, cut_id: 2})
                figures = (await detailed(survivor_port, token))["nodes"][survivor_id]
                room = room_written_by(figures["appender"]["routing"]["writes_partitions"])
                sheet = f"s-{room}"

                def connect_to(port: int, host: str, user: str) -> connect:
                    user_token = mint_token(settings, sub=user, username=user, secret=SECRET)
                    return connect(f"ws://{host}:{port}/api/v1/ws?token={user_token}")

                async with (
                    connect_to(survivor_port, "127.0.0.1", "watcher") as watcher,
                    connect_to(cut_port, other.address, "editor") as editor,
                ):
                    for ws in (watcher, editor):
                        await greet(ws)
                        await join(ws, room)
                    await write_cell(editor, room, sheet, "A1", "before", cmid="before")

                    other.cut_off(other.side_gateway)
                    await until_held(db, {survivor_id: PARTITIONS}, guard=VANISH_GUARD)
                    left = of_type("user_left", user_id="editor", room_id=room)
                    await next_matching(watcher, left, VANISH_GUARD)  # the survivor recorded it

                    update = {"type": "cell_update", "sheet_id": sheet, "cell_id": "A1", "room": room}
                    await send(editor, {**update, "value": "after", "client_msg_id": "after"})
                    answer = await next_matching(
                        editor, lambda m: m.get("client_msg_id") == "after", VANISH_GUARD
                    )
                    assert answer["type"] == "error", answer
                    assert answer["error"] == REFUSED_UNVOUCHED  # not another outage's error
                    assert answer["retryable"] is True
                    seen = await pending(watcher)
                    assert not [m for m in seen if m["type"] == "cell_updated"], seen

                    other.reconnect(other.side_gateway)
                    async with asyncio.timeout(VANISH_GUARD):
                        await editor.wait_closed()
                    assert editor.close_code == CloseCode.SERVICE_RESTART
                await until_held(db, {survivor_id: 2, cut_id: 2}, guard=VANISH_GUARD)
            finally:
                with contextlib.suppress(RuntimeError):  # for the module's other tests
                    other.reconnect(other.side_gateway)
                await db.dispose()
                await kill_all(started)
