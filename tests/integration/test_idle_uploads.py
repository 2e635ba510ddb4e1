"""The upload sweeper on a real PostgreSQL: its candidates come from the `uploads` table a page at a
time, and one sweep reads page after page until it has ended every upload idle as of its start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.features.upload_sweeper import SWEEP_PAGE, UploadSweeper
from engine.log.store import EventStore
from engine.model.catalogue import FILE_UPLOAD_FAILED, FileUploadStarted
from engine.model.events import AppendOutcome, NewEvent, Origin
from engine.model.streams import user_stream
from engine.projections.uploads import Upload, idle_order
from engine.readmodels import idle_uploads
from engine.readmodels.runner import ProjectorRunner


async def project(db_engine: AsyncEngine) -> None:
    async with db_engine.connect() as conn:
        while await ProjectorRunner(db_engine).step(conn):
            pass


async def test_one_sweep_pages_through_every_idle_upload_in_the_table(log_engine: AsyncEngine) -> None:
    """More idle uploads than a page, in batches whose events share their `updated_at`: the pages
    follow one another without a gap or an overlap, and one sweep ends every upload once."""
    store = EventStore(log_engine)
    count = 2 * SWEEP_PAGE + 7
    starts = [FileUploadStarted("ann", f"f{i:03}", "a.csv", 9).new(Origin("n", "ann")) for i in range(count)]
    for first in range(0, count, 30):  # one partition's transaction, one `recorded_at`: ties
        await store.append(starts[first : first + 30])
    await project(log_engine)
    at = datetime.now(UTC) + timedelta(seconds=1)

    pages: list[list[Upload]] = []
    after = None
    while page := await idle_uploads.idle_uploads(log_engine, at, after=after, limit=SWEEP_PAGE):
        pages.append(page)
        after = idle_order(page[-1])
    assert [len(page) for page in pages] == [SWEEP_PAGE, SWEEP_PAGE, 7]
    assert pages[0][-1].updated_at == pages[1][0].updated_at  # a page ended inside a tie
    listed = [upload.file_id for page in pages for upload in page]
    assert sorted(listed) == sorted(set(listed)) == [f"f{i:03}" for i in range(count)]

    async def commit(event: NewEvent) -> AppendOutcome:
        [outcome] = await store.append([event])
        return outcome

    sweeper = UploadSweeper(
        node_id="sweeper",
        commit=commit,
        find_idle=partial(idle_uploads.idle_uploads, log_engine),
        read_upload=store.upload_events,
        timeout_seconds=1,
        now=lambda: at + timedelta(seconds=1),
    )
    assert len(await sweeper.sweep()) == count
    failed = [e for e in await store.read_stream(user_stream("ann")) if e.type == FILE_UPLOAD_FAILED]
    assert sorted(e.data["file_id"] for e in failed) == [f"f{i:03}" for i in range(count)]
    await project(log_engine)
    assert await idle_uploads.idle_uploads(log_engine, at) == []
