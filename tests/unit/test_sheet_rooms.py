"""The node's cache of which room each sheet belongs to: read once, kept, bounded."""

from __future__ import annotations

from engine.features.cells import SheetRooms


async def test_sheet_rooms_reads_a_sheet_once_keeps_the_last_learned_and_reads_a_dropped_one_again() -> None:
    claimed = {"s1": "r1", "s2": "r2", "s3": "r3"}
    reads: list[str] = []

    async def read(sheet_id: str) -> str | None:
        reads.append(sheet_id)
        return claimed.get(sheet_id)

    rooms = SheetRooms(read, max_known=2)
    assert [await rooms.room_of(s) for s in ("s1", "s1", "s2", "nope", "nope")] == [
        "r1",
        "r1",
        "r2",
        None,
        None,
    ]
    assert reads == ["s1", "s2", "nope", "nope"]  # an unclaimed sheet is not cached: it may be claimed
    rooms.learn("s3", "r3")  # the third: the one learned first goes
    assert (rooms.known("s1"), rooms.known("s2"), rooms.known("s3")) == (None, "r2", "r3")
    rooms.learn("s3", "r3")  # known already: nothing goes
    assert rooms.known("s2") == "r2"
    assert await rooms.room_of("s1") == "r1" and reads[-1] == "s1"
