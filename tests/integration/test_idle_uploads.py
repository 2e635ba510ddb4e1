"""The upload sweeper on a real PostgreSQL: its candidates come from the `uploads` table a page at a
time, and one sweep reads page after page until it has ended every upload idle as of its start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.features.upload_sweeper import SWEEP_PAGE, UploadSweeper
from engine.log.store import EventStore
from engine.model.catalogue import FILE_UPLOAD_FAILED, FileUploadStarted
from engine.model.events import AppendOutcome, NewEvent, Origin
from engine.model.streams import user_stream
from engine.projections.uploads import COMPLETE, FAILED, STARTED, UPLOADING, Upload, idle_order
from engine.readmodels import idle_uploads
from engine.readmodels.runner import ProjectorRunner
from tests.integration.query_plans import plans, rows_read, shape, statements_of


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


async def test_a_page_of_idle_uploads_reads_its_own_rows_however_many_uploads_ended(
    log_engine: AsyncEngine,
) -> None:
    """Thousands of ended uploads, older than the cutoff, and a few unfinished ones: each page, with
    the plan made for its values and the generic plan a prepared statement settles on, reads about
    the rows it returns (off the partial index of unfinished uploads), not the table's history."""
    ended, idle, recent = 5000, 25, 10
    at = datetime.now(UTC)
    async with log_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO uploads (file_id, partition, user_id, status, started_at, updated_at,"
                " bytes_uploaded, percentage)"
                " SELECT 'done' || i, 0, 'ann', CASE WHEN i % 2 = 0 THEN :complete ELSE :failed END,"
                " :old, CAST(:old AS timestamptz) - i * interval '1 second', 9, 100"
                " FROM generate_series(1, :ended) AS i"
                " UNION ALL SELECT 'idle' || i, 0, 'bob', CASE WHEN i % 2 = 0 THEN :started ELSE :uploading"
                " END, :old, CAST(:old AS timestamptz) + i * interval '1 second', 1, 10"
                " FROM generate_series(1, :idle) AS i"
                " UNION ALL SELECT 'busy' || i, 0, 'cy', :uploading, :old, :now, 1, 10"
                " FROM generate_series(1, :recent) AS i"
            ),
            {
                "complete": COMPLETE,
                "failed": FAILED,
                "started": STARTED,
                "uploading": UPLOADING,
                "old": at - timedelta(hours=1),
                "now": at,
                "ended": ended,
                "idle": idle,
                "recent": recent,
            },
        )
        await conn.exec_driver_sql("ANALYZE uploads")
    cutoff, limit = at - timedelta(minutes=1), 10

    with statements_of(log_engine) as statements:
        listed, after = [], None
        while page := await idle_uploads.idle_uploads(log_engine, cutoff, after=after, limit=limit):
            listed += [upload.file_id for upload in page]
            after = idle_order(page[-1])
    assert listed == [f"idle{i}" for i in range(1, idle + 1)]
    assert len(statements) == 4  # three pages and the empty one that ends them
    for generic in (False, True):
        for statement, plan in await plans(log_engine, statements, generic=generic):
            read = rows_read(plan)
            assert read <= limit + 1, f"{read} rows read by {shape(plan)} (generic {generic}) for {statement}"
