"""The uploads projection as given events -> expected upload."""

from __future__ import annotations

import pytest

from engine.model.catalogue import (
    FILE_UPLOAD_COMPLETED,
    FILE_UPLOAD_FAILED,
    FILE_UPLOAD_PROGRESSED,
    FILE_UPLOAD_STARTED,
    IDLE_TIMEOUT,
    TOO_LARGE,
)
from engine.projections.uploads import (
    COMPLETE,
    FAILED,
    STARTED,
    UPLOADING,
    Upload,
    apply,
    end_key,
    idle,
    key_of,
    project,
)
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


def failed(
    log: Log, seconds: float, reason: str = TOO_LARGE, uploaded: int = 0, user: str = "user_1"
) -> None:
    data = {"file_id": "file_123", "reason": reason, "filename": "data.csv", "bytes_uploaded": uploaded}
    log.user(user, FILE_UPLOAD_FAILED, seconds, **data)


def folded(log: Log) -> Upload:
    upload = project(log.events, "file_123")
    assert upload is not None
    return upload


def test_uploads_projection_a_failure_ends_the_attempt_with_what_had_arrived() -> None:
    log = Log()
    log.user("user_1", FILE_UPLOAD_STARTED, 1, **START)
    progress(log, 512000, 2, percentage=50.0)
    failed(log, 3, uploaded=600000)
    upload = folded(log)
    assert (upload.status, upload.failed, upload.ended, upload.complete) == (FAILED, True, True, False)
    assert (upload.bytes_uploaded, upload.updated_at, upload.started_at) == (600000, at(3), at(1))
    assert (upload.filename, upload.completed_at, upload.url) == ("data.csv", None, None)


def test_uploads_projection_nothing_of_a_failed_attempt_changes_it_again() -> None:
    log = Log()
    log.user("user_1", FILE_UPLOAD_STARTED, 1, **START)
    failed(log, 2)
    before = folded(log)
    progress(log, 900000, 3, percentage=87.9)  # a report that was in flight
    log.user("user_1", FILE_UPLOAD_COMPLETED, 4, **DONE)
    failed(log, 5, reason=IDLE_TIMEOUT)
    assert folded(log) == before


def test_uploads_projection_a_new_start_after_a_failure_is_a_new_attempt() -> None:
    log = Log()
    log.user("user_1", FILE_UPLOAD_STARTED, 1, **START)
    progress(log, 512000, 2)
    failed(log, 3)
    first = folded(log)
    log.user("user_1", FILE_UPLOAD_STARTED, 10, **{**START, "filename": "smaller.csv", "file_size": 10})
    again = folded(log)
    assert again == Upload(
        "file_123",
        "user_1",
        STARTED,
        started_at=at(10),
        updated_at=at(10),
        filename="smaller.csv",
        file_size=10,
        mime_type="text/csv",
        total_bytes=10,
    )
    assert end_key(again) != end_key(first)
    log.user("user_1", FILE_UPLOAD_COMPLETED, 11, **{**DONE, "filename": "smaller.csv", "size": 10})
    assert (folded(log).status, folded(log).size, folded(log).started_at) == (COMPLETE, 10, at(10))


def test_uploads_projection_a_complete_upload_never_changes() -> None:
    log = Log()
    log.user("user_1", FILE_UPLOAD_STARTED, 1, **START)
    log.user("user_1", FILE_UPLOAD_COMPLETED, 2, **DONE)
    done = folded(log)
    log.user("user_1", FILE_UPLOAD_STARTED, 3, **{**START, "filename": "replaced.csv"})
    failed(log, 4)
    log.user("user_1", FILE_UPLOAD_COMPLETED, 5, **{**DONE, "sha256": "cd" * 32})
    assert folded(log) == done


def test_uploads_projection_another_users_events_naming_the_id_change_nothing() -> None:
    """The id is its first claimant's (engine/features/files.py): later claims of others lost."""
    log = Log()
    log.user("user_1", FILE_UPLOAD_STARTED, 1, **START)
    mine = folded(log)
    log.user("intruder", FILE_UPLOAD_STARTED, 2, **{**START, "filename": "evil.csv"})
    log.user("intruder", FILE_UPLOAD_PROGRESSED, 3, file_id="file_123", bytes_uploaded=5, total_bytes=9)
    failed(log, 4, user="intruder")
    log.user("intruder", FILE_UPLOAD_COMPLETED, 5, **DONE)
    assert folded(log) == mine
    failed(log, 6)
    log.user("intruder", FILE_UPLOAD_STARTED, 7, **START)  # not even once the owner's attempt failed
    assert (folded(log).user_id, folded(log).status) == ("user_1", FAILED)


def test_uploads_projection_idle_counts_from_the_last_event_of_an_unfinished_upload() -> None:
    log = Log()
    log.user("user_1", FILE_UPLOAD_STARTED, 1, **START)
    assert not idle(folded(log), at(30.9), 30)
    assert idle(folded(log), at(31), 30)  # at exactly the timeout
    progress(log, 1000, 20)
    assert not idle(folded(log), at(31), 30)
    assert idle(folded(log), at(50), 30)
    failed(log, 51)
    assert not idle(folded(log), at(1000), 30)
    log = Log()
    log.user("user_1", FILE_UPLOAD_COMPLETED, 1, **DONE)
    assert not idle(folded(log), at(1000), 30)


def test_uploads_projection_end_key_names_one_attempt_and_no_client_can_take_it() -> None:
    log = Log()
    log.user("user_1", FILE_UPLOAD_STARTED, 1, **START)
    key = end_key(folded(log))
    progress(log, 1000, 2)
    log.user("user_1", FILE_UPLOAD_STARTED, 3, **START)  # a repeated start of the same attempt
    assert end_key(folded(log)) == key
    assert key.startswith("upload-end:") and len(key) > 64  # MAX_CLIENT_MSG_ID_LENGTH
    other_file = Log()
    other_file.user("user_1", FILE_UPLOAD_STARTED, 1, **{**START, "file_id": "file_124"})
    other_upload = project(other_file.events, "file_124")
    assert other_upload is not None and end_key(other_upload) != key
