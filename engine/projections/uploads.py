"""One file upload: who uploads what, how far it has got, and where the stored file is.

Folded from the uploader's stream (`FileUploadStarted`, `FileUploadCompleted`) and its volatile twin
(`FileUploadProgressed`). Status moves started -> uploading -> complete and never back: a progress
event that lands after completion (the REST body finished while a progress report was in flight)
changes nothing. An upload may also begin with progress, when the bytes come over REST without a
`file_upload_start`; it then has no filename until it completes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from engine.model.catalogue import (
    AI_EVENTS,
    BROADCAST_EVENTS,
    CELL_EVENTS,
    CURSOR_EVENTS,
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
    if upload is None:
        upload = Upload(file_id, str(data["user_id"]), STARTED, started_at=at, updated_at=at)
    if event.type == FILE_UPLOAD_STARTED:
        return replace(
            upload,
            filename=optional_str(data.get("filename")),
            file_size=optional_int(data.get("file_size")),
            total_bytes=upload.total_bytes if data.get("file_size") is None else int(data["file_size"]),
            mime_type=optional_str(data.get("mime_type")),
            updated_at=at,
        )
    if upload.complete:
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


def _percentage(given: Any, uploaded: int, total: int | None) -> float:
    """The client's figure when it sent one, else computed from the byte counts."""
    if given is not None:
        return float(given)
    return round(100.0 * uploaded / total, 2) if total else 0.0


__all__ = ["COMPLETE", "HANDLED", "SKIPPED", "STARTED", "UPLOADING", "Upload", "apply", "key_of", "project"]
