"""The uploads projection as given events -> expected upload."""

from __future__ import annotations

import pytest

from engine.model.catalogue import FILE_UPLOAD_COMPLETED, FILE_UPLOAD_PROGRESSED, FILE_UPLOAD_STARTED
from engine.projections.uploads import COMPLETE, STARTED, UPLOADING, Upload, apply, key_of, project
from tests.unit.event_log import Log, at

START = {"file_id": "file_123", "filename": "data.csv", "file_size": 1024000, "mime_type": "text/csv"}
DONE = {
    "file_id": "file_123",
    "filename": "data.csv",
    "mime_type": "text/csv",
    "url": "/api/v1/files/file_123",
    "size": 1024000,
    "sha256": "ab" * 32,
}


def progress(log: Log, uploaded: int, seconds: float, percentage: float | None = None) -> None:
    data = {"file_id": "file_123", "bytes_uploaded": uploaded, "total_bytes": 1024000}
    if percentage is not None:
        data["percentage"] = percentage
    log.user("user_1", FILE_UPLOAD_PROGRESSED, seconds, **data)


def test_uploads_projection_of_no_events_is_none() -> None:
    assert project([], "file_123") is None


def test_uploads_projection_started_uploading_complete() -> None:
    log = Log()
    log.user("user_1", FILE_UPLOAD_STARTED, 1, **START)
    started = project(log.events, "file_123")
    assert started == Upload(
        "file_123",
        "user_1",
        STARTED,
        started_at=at(1),
        updated_at=at(1),
        filename="data.csv",
        file_size=1024000,
        mime_type="text/csv",
        total_bytes=1024000,
    )

    progress(log, 512000, 2, percentage=50.0)
    uploading = project(log.events, "file_123")
    assert uploading is not None
    assert (uploading.status, uploading.bytes_uploaded, uploading.percentage) == (UPLOADING, 512000, 50.0)

    log.user("user_1", FILE_UPLOAD_COMPLETED, 3, **DONE)
    done = project(log.events, "file_123")
    assert done is not None and done.complete
    assert (done.status, done.url, done.size, done.sha256) == (COMPLETE, DONE["url"], 1024000, "ab" * 32)
    assert (done.percentage, done.bytes_uploaded, done.completed_at, done.started_at) == (
        100.0,
        1024000,
        at(3),
        at(1),
    )


def test_uploads_projection_progress_lands_in_the_volatile_stream() -> None:
    log = Log()
    progress(log, 1, 1)
    assert log.events[0].stream_id == "volatile:user:user_1"


def test_uploads_projection_computes_a_missing_percentage() -> None:
    log = Log()
    log.user("user_1", FILE_UPLOAD_STARTED, 1, **START)
    progress(log, 256000, 2)
    upload = project(log.events, "file_123")
    assert upload is not None and upload.percentage == 25.0


def test_uploads_projection_progress_after_completion_changes_nothing() -> None:
    log = Log()
    log.user("user_1", FILE_UPLOAD_STARTED, 1, **START)
    log.user("user_1", FILE_UPLOAD_COMPLETED, 2, **DONE)
    progress(log, 900000, 3, percentage=87.9)
    assert project(log.events, "file_123") == project(log.events[:2], "file_123")


def test_uploads_projection_upload_without_start_has_no_filename_until_complete() -> None:
    log = Log()
    progress(log, 1000, 1)
    upload = project(log.events, "file_123")
    assert upload is not None
    assert (upload.status, upload.filename, upload.user_id, upload.percentage) == (
        UPLOADING,
        None,
        "user_1",
        0.1,
    )
    log.user("user_1", FILE_UPLOAD_COMPLETED, 2, **DONE)
    done = project(log.events, "file_123")
    assert done is not None and (done.filename, done.status) == ("data.csv", COMPLETE)


def test_uploads_projection_skips_other_files_and_concerns() -> None:
    log = Log()
    log.user("user_1", FILE_UPLOAD_STARTED, 1, **START)
    log.user("user_1", FILE_UPLOAD_STARTED, 2, **{**START, "file_id": "other"})
    log.joined("r1", "user_1", "c1", 3)
    upload = project(log.events, "file_123")
    assert upload == project(log.events[:1], "file_123")
    assert key_of(log.events[2]) is None and apply(upload, log.events[2]) is upload
    with pytest.raises(ValueError, match="other"):
        apply(upload, log.events[1])
