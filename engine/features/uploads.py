"""Uploads over WebSocket: `file_upload_start` and `file_upload_progress`, relayed to the user's other
connections and tracked with the uploads projection (engine/projections/uploads.py).

`FileUploadStarted` is durable (the user's stream, with a `seq`); `FileUploadProgressed` goes to the
volatile twin (`volatile:user:{id}`): no `seq`, dropped first under backpressure, and a queued,
unsent progress of the same file is replaced by the newer one (coalesced per `file_id`).
`FileUploadCompleted` (appended by the REST upload, files.py) reaches all the user's connections as
`file_upload_complete`, and `FileUploadFailed` (an upload that ended without a stored file) as
`file_upload_failed`.

State: every node publishes every user's uploads, so the node keeps only what its own sockets' checks
use (`uploads`, file id -> `Upload`): the unfinished uploads started by users with a connection here,
or read from the log for such a check, each folded from the commits it publishes until it ends.
Anything else (an ended upload, one of a user connected elsewhere, one begun before the node started)
is folded from the user's stream when a check needs it; a read that an event of its file overtook is
used once, not kept. So the node's memory follows its users' uploads in progress, which end within the
idle timeout (upload_sweeper.py). A progress report for a file the user never started (or another
user's) is NOT_FOUND, for a completed or failed one VALIDATION_ERROR; a failed upload may be started
again by its owner (engine/decisions/own_stream.py). The bytes go over REST (files.py), never the
socket; a PUT that begins an upload itself appends its start under the same per-(user, file id) lock
as `file_upload_start` (`starting`), so on one node an upload has one start whichever comes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from weakref import WeakValueDictionary

from engine.decisions.access import authorize
from engine.decisions.own_stream import check_upload_start, require_own_upload
from engine.fanout.hub import Hub
from engine.fanout.live import UserPublisher, recorded
from engine.features.claims import claim_file
from engine.features.connections import Connections
from engine.features.ports import Commit, Reply, acknowledge
from engine.features.storage import TooLarge
from engine.model.actors import Actor
from engine.model.catalogue import (
    FILE_UPLOAD_COMPLETED,
    FILE_UPLOAD_FAILED,
    FILE_UPLOAD_PROGRESSED,
    FILE_UPLOAD_STARTED,
    FileUploadProgressed,
    FileUploadStarted,
)
from engine.model.errors import ValidationFailed
from engine.model.events import Committed, Origin, RecordedEvent
from engine.model.reading import ReadStream, read_through
from engine.model.streams import user_stream
from engine.projections import uploads as uploads_projection
from engine.projections.uploads import Upload
from engine.protocol import (
    Envelope,
    file_upload_complete,
    file_upload_failed,
    file_upload_progress,
    file_upload_started,
)
from engine.protocol.rendering import encode


@dataclass(slots=True)
class _Reading:
    """The reads of one file's upload in flight, and how many of its events were published meanwhile."""

    readers: int = 0
    events: int = 0


class Uploads:
    def __init__(
        self,
        *,
        node_id: str,
        connections: Connections,
        hub: Hub,
        commit: Commit,
        reply: Reply,
        read_stream: ReadStream,
        max_file_size: int = 50 * 1024 * 1024,
    ) -> None:
        self._node_id = node_id
        self.max_file_size = max_file_size  # MAX_UPLOAD_BYTES: no PUT stores a larger body
        self._connections = connections
        self._hub = hub
        self._commit = commit
        self._reply = reply
        self._read_stream = read_stream
        self.uploads: dict[str, Upload] = {}  # file id -> an unfinished upload, as this node last folded it
        self._reading: dict[str, _Reading] = {}  # file id -> its reads from the log in flight
        # (user, file id) -> the lock of its starts in flight, socket and PUT (`starting`); gone once
        # none holds or awaits it
        self._starting: WeakValueDictionary[tuple[str, str], asyncio.Lock] = WeakValueDictionary()

    def publishers(self) -> dict[str, UserPublisher]:
        return {
            FILE_UPLOAD_STARTED: self._publish_started,
            FILE_UPLOAD_PROGRESSED: self._publish_progress,
            FILE_UPLOAD_COMPLETED: self._publish_completed,
            FILE_UPLOAD_FAILED: self._publish_failed,
        }

    async def start(
        self,
        actor: Actor,
        connection_id: str,
        file_id: str,
        *,
        filename: str,
        file_size: int,
        mime_type: str,
        client_msg_id: str | None = None,
    ) -> None:
        """Claim the id if nobody has (engine/features/claims.py), then append
        `FileUploadStarted`; the user's other connections get `file_upload_started`. VALIDATION_ERROR
        when the `file_id` is in use: another user's, or the user's own unless that upload failed;
        PAYLOAD_TOO_LARGE (with `limit`) for a `file_size` over MAX_UPLOAD_BYTES, whose PUT could only
        be refused, before anything is claimed or recorded.

        The user's starts of one id on this node run one at a time, from the check to the commit
        (published when it returns), and so do a PUT's (`starting`): of two tabs starting it at once,
        or a tab and a PUT whose body begins it, the second finds the first's upload, and a socket
        start is refused rather than replacing it (or following its completion). Starts on two nodes
        are not serialised: both may be acked, the later one's filename, size and type replacing the
        earlier's, or changing nothing once the upload has ended (the id stays the user's; ids of
        other users are settled by the claim)."""
        self._connections.of(actor, connection_id)
        authorize(actor, "file_upload_start")
        if file_size > self.max_file_size:
            raise TooLarge(
                f"a file of {file_size} bytes exceeds the upload limit of {self.max_file_size} bytes",
                limit=self.max_file_size,
            )
        async with self.starting(actor.user_id, file_id):
            # Counted from the check to the commit, like a read: the start is kept only if nothing
            # else of this file was published in between (the check may be stale by then).
            with self._watching(file_id) as reading:
                seen = reading.events
                checked = await self.upload(actor.user_id, file_id)
                check_upload_start(checked, actor, file_id)
                origin = Origin.of(self._node_id, actor, connection_id, client_msg_id)
                if not await claim_file(self._commit, self._read_stream, file_id, actor.user_id, origin):
                    # another user's, perhaps claimed on another node
                    raise ValidationFailed(f"file_id {file_id!r} is already in use", file_id=file_id)
                started = FileUploadStarted(actor.user_id, file_id, filename, file_size, mime_type)
                event = started.new(origin)
                outcome = await self._commit(event)
                if (
                    isinstance(outcome, Committed)
                    and reading.events == seen + 1
                    and file_id not in self.uploads
                ):
                    kept = uploads_projection.apply(checked, recorded(event, outcome))
                    if kept is not None and not kept.ended:
                        self.uploads[file_id] = kept
        await acknowledge(self._reply, connection_id, client_msg_id, outcome)

    @asynccontextmanager
    async def starting(self, user_id: str, file_id: str) -> AsyncIterator[None]:
        """Hold `user_id`'s starts of `file_id` on this node while the caller checks the log and
        appends a start: `file_upload_start` here, and a PUT whose body begins an upload
        (engine/features/files.py), so either sees what the other appended. One lock per (user, file
        id), kept only while a start holds or awaits it."""
        lock = self._starting.setdefault((user_id, file_id), asyncio.Lock())
        async with lock:
            yield

    async def progress(
        self,
        actor: Actor,
        connection_id: str,
        file_id: str,
        *,
        bytes_uploaded: int,
        total_bytes: int,
        percentage: float,
        client_msg_id: str | None = None,
    ) -> None:
        """Append `FileUploadProgressed` (volatile); the user's other connections get
        `file_upload_progress`. NOT_FOUND for a file the user did not start."""
        self._connections.of(actor, connection_id)
        authorize(actor, "file_upload_progress")
        require_own_upload(await self.upload(actor.user_id, file_id), actor, file_id)
        progressed = FileUploadProgressed(actor.user_id, file_id, bytes_uploaded, total_bytes, percentage)
        origin = Origin.of(self._node_id, actor, connection_id, client_msg_id)
        outcome = await self._commit(progressed.new(origin))
        await acknowledge(self._reply, connection_id, client_msg_id, outcome, volatile=True)

    async def upload(self, user_id: str, file_id: str) -> Upload | None:
        """The upload of `file_id` as this node knows it, else folded from the user's stream (None
        when the user has no such upload: an upload of another user is not looked for). An unfinished
        one read here is kept, and folded from then on, unless one of its events was published while
        the read was in flight: the read may predate it, and a view kept behind an event it never
        folds would stay wrong (a failed upload kept as started would refuse its owner's retry)."""
        known = self.uploads.get(file_id)
        if known is not None:
            return known
        with self._watching(file_id) as reading:
            seen = reading.events
            events = await read_through(self._read_stream, user_stream(user_id))
        found = uploads_projection.project(events, file_id)
        known = self.uploads.get(file_id)  # a start of this node may have been folded meanwhile
        if known is not None:
            return known
        if found is not None and not found.ended and reading.events == seen:
            self.uploads[file_id] = found
        return found

    @contextmanager
    def _watching(self, file_id: str) -> Iterator[_Reading]:
        """Count the file's events published while the caller awaits (`_fold` counts them), so that
        what it read before them is not kept."""
        reading = self._reading.setdefault(file_id, _Reading())
        reading.readers += 1
        try:
            yield reading
        finally:
            reading.readers -= 1
            if not reading.readers:
                del self._reading[file_id]

    # Publishing: synchronous, right after the commit.

    def _fold_and_name(self, event: RecordedEvent) -> str:
        """Fold an upload's end, and name its file: the event's filename, else the upload's."""
        upload = self._fold(event)
        filename = event.data.get("filename") or (upload.filename if upload is not None else None)
        return str(filename or "")

    def _fold(self, event: RecordedEvent) -> Upload | None:
        """The upload after `event`, kept while unfinished if the node tracks it; an upload that
        ends is dropped (the log has it). A start of an id not tracked here begins nothing kept: it
        may be a late second start of an upload that has already ended (two starts that both passed
        their checks, on two nodes or while this node's check read the log), which only the whole
        stream tells. The next check reads it (`upload`), and keeps it from then on."""
        file_id = str(event.data["file_id"])
        reading = self._reading.get(file_id)
        if reading is not None:
            reading.events += 1
        known = self.uploads.get(file_id)
        folded = uploads_projection.apply(known, event)
        if folded is None or folded.ended:
            self.uploads.pop(file_id, None)
        elif known is not None:
            self.uploads[file_id] = folded
        return folded

    def _publish_started(self, event: RecordedEvent, sender: str | None) -> None:
        self._fold(event)
        data = event.data
        message = file_upload_started(
            str(data["file_id"]),
            str(data["filename"]),
            file_size=int(data["file_size"]),
            mime_type=str(data.get("mime_type") or ""),
            user_id=str(data["user_id"]),
            envelope=Envelope.of(event),
        )
        topic = user_stream(str(data["user_id"]))
        self._hub.publish(topic, encode([message]), seq=event.stream_version, exclude=sender)

    def _publish_progress(self, event: RecordedEvent, sender: str | None) -> None:
        self._fold(event)
        data = event.data
        file_id = str(data["file_id"])
        message = file_upload_progress(
            file_id,
            bytes_uploaded=int(data["bytes_uploaded"]),
            total_bytes=int(data["total_bytes"]),
            percentage=float(data["percentage"]),
            user_id=str(data["user_id"]),
            envelope=Envelope.of(event),
        )
        topic = user_stream(str(data["user_id"]))
        self._hub.publish(
            topic, encode([message]), volatile=True, exclude=sender, coalesce=f"upload:{file_id}"
        )

    def _publish_completed(self, event: RecordedEvent, sender: str | None) -> None:
        data = event.data
        message = file_upload_complete(
            str(data["file_id"]),
            self._fold_and_name(event),
            url=str(data.get("url") or ""),
            user_id=str(data["user_id"]),
            size=int(data.get("size") or 0),
            sha256=str(data.get("sha256") or ""),
            envelope=Envelope.of(event),
        )
        self._hub.publish(user_stream(str(data["user_id"])), encode([message]), seq=event.stream_version)

    def _publish_failed(self, event: RecordedEvent, sender: str | None) -> None:
        data = event.data
        message = file_upload_failed(
            str(data["file_id"]),
            self._fold_and_name(event),
            reason=str(data["reason"]),
            bytes_uploaded=int(data.get("bytes_uploaded") or 0),
            user_id=str(data["user_id"]),
            envelope=Envelope.of(event),
        )
        self._hub.publish(user_stream(str(data["user_id"])), encode([message]), seq=event.stream_version)


__all__ = ["Uploads"]
