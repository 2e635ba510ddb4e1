"""File bodies over REST (`PUT`/`GET /api/v1/files/{file_id}`): storing an upload's bytes as events.

`store_file` streams a body into `FileStorage` and records it in the uploader's stream:
`FileUploadStarted` (only when no `file_upload_start` came over the WebSocket), `FileUploadProgressed`
(volatile) as bytes arrive, and `FileUploadCompleted` once the bytes are stored. The uploads component
(engine/features/uploads.py) publishes them to the uploader's connections as `file_upload_started`,
`file_upload_progress` and `file_upload_complete`.

File ids are global (one URL per file) but uploads live in each user's own stream, so who owns an id
is read from the log: the user of the first `FileUploadStarted`/`FileUploadCompleted` naming it. That
first claim is decided by log position, which is commit order across nodes (engine/log/store.py): a PUT
that had to claim the id re-reads the claims after its own commit, and the loser of a race between
two users sees the winner's earlier claim and stops before any byte of its body reaches storage.

Bad input changes nothing: the size announced by `Content-Length`, the file id, the filename and
the owner are checked before anything is written, and a body whose first bytes contradict its
declared type is refused before the claim is appended. A file id, once complete, is never written
again: the completion event's size and sha256 keep describing the bytes served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from engine.features.ports import Commit
from engine.features.storage import (
    SNIFF_BYTES,
    ContentTypeMismatch,
    FileStorage,
    FileStream,
    ProgressCallback,
    StoredFile,
    TooLarge,
    declared_type_matches,
    sniff_mime,
    validate_file_id,
)
from engine.model.actors import Actor
from engine.model.catalogue import (
    FILE_UPLOAD_COMPLETED,
    FileUploadCompleted,
    FileUploadProgressed,
    FileUploadStarted,
)
from engine.model.errors import PermissionDenied, Rejected, StoreUnavailable, ValidationFailed
from engine.model.events import Origin, RecordedEvent
from engine.projections import uploads as uploads_projection
from engine.projections.uploads import Upload
from engine.protocol.fields import FileName

# Progress is reported every 5% of the body, but never more often than every 256 KiB: a few events
# per file whatever the client's chunk size (progress is volatile and high-frequency).
PROGRESS_FRACTION: Final = 0.05
PROGRESS_MIN_BYTES: Final = 256 * 1024
FILES_PATH: Final = "/api/v1/files"

_FILENAME: Final = TypeAdapter(FileName)


class FileIdTaken(Rejected):
    """The file id belongs to another user, is already complete, or is being uploaded. HTTP: 409."""

    code = "FILE_ID_TAKEN"


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
    """The file folded from the `FileUploadStarted`/`FileUploadCompleted` events naming `file_id`, of
    any user, in position order: the first one's user owns it, later claims of others are ignored."""
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


def progress_step(total: int | None) -> int:
    """Bytes between two progress reports of a body of `total` bytes (unknown: the minimum)."""
    return max(PROGRESS_MIN_BYTES, int((total or 0) * PROGRESS_FRACTION))


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


ReadClaims = Callable[[str], Awaitable[list[RecordedEvent]]]
"""The `FileUploadStarted`/`FileUploadCompleted` events naming a file id, of any user, in log order."""


class Files:
    """REST file bodies. `storage` is where the bytes go; without one, uploads answer that storage is
    unavailable."""

    def __init__(
        self, *, node_id: str, commit: Commit, read_claims: ReadClaims, storage: FileStorage | None
    ) -> None:
        self._node_id = node_id
        self._commit = commit
        self._read_claims = read_claims
        self.storage = storage
        self._complete_files: dict[str, SharedFile] = {}  # complete files never change: safe to keep
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
        filename or room, or a filename other than the `file_upload_start` gave), TooLarge (by
        `content_length` before reading, or as soon as the body crosses `max_bytes`),
        ContentTypeMismatch, FileIdTaken, StoreUnavailable. After any of them no bytes are kept.
        """
        if not actor.may_upload():
            raise PermissionDenied("uploading files needs the editor or admin role", roles=list(actor.roles))
        validate_file_id(file_id)
        if filename is not None:
            filename = checked_filename(filename)
        if content_length is not None and content_length > max_bytes:
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
            found = await self.shared_file(file_id)
            own = self._own_upload(actor, file_id, found)
            name = _resolved_filename(own, filename, file_id)
            declared = content_type or (own.mime_type if own is not None else None) or None
            total = content_length if content_length is not None else (own.file_size if own else None)

            async def claim() -> None:
                if own is None:
                    await self._claim(actor, file_id, name, total, declared, room_id)

            body = _claimed_after_sniff(chunks, declared, claim)
            stored = await storage.write(
                file_id,
                body,
                max_bytes=max_bytes,
                on_progress=self._progress_reporter(actor, file_id, total),
                declared_type=declared,
            )
            return await self._complete(actor, file_id, name, room_id, stored)
        finally:
            self._uploading.discard(file_id)

    def _own_upload(self, actor: Actor, file_id: str, found: SharedFile | None) -> Upload | None:
        """The caller's unfinished upload of `file_id`, None when nobody claimed it; FileIdTaken when
        another user owns it or it is complete."""
        if found is None:
            return None
        if found.owner != actor.user_id:
            raise FileIdTaken("this file id belongs to another user", file_id=file_id)
        if found.upload.complete:
            raise FileIdTaken("this file id is already uploaded; files are never replaced", file_id=file_id)
        return found.upload

    async def _claim(
        self,
        actor: Actor,
        file_id: str,
        filename: str,
        total: int | None,
        mime_type: str | None,
        room_id: str | None,
    ) -> None:
        """Append `FileUploadStarted`, then make sure it is the id's first claim (module docstring)."""
        started = FileUploadStarted(actor.user_id, file_id, filename, total or 0, mime_type or "", room_id)
        await self._commit(started.new(Origin.of(self._node_id, actor)))
        winner = shared_file(await self._read_claims(file_id), file_id)
        if winner is not None and winner.owner != actor.user_id:
            raise FileIdTaken("this file id was just claimed by another user", file_id=file_id)

    def _progress_reporter(self, actor: Actor, file_id: str, total: int | None) -> ProgressCallback:
        step = progress_step(total)
        reported = 0

        async def report(done: int) -> None:
            nonlocal reported
            if done - reported < step or (total is not None and done >= total):
                return  # the last bytes are announced by the completion itself
            reported = done
            progressed = FileUploadProgressed(
                actor.user_id, file_id, done, total or 0, percentage(done, total)
            )
            await self._commit(progressed.new(Origin.of(self._node_id, actor)))

        return report

    async def _complete(
        self, actor: Actor, file_id: str, filename: str, room_id: str | None, stored: StoredFile
    ) -> SharedFile:
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
        await self._commit(completed.new(Origin.of(self._node_id, actor)))
        self._complete_files.pop(file_id, None)
        found = await self.shared_file(file_id)
        if found is None:  # cannot happen: the completion just committed
            raise StoreUnavailable("the completed upload is not in the log")
        return found


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


async def _claimed_after_sniff(
    chunks: AsyncIterator[bytes], declared: str | None, claim: Callable[[], Awaitable[None]]
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
    "checked_filename",
    "file_url",
    "percentage",
    "progress_step",
    "shared_file",
]
