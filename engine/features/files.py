"""File bodies over REST (`PUT`/`GET /api/v1/files/{file_id}`): storing an upload's bytes as events.

`store_file` streams a body into `FileStorage` and records it in the uploader's stream:
`FileUploadStarted` (only when no `file_upload_start` came over the WebSocket), `FileUploadProgressed`
(volatile) as bytes arrive, and `FileUploadCompleted` once the bytes are stored, or `FileUploadFailed`
when the body fails (too large, idle, the client gone, storage). The uploads component
(engine/features/uploads.py) publishes them to the uploader's connections as `file_upload_started`,
`file_upload_progress`, `file_upload_complete` and `file_upload_failed`.

File ids are global (one URL per file) but uploads live in each user's own stream, so who owns an id
is settled in the id's own stream (engine/features/claims.py): a PUT that has to claim the id
appends its `FileClaimed` first, and the loser of a race between two users, on any nodes, sees the
winner's claim and stops before any byte of its body reaches storage.

A PUT checks the id under the lock of the user's starts of the id on this node, the one
`file_upload_start` holds from its check to its commit (`Uploads.starting`): a socket start committing
when the PUT comes came first, and the PUT is its body (it may leave out the filename, as after any
start). A PUT that found no upload of the id to be the body of begins one once its first bytes are in:
it checks the log again and appends its start under that lock. So a socket start that came meanwhile,
or was committing, is found and the PUT is its body, and a socket start that comes while the PUT
appends its own finds it and is refused: the stream holds one start, before the completion. A socket
start and a PUT on two nodes are not serialised (both may append a start).

Bad input changes nothing: the size announced by `Content-Length`, the file id, the filename and
the owner are checked before anything is written, and a body whose first bytes contradict its
declared type is refused before the claim is appended. A file id, once complete, is never written
again: the completion event's size and sha256 keep describing the bytes served.

The `file_size` an upload was started with (by `file_upload_start`; 0 announces none) bounds its
body as `max_bytes` does: a longer one is not the file announced, and its progress would pass the
`total_bytes` the uploader's tabs were told, so it fails as too large. It is also the size the body
must reach: one that ends short is a truncated file, which would otherwise be stored and shown to
everyone as complete, so it fails as too short (TooShort, 422), by its `Content-Length` before a byte
is read, else once the body has ended. A body cut short by its client going away is not one that
ended: it fails as aborted, as any such body does.

A body that fails once its upload is in the log (claimed by this PUT, or started over the WebSocket)
ends that upload with `FileUploadFailed`, which releases the id to its owner: the next PUT or
`file_upload_start` of it begins a new attempt. Completion and failure carry the attempt's `end_key`
(engine/projections/uploads.py), so the log records one end per attempt whoever decides it: this PUT,
another node's PUT of the same upload, or the sweeper that expires abandoned uploads
(engine/features/upload_sweeper.py). A completion that finds the attempt already ended answers 409.

Idle bodies: no byte for `idle_timeout` seconds fails the upload (`idle_timeout`) and the PUT answers
408. While the body lasts, its upload is kept fresh in the log with a progress report at least every
half `idle_timeout`, so the sweeper, which expires uploads with no event for `idle_timeout`, never
takes a slow but live body for an abandoned one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Final

from cachetools import FIFOCache
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from engine.features.claims import claim_file
from engine.features.ports import Commit
from engine.features.storage import (
    SNIFF_BYTES,
    ContentTypeMismatch,
    FileStorage,
    FileStream,
    StagedFile,
    TooLarge,
    declared_type_matches,
    sniff_mime,
    validate_file_id,
)
from engine.features.upload_body import Now, UploadAttempt, UploadBody, UploadTimedOut
from engine.model.actors import Actor
from engine.model.catalogue import (
    ABORTED,
    FILE_UPLOAD_COMPLETED,
    IDLE_TIMEOUT,
    STORAGE_ERROR,
    TOO_LARGE,
    TOO_SHORT,
    FileUploadCompleted,
    FileUploadFailed,
    FileUploadProgressed,
    FileUploadStarted,
)
from engine.model.errors import PermissionDenied, Rejected, StoreUnavailable, ValidationFailed
from engine.model.events import AppendOutcome, Duplicate, Origin, RecordedEvent
from engine.model.reading import ReadStream
from engine.projections import uploads as uploads_projection
from engine.projections.uploads import Upload, end_key
from engine.protocol.fields import FileName, MimeType

log = logging.getLogger(__name__)

FILES_PATH: Final = "/api/v1/files"
MAX_KNOWN_FILES: Final = 10_000  # complete files whose claims this node keeps, the last read

_FILENAME: Final = TypeAdapter(FileName)
_MIME_TYPE: Final = TypeAdapter(MimeType)


class FileIdTaken(Rejected):
    """The file id belongs to another user, is already complete, or is being uploaded. HTTP: 409."""

    code = "FILE_ID_TAKEN"


class TooShort(ValidationFailed):
    """The body ended before the `file_size` its upload was started with: a truncated file, which must
    never be stored as the one announced. HTTP: 422; details `file_size` (announced), `size` (the
    body's bytes)."""


@dataclass(frozen=True, slots=True)
class SharedFile:
    """A file id as the log knows it: its owner's upload and the room it was shared in."""

    upload: Upload
    room_id: str | None = None

    @property
    def owner(self) -> str:
        return self.upload.user_id

    def readable_by(self, actor: Actor, *, in_room: bool) -> bool:
        """Owner and admins always; others when `in_room` (the caller may read the shared room)."""
        if not self.upload.complete:
            return False
        return (
            actor.user_id == self.owner or actor.has_role("admin") or (self.room_id is not None and in_room)
        )


def shared_file(claims: Iterable[RecordedEvent], file_id: str) -> SharedFile | None:
    """The file folded from its owner's `FileUploadStarted`/`FileUploadCompleted`/`FileUploadFailed`
    events naming `file_id`, in position order (as `EventLog.file_claims` reads them); should events of
    another user be among them, the first one's user is taken for the owner and the others ignored."""
    ordered = [e for e in claims if str(e.data.get("file_id")) == file_id]
    if not ordered:
        return None
    owner = str(ordered[0].data["user_id"])
    own = [e for e in ordered if str(e.data["user_id"]) == owner]
    upload = uploads_projection.project(own, file_id)
    if upload is None:  # cannot happen: `own` holds at least the first claim
        return None
    completed = [e for e in own if e.type == FILE_UPLOAD_COMPLETED]
    room = completed[0].data.get("room_id") if completed else own[0].data.get("room_id")
    return SharedFile(upload, str(room) if room else None)


def percentage(done: int, total: int | None) -> float:
    return round(min(100.0, 100.0 * done / total), 2) if total else 0.0


def file_url(file_id: str) -> str:
    return f"{FILES_PATH}/{file_id}"


def checked_filename(filename: str) -> str:
    """The filename if safe for a download dialog and a header (engine/protocol/fields.py rules)."""
    try:
        return _FILENAME.validate_python(filename)
    except PydanticValidationError as exc:
        raise ValidationFailed(
            "filename must be 1 to 255 characters without '/', '\\', '..' or control characters",
            details=[{"loc": ["filename"], "msg": err["msg"], "type": err["type"]} for err in exc.errors()],
        ) from None


def checked_content_type(content_type: str) -> str:
    """The declared type if it is a media type, as `file_upload_start` takes its `mime_type`: it
    becomes the upload's, which `file_upload_started` shows the uploader's tabs."""
    try:
        return _MIME_TYPE.validate_python(content_type)
    except PydanticValidationError as exc:
        raise ValidationFailed(
            "Content-Type must be a media type like 'text/csv' (at most 255 characters)",
            details=[
                {"loc": ["header", "content-type"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()
            ],
        ) from None


ReadClaims = Callable[[str], Awaitable[list[RecordedEvent]]]
"""The `FileUploadStarted`/`FileUploadCompleted`/`FileUploadFailed` events naming a file id in its
owner's stream, in log order (none while nobody claimed it)."""
ReadByKey = Callable[[str, str, str], Awaitable[RecordedEvent | None]]
"""The event a user appended to a stream (or its volatile twin) under an idempotency key, if any."""
Starting = Callable[[str, str], AbstractAsyncContextManager[None]]
"""Hold a user's starts of a file id on this node, from a check to the start's commit: the lock
`file_upload_start` takes (`Uploads.starting`, engine/features/uploads.py)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Files:
    """REST file bodies. `storage` is where the bytes go; without one, uploads answer that storage is
    unavailable."""

    def __init__(
        self,
        *,
        node_id: str,
        commit: Commit,
        read_claims: ReadClaims,
        read_by_key: ReadByKey,
        read_stream: ReadStream,
        starting: Starting,
        storage: FileStorage | None,
        idle_timeout: float = 30.0,
        now: Now = _utc_now,
    ) -> None:
        self._node_id = node_id
        self._commit = commit
        self._read_claims = read_claims
        self._read_by_key = read_by_key
        self._read_stream = read_stream
        self._starting = starting
        self.storage = storage
        self.idle_timeout = idle_timeout  # seconds without a byte before a body fails
        self._now = now
        # Complete files never change: safe to keep, the last `MAX_KNOWN_FILES` read.
        self._complete_files: FIFOCache[str, SharedFile] = FIFOCache(MAX_KNOWN_FILES)
        self._uploading: set[str] = set()  # file ids with a body being stored by this node

    async def start(self) -> None:
        remove_partials = getattr(self.storage, "remove_partials", None)
        if remove_partials is not None:
            await remove_partials()  # temporary files a crash left behind (storage/local.py)

    # Reading.

    async def shared_file(self, file_id: str) -> SharedFile | None:
        """What the log says of `file_id` (None: nobody claimed it). InvalidFileId for a bad id."""
        validate_file_id(file_id)
        known = self._complete_files.get(file_id)
        if known is not None:
            return known
        found = shared_file(await self._read_claims(file_id), file_id)
        if found is not None and found.upload.complete:
            self._complete_files[file_id] = found
        return found

    async def open_file(self, file_id: str) -> FileStream:
        """The stored bytes of `file_id` (FileNotFound). Callers check `shared_file` rights first."""
        if self.storage is None:
            raise StoreUnavailable("no file storage is configured")
        return await self.storage.open(file_id)

    # Writing.

    async def store_file(
        self,
        actor: Actor,
        file_id: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        filename: str | None = None,
        room_id: str | None = None,
        content_type: str | None = None,
        content_length: int | None = None,
    ) -> SharedFile:
        """Store a body under `file_id` and record it; returns the completed file.

        Raises PermissionDenied (not an editor or admin), InvalidFileId / ValidationFailed (bad id,
        filename, content type or room, or a filename other than the `file_upload_start` gave, also one
        that came while the first bytes were awaited), TooLarge (by `content_length` before reading, or as
        soon as the body crosses `max_bytes` or the `file_size` its upload was started with), TooShort
        (by `content_length` before reading, or once the body ended, short of that `file_size`),
        ContentTypeMismatch, FileIdTaken, UploadTimedOut (no byte
        for `idle_timeout`), StoreUnavailable, or whatever reading `chunks` raised (the client went away).
        After any of them no bytes are kept; once the upload was in the log, it ends with
        `FileUploadFailed`, except when another process held the id's lock for too long
        (StoreUnavailable): the upload stays open for the PUT to be tried again.
        """
        if not actor.may_upload():
            raise PermissionDenied("uploading files needs the editor or admin role", roles=list(actor.roles))
        validate_file_id(file_id)
        if filename is not None:
            filename = checked_filename(filename)
        if content_type is not None:
            content_type = checked_content_type(content_type)
        if content_length is not None and content_length > max_bytes:
            await self._fail_started(actor, file_id, TOO_LARGE)
            raise TooLarge(
                f"the body of {content_length} bytes exceeds the limit of {max_bytes}", max_bytes=max_bytes
            )
        storage = self.storage
        if storage is None:
            raise StoreUnavailable("no file storage is configured")
        if file_id in self._uploading:
            raise FileIdTaken("this file id is being uploaded", file_id=file_id)
        self._uploading.add(file_id)  # no await since the check: one body per id on this node
        try:
            # Checked under the lock of the user's socket starts too: one committing now came first,
            # and gives the filename, type and size a PUT may leave out (`_begin` checks again later).
            async with self._starting(actor.user_id, file_id):
                found = await self.shared_file(file_id)
            own = self._own_upload(actor, file_id, found)
            name = _resolved_filename(own, filename, file_id)
            declared = content_type or (own.mime_type if own is not None else None) or None
            # The size the upload was started with (0: none was announced) bounds its body, unless
            # max_bytes is as strict, and is the least the body must bring.
            announced = own.file_size if own is not None and own.file_size else None
            bound = announced if announced is not None and announced < max_bytes else None
            if own is not None and bound is not None and (content_length or 0) > bound:
                await self._fail(actor, own, TOO_LARGE, 0)
                raise _longer_than_announced(bound, content_length)
            if (
                own is not None
                and announced is not None
                and content_length is not None
                and content_length < announced
            ):
                await self._fail(actor, own, TOO_SHORT, 0)
                raise _shorter_than_announced(announced, content_length)
            total = content_length if content_length is not None else announced
            report = partial(self._report, actor, file_id, total)
            attempt = UploadAttempt(report, total, own, fresh_for=self.idle_timeout / 2, now=self._now)
            body = UploadBody(chunks, self.idle_timeout, attempt)

            async def claim() -> None:
                if own is None:
                    attempt.began(await self._begin(actor, file_id, name, total, declared, room_id))

            try:
                staged = await storage.stage(
                    file_id,
                    _claimed_after_sniff(_within(body, bound, announced), declared, claim),
                    max_bytes=max_bytes,
                    on_progress=attempt.written,
                    declared_type=declared,
                )
            except BaseException as exc:
                await body.aclose()
                reason = _failure_reason(exc, body)
                if attempt.upload is not None and reason is not None:
                    await self._fail(actor, attempt.upload, reason, body.received)
                raise
            assert attempt.upload is not None  # storage read the body, so `claim` ran
            try:
                return await self._complete(actor, attempt, name, room_id, staged, storage)
            finally:
                staged.discard()
        finally:
            self._uploading.discard(file_id)

    async def _fail_started(self, actor: Actor, file_id: str, reason: str) -> None:
        """End the caller's upload of `file_id` in progress, if one is, for a body refused before a
        byte of it was read: that body can never be the upload's, so its tabs hear why now, and the
        id is free again, rather than when the upload is expired as idle. An upload whose body is
        being stored on this node is left to that body."""
        if file_id in self._uploading:
            return
        try:
            async with self._starting(actor.user_id, file_id):
                found = await self.shared_file(file_id)
        except StoreUnavailable as exc:  # the refusal stands; the sweeper ends the upload later
            log.warning("could not look up upload %r to end it (%s): %s", file_id, reason, exc)
            return
        if found is not None and found.owner == actor.user_id and not found.upload.ended:
            await self._fail(actor, found.upload, reason, 0)

    def _own_upload(self, actor: Actor, file_id: str, found: SharedFile | None) -> Upload | None:
        """The caller's upload of `file_id` in progress (started over the WebSocket, or a body on
        another node), None when nobody claimed the id or the caller's last attempt failed (a new one
        begins); FileIdTaken when another user owns it or it is complete."""
        if found is None:
            return None
        if found.owner != actor.user_id:
            raise FileIdTaken("this file id belongs to another user", file_id=file_id)
        if found.upload.complete:
            raise FileIdTaken("this file id is already uploaded; files are never replaced", file_id=file_id)
        return None if found.upload.failed else found.upload

    async def _begin(
        self,
        actor: Actor,
        file_id: str,
        filename: str,
        total: int | None,
        mime_type: str | None,
        room_id: str | None,
    ) -> Upload:
        """The upload this PUT is the body of, begun now unless the log has one since the PUT's check.
        The check is made again under the lock of the user's starts of the id on this node (the one
        `file_upload_start` holds from its check to its commit), so a start over the socket that came
        while the body's first bytes were awaited, or that was committing, is found and this PUT is
        its body (its filename must agree, as when the start came first), and a socket start that
        comes now finds this PUT's. FileIdTaken when the id was completed or taken meanwhile."""
        async with self._starting(actor.user_id, file_id):
            own = self._own_upload(actor, file_id, await self.shared_file(file_id))
            if own is not None:
                _resolved_filename(own, filename, file_id)
                return own
            return await self._claim(actor, file_id, filename, total, mime_type, room_id)

    async def _claim(
        self,
        actor: Actor,
        file_id: str,
        filename: str,
        total: int | None,
        mime_type: str | None,
        room_id: str | None,
    ) -> Upload:
        """Claim the id (engine/features/claims.py), then append `FileUploadStarted`; returns the
        upload it began. Called under `_starting` (`_begin`)."""
        origin = Origin.of(self._node_id, actor)
        if not await claim_file(self._commit, self._read_stream, file_id, actor.user_id, origin):
            raise FileIdTaken("this file id was just claimed by another user", file_id=file_id)
        started = FileUploadStarted(actor.user_id, file_id, filename, total or 0, mime_type or "", room_id)
        await self._commit(started.new(origin))
        begun = shared_file(await self._read_claims(file_id), file_id)
        if begun is None:  # cannot happen: the id is this user's and the start just committed
            raise StoreUnavailable("the upload just started is not in the log")
        return begun.upload

    async def _report(self, actor: Actor, file_id: str, total: int | None, done: int) -> AppendOutcome:
        progressed = FileUploadProgressed(actor.user_id, file_id, done, total or 0, percentage(done, total))
        return await self._commit(progressed.new(Origin.of(self._node_id, actor)))

    async def _fail(self, actor: Actor, upload: Upload, reason: str, received: int) -> bool:
        """Record that the attempt failed; whether this did end it (not a Duplicate of another end).
        Best effort: when the log cannot be reached either, the upload goes idle and the sweeper ends
        it (upload_sweeper.py)."""
        failed = FileUploadFailed(actor.user_id, upload.file_id, reason, upload.filename, received)
        try:
            outcome = await self._commit(failed.new(Origin.of(self._node_id, actor), key=end_key(upload)))
        except Exception as exc:
            log.warning(
                "could not record the failure (%s) of upload %r: %s: %s", reason, upload.file_id,
                type(exc).__name__, exc,
            )  # fmt: skip
            return False
        return not isinstance(outcome, Duplicate)

    async def _complete(
        self,
        actor: Actor,
        attempt: UploadAttempt,
        filename: str,
        room_id: str | None,
        staged: StagedFile,
        storage: FileStorage,
    ) -> SharedFile:
        """Put the staged bytes under the id and record the completion, unless the attempt has ended.
        One process at a time per id: when PUTs of one upload race on nodes that share the storage,
        the bytes left stored are those the completion describes, since a PUT that finds the attempt
        ended (another's completion, or an expiry) leaves the stored file alone. A failure once the lock
        is held ends the attempt (a completion that did commit stays: the first end wins)."""
        upload, stored = attempt.upload, staged.file
        assert upload is not None  # the body was read, so the upload is in the log
        file_id = upload.file_id
        completed = FileUploadCompleted(
            actor.user_id,
            file_id,
            filename,
            url=file_url(file_id),
            size=stored.size,
            sha256=stored.sha256,
            mime_type=stored.content_type,
            room_id=room_id,
        )
        event = completed.new(Origin.of(self._node_id, actor), key=end_key(upload))
        lock_wait = self.idle_timeout / 4
        due = attempt.beat_in()
        if due is not None and due < lock_wait:  # fresh for the sweeper while the lock is awaited
            await attempt.beat(stored.size)
        # Not had in time: the attempt stays open, for a retry of the PUT (or the sweeper).
        async with storage.exclusive(file_id, wait_seconds=lock_wait):
            ended = await self._ending(actor, upload, event.stream_id)
            if ended is not None:
                raise _ended_already(file_id, ended)
            try:
                await staged.place()
                outcome = await self._commit(event)
            except BaseException as exc:
                reason = ABORTED if isinstance(exc, asyncio.CancelledError) else STORAGE_ERROR
                if await self._fail(actor, upload, reason, stored.size):  # so no completion either
                    await _remove(storage, file_id)
                raise
            if isinstance(outcome, Duplicate):  # ended since the check
                ended = await self._ending(actor, upload, event.stream_id)
                if ended is None or ended.type != FILE_UPLOAD_COMPLETED:  # expired: nothing describes them
                    await _remove(storage, file_id)
                raise _ended_already(file_id, ended)
        self._complete_files.pop(file_id, None)
        found = await self.shared_file(file_id)
        if found is None:  # cannot happen: the completion just committed
            raise StoreUnavailable("the completed upload is not in the log")
        return found

    async def _ending(self, actor: Actor, upload: Upload, stream_id: str) -> RecordedEvent | None:
        """The event that ended the attempt (completed by another PUT, failed or expired), if any."""
        return await self._read_by_key(actor.user_id, end_key(upload), stream_id)


def _ended_already(file_id: str, ended: RecordedEvent | None) -> FileIdTaken:
    return FileIdTaken(
        "this upload had already ended; start it again",
        file_id=file_id,
        ended=ended.type if ended is not None else None,
        reason=ended.data.get("reason") if ended is not None else None,
    )


async def _remove(storage: FileStorage, file_id: str) -> None:
    """Remove bytes placed for an attempt that ended without them; they are never served (the log
    has no completion for them), so a failure only costs disk space."""
    try:
        await storage.delete(file_id)
    except Exception as exc:
        log.warning("could not remove the bytes of upload %r: %s: %s", file_id, type(exc).__name__, exc)


def _failure_reason(exc: BaseException, body: UploadBody) -> str | None:
    """Why the body failed, as `FileUploadFailed` says it; None for a refusal of the request that
    leaves its upload as it was (a type the first bytes contradict, an id someone else claimed)."""
    if isinstance(exc, TooLarge):
        return TOO_LARGE
    if isinstance(exc, TooShort):
        return TOO_SHORT
    if isinstance(exc, UploadTimedOut):
        return IDLE_TIMEOUT
    if isinstance(exc, ContentTypeMismatch | FileIdTaken):
        return None
    if body.broken or isinstance(exc, asyncio.CancelledError):
        return ABORTED
    return STORAGE_ERROR


def _resolved_filename(own: Upload | None, given: str | None, file_id: str) -> str:
    """The filename of the `file_upload_start`, else the one given; a contradiction is refused."""
    started = own.filename if own is not None else None
    if started and given and started != given:
        raise ValidationFailed(
            "filename differs from the one file_upload_start announced", file_id=file_id, filename=started
        )
    name = started or given
    if not name:
        raise ValidationFailed("filename is required (query parameter, or file_upload_start first)")
    return name


def _longer_than_announced(announced: int, length: int | None = None) -> TooLarge:
    body = "the body" if length is None else f"the body of {length} bytes"
    return TooLarge(
        f"{body} is larger than the file_size of {announced} bytes its upload was started with",
        max_bytes=announced,
    )


def _shorter_than_announced(announced: int, size: int) -> TooShort:
    return TooShort(
        f"the body of {size} bytes is shorter than the file_size of {announced} bytes its upload was "
        "started with; nothing was stored",
        file_size=announced,
        size=size,
    )


async def _within(
    chunks: AsyncIterable[bytes], bound: int | None, announced: int | None
) -> AsyncIterator[bytes]:
    """`chunks`, refused (TooLarge) as soon as they come to more than `bound`, and (TooShort) when they
    end before `announced`: the `file_size` the upload was started with (None: no bound here, none
    announced). Either body is not the file its start announced: a longer one's progress would pass
    the `total_bytes` the uploader's tabs were told, a shorter one is a truncated file. Only a body
    that ended is checked for its length: one whose client went away raises while it is read."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if bound is not None and received > bound:
            raise _longer_than_announced(bound)
        yield chunk
    if announced is not None and received < announced:
        raise _shorter_than_announced(announced, received)


async def _claimed_after_sniff(
    chunks: AsyncIterable[bytes], declared: str | None, claim: Callable[[], Awaitable[None]]
) -> AsyncIterator[bytes]:
    """`chunks`, once the first bytes agree with `declared` and `claim()` has run: a body of the
    wrong type is refused before anything is appended (storage checks the type again)."""
    head = bytearray()
    async for chunk in chunks:
        head.extend(chunk)
        if len(head) >= SNIFF_BYTES:
            break
    sniffed = sniff_mime(bytes(head))
    if declared is not None and not declared_type_matches(declared, sniffed):
        raise ContentTypeMismatch(
            "the declared content type does not match the file's content",
            declared=declared[:255],
            sniffed=sniffed,
        )
    await claim()
    if head:
        yield bytes(head)
    async for chunk in chunks:
        if chunk:
            yield chunk


__all__ = [
    "FileIdTaken",
    "Files",
    "SharedFile",
    "TooShort",
    "checked_filename",
    "file_url",
    "percentage",
    "shared_file",
]
