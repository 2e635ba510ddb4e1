"""Where a node stands among the live nodes when they share out the log's partitions: the oldest
first, by the `started_at` of their rows, whatever their ids; a node that stops drops out, and so does
one whose database sessions are gone (a crash) while its heartbeat row still looks alive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.cluster.registry import NodeRegistry, session_name
from engine.log.partition_locks import Standing
from engine.log.store import create_db_engine
from tests.api.conftest import fresh_database
from tests.conftest import admin_execute

HANG_GUARD = 30.0  # bounds a wait that would otherwise hang; not a speed check


async def until_standing(registry: NodeRegistry, expected: Standing, *, writing: bool = False) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while registry.standing(writing=writing) != expected:  # noqa: ASYNC110 (the heartbeat task refreshes it)
            await asyncio.sleep(0.02)


async def test_the_oldest_node_stands_first_whatever_its_id(server_url: str) -> None:
    async with fresh_database(server_url, 1) as url:
        db = create_db_engine(url)
        older = NodeRegistry(db, "node-z", interval=0.05, dead_after=5.0)
        newer = NodeRegistry(db, "node-a", interval=0.05, dead_after=5.0)
        try:
            await older.start()
            await until_standing(older, Standing(0, 1))
            await newer.start()
            # Sorted by id, node-a would come first and take node-z's extra partitions.
            await until_standing(older, Standing(0, 2))
            await until_standing(newer, Standing(1, 2))
            await older.stop()
            await until_standing(newer, Standing(0, 1))
        finally:
            await newer.stop()
            await older.stop()
            await db.dispose()


async def end_sessions(url: str, node_id: str) -> int:
    """What PostgreSQL sees when a node's process dies: every session it had ends at once."""
    db = create_db_engine(url)
    try:
        async with db.begin() as conn:
            ended = await conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": session_name(node_id)},
            )
            return len(ended.all())
    finally:
        await db.dispose()


def named_registry(
    url: str,
    node_id: str,
    *,
    beat: float,
    look: float,
    pooled: bool = False,
    routes: bool | Callable[[], bool] | None = None,
) -> tuple[AsyncEngine, NodeRegistry]:
    """A node's registry, its sessions carrying its name (`pooled`: dropped on the way, as a pooler
    might), beating every `beat` and reading the live set every `look` seconds between beats."""
    session = session_name(node_id)
    db = create_db_engine(url, application_name=None if pooled else session)
    registry = NodeRegistry(
        db, node_id, interval=beat, dead_after=120.0, look_interval=look, session=session, routes=routes
    )
    return db, registry


@contextlib.asynccontextmanager
async def started(*nodes: tuple[AsyncEngine, NodeRegistry]) -> AsyncIterator[list[NodeRegistry]]:
    """The registries started in this order (the first the oldest), stopped and closed afterwards."""
    try:
        for _, registry in nodes:
            await registry.start()
        yield [registry for _, registry in nodes]
    finally:
        for db, registry in reversed(nodes):
            await registry.stop()
            await db.dispose()


async def test_a_node_whose_sessions_ended_stops_sharing_before_its_heartbeat_ages(server_url: str) -> None:
    async with fresh_database(server_url, 1) as url:
        # The crashed node beats and looks no more after its start, as a dead process would not.
        doomed = named_registry(url, "node-b", beat=60.0, look=60.0)
        # Only its reads between beats can see the crash: its next beat is a minute away.
        async with started(doomed, named_registry(url, "node-a", beat=60.0, look=0.05)) as (_, survivor):
            assert survivor.sharing() == ["node-b", "node-a"]
            assert survivor.standing() == Standing(1, 2)
            assert await end_sessions(url, "node-b") >= 1
            await until_standing(survivor, Standing(0, 1))
            # Its row still beats within `dead_after`: its users are not taken out of their rooms yet.
            assert survivor.peers == {"node-b"}
            assert survivor.sharing() == ["node-a"]


async def test_a_node_whose_row_names_no_session_keeps_sharing(server_url: str) -> None:
    """A node of an earlier version names no session: it cannot be looked for, so it counts as its
    heartbeat says."""
    async with fresh_database(server_url, 1) as url:
        earlier_db = create_db_engine(url)
        earlier = (earlier_db, NodeRegistry(earlier_db, "node-b", interval=0.05, dead_after=120.0))
        async with started(earlier, named_registry(url, "node-a", beat=60.0, look=0.05)) as (_, current):
            assert current.standing() == Standing(1, 2)  # read from the rows at its start


def test_a_session_name_is_the_node_id_where_postgresql_keeps_it_whole() -> None:
    assert session_name("host-1:4242:a1b2c3") == "collab host-1:4242:a1b2c3"
    long_ids = ["pod-" + "x" * 70 + ":1:aaaaaa", "pod-" + "x" * 70 + ":1:bbbbbb"]
    names = [session_name(node) for node in long_ids]
    assert len(set(names)) == 2 and all(len(name) <= 63 for name in names)
    assert session_name("nœud:1:abc").isascii()  # PostgreSQL would turn the œ into a "?"


async def session_of(url: str, node_id: str) -> str | None:
    db = create_db_engine(url)
    try:
        async with db.connect() as conn:
            found = await conn.execute(
                text("SELECT session_name FROM nodes WHERE node_id = :n"), {"n": node_id}
            )
            return found.scalar_one()  # type: ignore[no-any-return]
    finally:
        await db.dispose()


async def test_a_name_dropped_on_the_way_is_not_recorded_so_its_node_keeps_sharing(server_url: str) -> None:
    """Behind a pooler that does not pass `application_name` on, no session would ever show the
    node's name: looked for, the node would be counted out for good."""
    async with fresh_database(server_url, 1) as url:
        pooled = named_registry(url, "node-b", beat=60.0, look=60.0, pooled=True)
        async with started(pooled, named_registry(url, "node-a", beat=60.0, look=60.0)) as (_, current):
            assert await session_of(url, "node-b") is None
            assert await session_of(url, "node-a") == session_name("node-a")
            for _ in range(3):
                await current.look()
                await asyncio.sleep(0.05)
            assert current.sharing() == ["node-b", "node-a"]


async def test_a_node_that_said_goodbye_is_not_counted_again_by_a_read_before_its_row_is_marked(
    server_url: str,
) -> None:
    """The goodbye arrives a few milliseconds before the node's row is marked stopped; a read in
    between must not count it again (its share handed back and taken again a look later)."""
    async with fresh_database(server_url, 1) as url:
        nodes = [named_registry(url, node, beat=60.0, look=60.0) for node in ("node-b", "node-a")]
        async with started(*nodes) as (leaving, staying):
            assert staying.sharing() == ["node-b", "node-a"]
            staying.gone("node-b")  # the goodbye (engine/cluster/follower.py); its row is still live
            await staying.look()
            assert staying.sharing() == ["node-a"]
            await leaving.stop()  # marks the row stopped
            await staying.look()
            staying.saw(
                "node-b"
            )  # the same id back (a fixed node_id, as an embedding may give): counted again at once
            assert staying.sharing() == ["node-a", "node-b"]


async def test_the_writing_is_shared_among_the_nodes_that_route_appends(server_url: str) -> None:
    """A node without ROUTE_APPENDS never holds a partition for writing: counted, its share of the
    writing would have had no holder. A node of an earlier version says nothing and counts."""
    async with fresh_database(server_url, 1) as url:
        nodes = [
            named_registry(url, "node-d", beat=60.0, look=60.0, routes=False),
            named_registry(url, "node-c", beat=60.0, look=60.0, routes=True),
            named_registry(url, "node-b", beat=60.0, look=60.0),  # an earlier version: unsaid
            named_registry(url, "node-a", beat=60.0, look=60.0, routes=True),
        ]
        async with started(*nodes) as (_, _, _, router):
            assert router.sharing() == ["node-d", "node-c", "node-b", "node-a"]
            assert router.standing() == Standing(3, 4)
            assert router.sharing(writing=True) == ["node-c", "node-b", "node-a"]
            assert router.writing_standing() == Standing(2, 3)


async def test_a_node_restarted_with_routing_turned_off_stops_sharing_the_writing(server_url: str) -> None:
    """The same id (a fixed node_id, as an embedding may give) registered again with ROUTE_APPENDS
    off: its row says so."""
    async with fresh_database(server_url, 1) as url:
        before = named_registry(url, "node-b", beat=60.0, look=60.0, routes=True)
        async with started(before, named_registry(url, "node-a", beat=60.0, look=60.0, routes=True)) as (
            _,
            router,
        ):
            assert router.sharing(writing=True) == ["node-b", "node-a"]
            async with started(named_registry(url, "node-b", beat=60.0, look=60.0, routes=False)):
                await router.look()
                assert router.sharing(writing=True) == ["node-a"]
                assert router.sharing() == ["node-a", "node-b"]  # restarted: now the newer


async def test_a_node_that_stops_routing_says_so_before_its_next_beat(server_url: str) -> None:
    """Whether a node routes can change while it runs (its bus lost, then back): its own share follows
    at once, and its row at its next read of the live set, not a heartbeat later."""
    async with fresh_database(server_url, 1) as url:
        bus_up = True
        flipping = named_registry(url, "node-b", beat=60.0, look=0.05, routes=lambda: bus_up)
        router = named_registry(url, "node-a", beat=60.0, look=0.05, routes=True)
        async with started(flipping, router) as (node_b, node_a):
            assert node_a.sharing(writing=True) == ["node-b", "node-a"]
            await until_standing(node_b, Standing(0, 2), writing=True)  # once it has read node-a's row
            bus_up = False
            assert node_b.writing_standing() == Standing(1, 1)  # past the holders: no share
            await until_standing(node_a, Standing(0, 1), writing=True)
            bus_up = True
            await until_standing(node_a, Standing(1, 2), writing=True)
            assert node_b.writing_standing() == Standing(0, 2)


async def refuse_connections(server_url: str, url: str, refused: bool) -> None:
    """A database that takes no connection, its sessions ended: to the nodes on it, an outage."""
    name = make_url(url).database
    await admin_execute(server_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(not refused).lower()}')
    if refused:
        await admin_execute(
            server_url, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )


async def until_true(check: Callable[[], bool], guard: float = HANG_GUARD) -> None:
    async with asyncio.timeout(guard):
        while not check():  # noqa: ASYNC110 (time passing is what changes it)
            await asyncio.sleep(0.02)


async def test_a_node_whose_beats_fail_may_be_counted_dead_until_the_database_takes_one(
    server_url: str,
) -> None:
    """Its peers may record its connections' departures once its row is `dead_after` old, so it says
    so before then, and no longer once the database has taken a beat again."""
    async with fresh_database(server_url, 1) as url:
        db, registry = named_registry(url, "node-a", beat=2.0, look=0.05)
        registry.dead_after = 4.0  # counted dead 3 s after its last beat: a margin of half the slack
        async with started((db, registry)):
            assert not registry.may_be_counted_dead
            await refuse_connections(server_url, url, True)
            try:
                await until_true(lambda: registry.may_be_counted_dead)
            finally:
                await refuse_connections(server_url, url, False)
            await until_true(lambda: not registry.may_be_counted_dead)


async def test_a_node_whose_first_beat_failed_beats_again_at_its_next_look(server_url: str) -> None:
    """Not a heartbeat later: until the database takes a beat the node appends nothing in its
    connections' names, and a node taken for dead meanwhile learns it from that beat."""
    async with fresh_database(server_url, 1) as url:
        db, registry = named_registry(url, "node-a", beat=HANG_GUARD * 2, look=0.05)
        await refuse_connections(server_url, url, True)
        try:
            async with started((db, registry)):  # its first beat fails
                assert registry.may_be_counted_dead
                await refuse_connections(server_url, url, False)
                # Within the guard, half a heartbeat: the beat at the next look registered it.
                await until_true(lambda: not registry.may_be_counted_dead)
        finally:
            await refuse_connections(server_url, url, False)
