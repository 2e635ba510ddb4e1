"""Claims on the memory log: the first claim of an id settles it, and a claim that loses a race reads
the winner instead of failing."""

from __future__ import annotations

from collections.abc import Sequence

from engine.features.claims import claim, claimed
from engine.log.memory import MemoryEventStore
from engine.model.catalogue import FileClaimed, SheetClaimed
from engine.model.events import AppendOutcome, NewEvent, Origin, RecordedEvent


def ports(log: MemoryEventStore, *, stale_reads: int = 0):  # type: ignore[no-untyped-def]
    """`commit` and `read_stream` over `log`; the first `stale_reads` reads see an empty stream, as a
    read made just before another node's claim committed would."""
    left = [stale_reads]

    async def commit(event: NewEvent) -> AppendOutcome:
        (outcome,) = await log.append([event])
        return outcome

    async def read_stream(
        stream_id: str, after_version: int = 0, limit: int = 1000
    ) -> Sequence[RecordedEvent]:
        if left[0] > 0:
            left[0] -= 1
            return []
        return await log.read_stream(stream_id, after_version, limit)

    return commit, read_stream


async def test_claims_the_first_claim_of_an_id_commits_and_later_ones_read_it() -> None:
    log = MemoryEventStore()
    commit, read_stream = ports(log)
    won = await claim(commit, read_stream, SheetClaimed("s1", "r1"), Origin("n", "ann"))
    assert won == {"sheet_id": "s1", "room_id": "r1"}
    later = await claim(commit, read_stream, SheetClaimed("s1", "r2"), Origin("n", "bob"))
    assert later == {"sheet_id": "s1", "room_id": "r1"}
    assert len(log.events) == 1  # the later claim read the stream and appended nothing
    assert await claimed(read_stream, "sheet:s1") == won
    assert await claimed(read_stream, "sheet:never") is None


async def test_claims_a_claim_that_loses_the_race_gets_the_winner() -> None:
    log = MemoryEventStore()
    commit, _ = ports(log)
    await commit(FileClaimed("f1", "ann").claim(Origin("n", "ann")))  # another node, just now
    late_commit, stale_read = ports(log, stale_reads=1)
    lost = await claim(late_commit, stale_read, FileClaimed("f1", "bob"), Origin("n", "bob"))
    assert lost == {"file_id": "f1", "user_id": "ann"}
    assert [e.data["user_id"] for e in log.events] == ["ann"]
