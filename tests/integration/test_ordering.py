"""Principle 2 under real concurrency: several OS processes append while a reader tails read_all.

The reader must see strictly increasing positions, never meet a position below one it has seen, and
in the end have seen every committed event exactly once. A log whose positions came from a plain
sequence fails this test: a transaction holding a low position commits after a higher one was read.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from engine.log.store import EventStore


@pytest.fixture
def store(one_partition_store: EventStore) -> EventStore:
    """The tail order of one partition: on a log of one, whatever TEST_LOG_PARTITIONS says."""
    return one_partition_store


ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 2
TASKS_PER_PROCESS = 16
EVENTS_PER_TASK = 40


async def test_tailing_reader_sees_every_commit_once_in_order(
    store: EventStore, one_partition_url: str
) -> None:
    prefix = f"order:{uuid.uuid4().hex[:8]}"
    start = await store.head()
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.append_worker",
            one_partition_url,
            prefix,
            str(TASKS_PER_PROCESS),
            str(EVENTS_PER_TASK),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    waiting = [asyncio.create_task(w.communicate()) for w in workers]

    seen: list[int] = []
    last = start
    while True:
        finished = all(t.done() for t in waiting)
        batch = await store.read_all(after=last, limit=200)
        for event in batch:
            assert event.position > last, f"position {event.position} after {last}: out of order"
            seen.append(event.position)
            last = event.position
        if finished and not batch:
            break
        if not batch:
            await asyncio.sleep(0.002)

    committed: list[int] = []
    for worker, task in zip(workers, waiting, strict=True):
        out, err = task.result()
        assert worker.returncode == 0, err.decode()
        committed.extend(orjson.loads(out))

    assert len(seen) == len(set(seen)), "an event was delivered twice"
    assert seen == list(range(start + 1, last + 1)), "positions are dense and none was skipped"
    # Other tests may append meanwhile only if run in parallel; here every committed event was seen.
    assert set(committed) <= set(seen)
    assert len(committed) >= PROCESSES * TASKS_PER_PROCESS * EVENTS_PER_TASK
    ours = [
        e for e in await store.read_all(after=start, limit=len(seen) + 1) if e.stream_id.startswith(prefix)
    ]
    assert sorted(e.position for e in ours) == sorted(committed)
