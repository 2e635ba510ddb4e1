"""The storage interface, its value types and its errors; no I/O here.

Every backend validates file ids itself (`validate_file_id`), even though the wire schema already
did: the id becomes a storage key (a path on disk), and a storage layer that trusts its caller is one
refactoring away from a path traversal.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from engine.model.errors import NotFound, Rejected, ValidationFailed

MAX_FILE_ID_LENGTH: Final = 128
# The same rule as the wire (engine.protocol.fields): RFC 3986 "unreserved" characters, so an id is a
# URL path segment and a file name that needs no escaping; starting alphanumeric rules out ".", ".."
# and hidden names, and also the temporary names storage uses for itself (they start with ".").
_FILE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")

ProgressCallback = Callable[[int], Awaitable[None]]


class TooLarge(Rejected):
    """The body crossed the size limit. Raised as soon as it is crossed, so at most one chunk more
    than the limit was read; nothing of the upload is kept. HTTP: 413. Uploads raise it too for a
    `file_upload_start` announcing more than the limit, before any body is sent."""

    code = "PAYLOAD_TOO_LARGE"


class InvalidFileId(ValidationFailed):
    """The id is not a safe storage key. Raised before anything touches the disk."""


class ContentTypeMismatch(ValidationFailed):
    """The declared MIME type contradicts the first bytes (declared image/png, bytes of a PDF).
    details: `declared`, `sniffed`."""


class FileNotFound(NotFound):
    """No file is stored under the id (never uploaded, deleted, or the upload did not finish)."""


def validate_file_id(file_id: str) -> str:
    """Return the id unchanged if it is a safe storage key, else raise `InvalidFileId`.

    Allowed: 1-128 characters of `A-Z a-z 0-9 . _ ~ -`, starting with a letter or digit, without `..`.
    The error text never quotes the id: it may be an attack string headed for a log or a client.
    """
    if not isinstance(file_id, str) or not 1 <= len(file_id) <= MAX_FILE_ID_LENGTH:
        raise InvalidFileId(f"file id must be 1 to {MAX_FILE_ID_LENGTH} characters")
    if not _FILE_ID.fullmatch(file_id) or ".." in file_id:
        raise InvalidFileId(
            "file id must be letters, digits, '.', '_', '~' or '-', start with a letter or digit, no '..'"
        )
    return file_id


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What storage knows of a complete file. `content_type` is the type to serve it with: decided
    from the bytes and the declared type (`engine.features.storage.mime.resolve_content_type`), never taken
    from the client alone."""

    file_id: str
    size: int
    sha256: str
    content_type: str
    stored_at: datetime


class FileStream:
    """The bytes of one stored file, read from the version that was current when it was opened: a
    concurrent overwrite or delete does not change what this stream yields, so `file` (size, type,
    sha256 for the response headers) always describes the bytes that follow.

    Iterate it (`async for chunk in stream`) and close it: it closes itself at the end of the bytes
    or on an error; call `aclose()` (or use `async with`) when stopping early.
    """

    def __init__(self, file: StoredFile, chunks: AsyncIterator[bytes], close: Callable[[], None]) -> None:
        self.file = file
        self._chunks = chunks
        self._close = close

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def aclose(self) -> None:
        self._close()  # also when iteration never started, where the generator's own cleanup never runs
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> FileStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class StagedFile(Protocol):
    """A complete upload kept apart from the file stored under its id until `place` puts it there."""

    file: StoredFile

    async def place(self) -> None:
        """Make these bytes the file stored under the id, replacing any (atomically)."""
        ...

    def discard(self) -> None:
        """Keep nothing of these bytes unless placed; safe to call in any case, and more than once."""
        ...


class FileStorage(Protocol):
    """Where uploaded bytes live. Implementations must make a file visible under its id only once it
    is complete (a reader never sees part of an upload), keep nothing of a failed upload, and treat
    concurrent placings of one id as "last complete body wins", never a mix of two bodies."""

    async def stage(
        self,
        file_id: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        on_progress: ProgressCallback | None = None,
        declared_type: str | None = None,
    ) -> StagedFile:
        """Stream `chunks` into storage, durably but not yet under `file_id` (`StagedFile.place`).

        Never holds the whole body in memory. `on_progress(bytes_so_far)` is awaited as bytes arrive
        (throttled by the backend) and once more with the final size. With `declared_type`, the first
        bytes are checked against it (`ContentTypeMismatch`). Raises `TooLarge` as soon as more than
        `max_bytes` arrived, `InvalidFileId` before touching storage; after any error, including
        cancellation, nothing of this upload remains and the file stored under the id is untouched.
        """
        ...

    def exclusive(self, file_id: str, *, wait_seconds: float) -> AbstractAsyncContextManager[None]:
        """Held by one holder at a time per id, also across processes sharing the storage, so that
        deciding whether bytes may be placed and placing them are not interleaved with another's.
        Raises `StoreUnavailable` if it cannot be had within `wait_seconds`."""
        ...

    async def open(self, file_id: str) -> FileStream:
        """Open the stored file for reading; raises `FileNotFound`."""
        ...

    async def stat(self, file_id: str) -> StoredFile | None:
        """What is stored under `file_id`, or None."""
        ...

    async def delete(self, file_id: str) -> bool:
        """Remove the file; True if there was one. Open streams keep reading the old bytes."""
        ...


__all__ = [
    "MAX_FILE_ID_LENGTH",
    "ContentTypeMismatch",
    "FileNotFound",
    "FileStorage",
    "FileStream",
    "InvalidFileId",
    "ProgressCallback",
    "StagedFile",
    "StoredFile",
    "TooLarge",
    "validate_file_id",
]
