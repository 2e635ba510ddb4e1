"""One file upload: who uploads what, how far it has got, and where the stored file is.

Folded from the uploader's stream (`FileUploadStarted`, `FileUploadCompleted`, `FileUploadFailed`) and
its volatile twin (`FileUploadProgressed`). An attempt moves started -> uploading -> complete or
failed. Complete is final: files are never replaced, and a progress event that lands after completion
(the REST body finished while a progress report was in flight) changes nothing. Failed ends the
attempt and releases the id to its owner: events of the failed attempt change nothing more, and only
a new `FileUploadStarted` of the same user begins a new attempt (a fresh view, its own `started_at`).
An upload may also begin with progress, when the bytes come over REST without a `file_upload_start`;
it then has no filename until it completes.

A file id belongs to the user of its first event (engine/features/files.py decides claims by log
position): another user's events naming it are claims that lost, and change nothing.

Ending an attempt: `idle` says when nothing has happened to it for a timeout, and `end_key` is the
idempotency key of whatever ends it, completion or failure, wherever it is decided: the log's unique
`(user, key)` index then records exactly one end per attempt, whichever node or path comes first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from engine.model.catalogue import (
    AI_EVENTS,
    BROADCAST_EVENTS,
    CELL_EVENTS,
    CLAIM_EVENTS,
    CURSOR_EVENTS,
    FILE_UPLOAD_FAILED,
    FILE_UPLOAD_PROGRESSED,
    FILE_UPLOAD_STARTED,
    MEMBERSHIP_EVENTS,
    NOTIFICATION_EVENTS,
    STATUS_EVENTS,
    TYPING_EVENTS,
    UPLOAD_EVENTS,
)
from engine.model.events import RecordedEvent
from engine.projections import folds, optional_int, optional_str

STARTED = "started"
UPLOADING = "uploading"
COMPLETE = "complete"
FAILED = "failed"
ENDED: Final = frozenset({COMPLETE, FAILED})

HANDLED = UPLOAD_EVENTS
SKIPPED = (
    MEMBERSHIP_EVENTS
    | CELL_EVENTS
    | BROADCAST_EVENTS
    | CURSOR_EVENTS
    | TYPING_EVENTS
    | STATUS_EVENTS
    | NOTIFICATION_EVENTS
    | AI_EVENTS
    | CLAIM_EVENTS
)


@dataclass(frozen=True, slots=True)
class Upload:
    file_id: str
    user_id: str
    status: str
    started_at: datetime
    updated_at: datetime
    filename: str | None = None
    file_size: int | None = None  # announced by the client at start
    mime_type: str | None = None
    bytes_uploaded: int = 0
    total_bytes: int | None = None
    percentage: float = 0.0
    url: str | None = None
    size: int | None = None  # stored, once complete
    sha256: str | None = None
    completed_at: datetime | None = None

    @property
    def complete(self) -> bool:
        return self.status == COMPLETE

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def ended(self) -> bool:
        """Complete or failed: nothing more happens to this attempt."""
        return self.status in ENDED


def key_of(event: RecordedEvent) -> str | None:
    """The file whose upload `event` changes; None for events of other concerns."""
    return str(event.data["file_id"]) if folds("uploads", event.type, HANDLED, SKIPPED) else None


def apply(upload: Upload | None, event: RecordedEvent) -> Upload | None:
    """The upload after `event` (None: no event of this file yet); other concerns change nothing."""
    file_id = key_of(event)
    if file_id is None:
        return upload
    if upload is not None and upload.file_id != file_id:
        raise ValueError(f"event of file {file_id!r} applied to the upload of {upload.file_id!r}")
    data, at = event.data, event.recorded_at
    user_id = str(data["user_id"])
    if upload is not None and user_id != upload.user_id:
        return upload  # a claim that lost: the id is the first claimant's
    if event.type == FILE_UPLOAD_STARTED:
        if upload is None or upload.failed:  # a new attempt
            upload = Upload(file_id, user_id, STARTED, started_at=at, updated_at=at)
        elif upload.complete:
            return upload
        return replace(
            upload,
            filename=optional_str(data.get("filename")),
            file_size=optional_int(data.get("file_size")),
            total_bytes=upload.total_bytes if data.get("file_size") is None else int(data["file_size"]),
            mime_type=optional_str(data.get("mime_type")),
            updated_at=at,
        )
    if upload is None:
        upload = Upload(file_id, user_id, STARTED, started_at=at, updated_at=at)
    elif upload.ended:
        return upload
    if event.type == FILE_UPLOAD_PROGRESSED:
        uploaded = int(data["bytes_uploaded"])
        total = optional_int(data.get("total_bytes")) or upload.total_bytes
        return replace(
            upload,
            status=UPLOADING,
            bytes_uploaded=uploaded,
            total_bytes=total,
            percentage=_percentage(data.get("percentage"), uploaded, total),
            updated_at=at,
        )
    if event.type == FILE_UPLOAD_FAILED:
        received = optional_int(data.get("bytes_uploaded"))
        return replace(
            upload,
            status=FAILED,
            filename=upload.filename or optional_str(data.get("filename")),
            bytes_uploaded=upload.bytes_uploaded if received is None else received,
            updated_at=at,
        )
    size = optional_int(data.get("size"))  # FILE_UPLOAD_COMPLETED
    return replace(
        upload,
        status=COMPLETE,
        filename=optional_str(data.get("filename")) or upload.filename,
        mime_type=optional_str(data.get("mime_type")) or upload.mime_type,
        url=optional_str(data.get("url")),
        size=size,
        sha256=optional_str(data.get("sha256")),
        bytes_uploaded=size if size is not None else upload.bytes_uploaded,
        total_bytes=size if size is not None else upload.total_bytes,
        percentage=100.0,
        updated_at=at,
        completed_at=at,
    )


def project(events: Iterable[RecordedEvent], file_id: str) -> Upload | None:
    """The upload of `file_id` folded from its events among `events`; None if there are none."""
    upload: Upload | None = None
    for event in events:
        if key_of(event) == file_id:
            upload = apply(upload, event)
    return upload


def idle(upload: Upload, now: datetime, timeout_seconds: float) -> bool:
    """Whether `upload` is unfinished and nothing (its start, a progress report) has happened to it for
    `timeout_seconds` as of `now`. At exactly the timeout it is idle, so a timer set for the last
    event + timeout always finds it."""
    return not upload.ended and upload.updated_at <= now - timedelta(seconds=timeout_seconds)


IdleOrder = tuple[datetime, str, str]


def idle_order(upload: Upload) -> IdleOrder:
    """Where `upload` stands among idle uploads, stalest first: `(updated_at, file_id, user_id)`,
    unique (a file has one row per uploader), so a list of them can be read a page at a time, each
    page after the last one's final upload."""
    return (upload.updated_at, upload.file_id, upload.user_id)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def end_key(upload: Upload) -> str:
    """The idempotency key of the event that ends this attempt of `upload`, its completion or its
    failure: one per attempt (its file and the moment it started), longer than any `client_msg_id`
    (64 characters at most), so no client can take it first."""
    started = (upload.started_at - _EPOCH) // timedelta(microseconds=1)
    attempt = f"{upload.user_id}\x00{upload.file_id}\x00{started}"
    return "upload-end:" + hashlib.sha256(attempt.encode()).hexdigest()


def _percentage(given: Any, uploaded: int, total: int | None) -> float:
    """The client's figure when it sent one, else computed from the byte counts."""
    if given is not None:
        return float(given)
    return round(100.0 * uploaded / total, 2) if total else 0.0


__all__ = [
    "COMPLETE",
    "ENDED",
    "FAILED",
    "HANDLED",
    "SKIPPED",
    "STARTED",
    "UPLOADING",
    "IdleOrder",
    "Upload",
    "apply",
    "end_key",
    "idle",
    "idle_order",
    "key_of",
    "project",
]
