"""A separate OS process that appends concurrently, for the ordering test.

Usage: python -m tests.integration.append_worker DATABASE_URL PREFIX TASKS EVENTS_PER_TASK
Half of the tasks append through a group-commit Appender, half call the store directly on their own
connections, so transactions from both paths and both processes contend for the log head. Prints the
committed positions as one JSON list.
"""

from __future__ import annotations

import asyncio
import random
import sys

import orjson

from engine.log.appender import Appender
from engine.log.store import EventStore, create_db_engine
from engine.model.events import Committed, NewEvent


async def main(url: str, prefix: str, tasks: int, per_task: int) -> list[int]:
    db_engine = create_db_engine(url, pool_size=tasks)
    store = EventStore(db_engine)
    appender = Appender(store, max_batch=64)
    await appender.start()
    positions: list[int] = []

    async def direct(task: int) -> None:
        for i in range(per_task):
            batch = [
                NewEvent(f"{prefix}:{task % 7}", "OrderProbe", {"t": task, "i": i, "k": k})
                for k in range(random.randint(1, 3))
            ]
            outcomes = await store.append(batch)
            positions.extend(o.position for o in outcomes if isinstance(o, Committed))
            await asyncio.sleep(random.random() / 1000)

    async def grouped(task: int) -> None:
        for i in range(per_task):
            outcome = await appender.append(
                NewEvent(f"{prefix}:{task % 5}", "OrderProbe", {"t": task, "i": i})
            )
            assert isinstance(outcome, Committed)
            positions.append(outcome.position)

    await asyncio.gather(*(direct(t) if t % 2 else grouped(t) for t in range(tasks)))
    await appender.stop()
    await db_engine.dispose()
    return positions


if __name__ == "__main__":
    url, prefix, tasks, per_task = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sys.stdout.write(orjson.dumps(asyncio.run(main(url, prefix, tasks, per_task))).decode())
