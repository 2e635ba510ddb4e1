"""How the log's partitions are shared out among the holders of one job (projecting, or writing
when appends are routed): every holder works out its own share from its standing alone."""

from __future__ import annotations

import pytest

from engine.cluster.registry import NodeRegistry
from engine.log.partition_locks import ALONE, Standing


@pytest.mark.parametrize("holders", range(1, 11))
@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 7, 16, 33])
def test_shares_add_up_to_the_partitions_and_differ_by_at_most_one(partitions: int, holders: int) -> None:
    shares = [Standing(rank, holders).share(partitions) for rank in range(holders)]
    assert sum(shares) == partitions
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)  # the first in the order take the extra ones


def test_four_partitions_on_three_nodes_are_two_one_and_one() -> None:
    assert [Standing(rank, 3).share(4) for rank in range(3)] == [2, 1, 1]


def test_alone_a_holder_takes_every_partition() -> None:
    assert ALONE.share(16) == 16


def test_nodes_not_yet_read_from_their_rows_stand_by_id() -> None:
    """Heard of only by their announcement (no start time known yet), nodes sort by id: every node
    still orders them alike. The oldest-first order is tests/integration/test_node_standing.py's."""
    registries = {name: NodeRegistry(None, name) for name in ("node-b", "node-a", "node-c")}  # type: ignore[arg-type]
    assert registries["node-b"].standing() == Standing(0, 1)  # no peer heard from yet: alone
    for registry in registries.values():
        for peer in registries:
            registry.saw(peer)
    assert [registries[n].standing() for n in ("node-a", "node-b", "node-c")] == [
        Standing(0, 3),
        Standing(1, 3),
        Standing(2, 3),
    ]
    registries["node-a"].gone("node-c")
    assert registries["node-a"].standing() == Standing(0, 2)


def test_a_holder_not_among_the_holders_has_no_share() -> None:
    """A node asked for its share of the writing while it routes nothing stands past the holders."""
    assert [Standing(rank, 2).share(4) for rank in (2, 3)] == [0, 0]
    assert Standing(0, 0).share(4) == 0


def test_a_node_that_routes_nothing_is_not_among_the_writers_even_in_its_own_view() -> None:
    registry = NodeRegistry(None, "node-a", routes=False)  # type: ignore[arg-type]
    assert registry.sharing() == ["node-a"]
    assert registry.sharing(writing=True) == []
    assert registry.standing(writing=True).share(4) == 0


def test_a_peer_only_heard_announcing_itself_is_not_yet_counted_among_the_writers() -> None:
    """Whether it routes is in its row: until read, counting it could leave its share with no writer."""
    registry = NodeRegistry(None, "node-a", routes=True)  # type: ignore[arg-type]
    registry.saw("node-b")
    assert registry.sharing() == ["node-a", "node-b"]
    assert registry.sharing(writing=True) == ["node-a"]
    assert registry.writing_standing() == Standing(0, 1)
