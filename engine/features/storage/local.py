"""`LocalFileStorage`: uploads as files in one local folder (`DATA_DIR/files` by default).

Each stored file is one file named by its id: a fixed 512-byte header (JSON: size, sha256, content
type, stored_at) followed by the bytes. Keeping the metadata in the same file as the bytes means the
single atomic rename that publishes an upload publishes both together, so `stat` can never describe
other bytes than `open` serves, even while two uploads of one id race.

An upload is written to a temporary file in the same folder (named `.{id}.{random}.part`; ids never
start with "." so it can never be taken for a file), fsynced (`stage`), then renamed over the final
name with `os.replace` (`StagedFile.place`): atomic within one filesystem, so a reader sees the old
file or the new one, never a part, and a crash leaves only a temporary file, which `remove_partials`
sweeps at startup.

`exclusive(id)` holds an advisory lock (`flock`) on one of a few lock files in the folder
(`.lock.{n}`), so processes sharing the folder, on one host or on a file system that supports such
locks, can decide and place one id's bytes one at a time (engine/features/files.py).

All file I/O runs in worker threads (`asyncio.to_thread`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import threading
import time
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

from engine.features.storage.base import (
    ContentTypeMismatch,
    FileNotFound,
    FileStream,
    InvalidFileId,
    ProgressCallback,
    StoredFile,
    TooLarge,
    validate_file_id,
)
from engine.features.storage.mime import SNIFF_BYTES, declared_type_matches, resolve_content_type, sniff_mime
from engine.model.errors import EngineError, StoreUnavailable

HEADER_BYTES: Final = 512
_HEADER_MAGIC: Final = b"collab-file/1\n"
_PART_SUFFIX: Final = ".part"
_LOCK_STRIPES: Final = 1024  # lock files, each shared by the ids that hash to it
_LOCK_POLL_SECONDS: Final = 0.01


def _encode_header(file: StoredFile) -> bytes:
    fields = {
        "size": file.size,
        "sha256": file.sha256,
        "content_type": file.content_type,
        "stored_at": file.stored_at.isoformat(),
    }
    header = _HEADER_MAGIC + json.dumps(fields, separators=(",", ":")).encode()
    if len(header) >= HEADER_BYTES:  # cannot happen: every field is bounded well below
        raise EngineError("file header too long")
    return header.ljust(HEADER_BYTES - 1, b" ") + b"\n"


def _decode_header(file_id: str, header: bytes) -> StoredFile:
    if len(header) != HEADER_BYTES or not header.startswith(_HEADER_MAGIC):
        raise EngineError("stored file has no valid header", file_id=file_id)
    fields = json.loads(header[len(_HEADER_MAGIC) :])
    return StoredFile(
        file_id=file_id,
        size=fields["size"],
        sha256=fields["sha256"],
        content_type=fields["content_type"],
        stored_at=datetime.fromisoformat(fields["stored_at"]),
    )


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: the new directory entry is only on disk once the folder is synced."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _PartFile:
    """One upload's temporary file. Its I/O runs in worker threads under `lock`, so a cleanup after a
    cancellation (which cannot stop a running thread) waits for that thread instead of racing it."""

    def __init__(self, root: Path, file_id: str) -> None:
        fd, name = tempfile.mkstemp(dir=root, prefix=f".{file_id}.", suffix=_PART_SUFFIX)
        self.path = Path(name)
        self.handle: IO[bytes] = os.fdopen(fd, "wb")
        self.handle.write(b"\0" * HEADER_BYTES)  # the header's place, filled in at commit
        self.digest = hashlib.sha256()
        self.lock = threading.Lock()

    def append(self, data: bytes) -> None:
        with self.lock:
            # hashlib releases the GIL on large inputs, so hashing here keeps it off the loop too.
            self.digest.update(data)
            self.handle.write(data)

    def seal(self, header: bytes) -> None:
        with self.lock:
            self.handle.seek(0)
            self.handle.write(header)
            self.handle.flush()
            os.fsync(self.handle.fileno())  # the bytes are on disk before the name points at them
            self.handle.close()

    def place(self, final: Path) -> None:
        with self.lock:
            # Last rename wins when two uploads of one id race; each rename swaps a complete file.
            os.replace(self.path, final)
            _fsync_dir(final.parent)

    def discard(self) -> None:
        with self.lock:
            self.handle.close()
            self.path.unlink(missing_ok=True)

    def discard_soon(self) -> None:
        """Discard now if no worker thread is using the file, else as soon as it is done."""
        if self.lock.acquire(blocking=False):
            self.lock.release()
            self.discard()
        else:
            asyncio.get_running_loop().run_in_executor(None, self.discard)


class _Staged:
    """A sealed part file, placed under its id by `place` or removed by `discard`."""

    def __init__(self, file: StoredFile, part: _PartFile, final: Path) -> None:
        self.file = file
        self._part = part
        self._final = final

    async def place(self) -> None:
        """Also when cancelled, returns only once the rename is done or failed: a caller's lock let go
        while a worker thread still renames would let another holder place first and be replaced."""
        renaming = asyncio.ensure_future(asyncio.to_thread(self._part.place, self._final))
        try:
            await asyncio.shield(renaming)
        except asyncio.CancelledError:
            await asyncio.wait([renaming])
            raise

    def discard(self) -> None:
        self._part.discard_soon()  # once placed, nothing is left to remove


class LocalFileStorage:
    """`FileStorage` on a local folder. `progress_every`: bytes between progress callbacks;
    `buffer_bytes`: bytes gathered before a write to disk (small chunks are not one thread hop each)."""

    def __init__(
        self,
        root: Path,
        *,
        progress_every: int = 256 * 1024,
        buffer_bytes: int = 256 * 1024,
        read_chunk_bytes: int = 64 * 1024,
    ) -> None:
        self.root = Path(root)
        self.progress_every = progress_every
        self.buffer_bytes = buffer_bytes
        self.read_chunk_bytes = read_chunk_bytes

    async def _path_for(self, file_id: str, *, create_root: bool = False) -> Path:
        validate_file_id(file_id)  # before any file system call
        return await asyncio.to_thread(self._resolve, file_id, create_root)

    def _resolve(self, file_id: str, create_root: bool) -> Path:
        if create_root:
            self.root.mkdir(parents=True, exist_ok=True)
        root = self.root.resolve()
        path = (root / file_id).resolve()
        # Defence in depth: the id rules already exclude separators and "..", but a symlink planted in
        # the folder, or a future change to those rules, must still not lead outside it.
        if path.parent != root or not path.is_relative_to(root):
            raise InvalidFileId("file id does not name a file inside the storage folder")
        return path

    async def stage(
        self,
        file_id: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        on_progress: ProgressCallback | None = None,
        declared_type: str | None = None,
    ) -> _Staged:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        final = await self._path_for(file_id, create_root=True)
        part = await asyncio.to_thread(_PartFile, final.parent, file_id)
        try:
            size, content_type = await self._fill(part, chunks, max_bytes, on_progress, declared_type)
            stored = StoredFile(file_id, size, part.digest.hexdigest(), content_type, datetime.now(UTC))
            await asyncio.to_thread(part.seal, _encode_header(stored))
            if on_progress is not None:
                await on_progress(size)
        except BaseException:
            part.discard_soon()  # also on cancellation: no part file may outlive a failed upload
            raise
        return _Staged(stored, part, final)

    @contextlib.asynccontextmanager
    async def exclusive(self, file_id: str, *, wait_seconds: float) -> AsyncIterator[None]:
        final = await self._path_for(file_id, create_root=True)
        stripe = final.parent / f".lock.{zlib.crc32(file_id.encode()) % _LOCK_STRIPES}"
        fd = os.open(stripe, os.O_RDWR | os.O_CREAT, 0o660)  # on the loop: nothing to leak on a cancel
        try:
            try:
                async with asyncio.timeout(wait_seconds):
                    # Polled: the holder may be another process, and a wait must not hold a worker thread.
                    while not _try_lock(fd):  # noqa: ASYNC110
                        await asyncio.sleep(_LOCK_POLL_SECONDS)
            except TimeoutError:
                raise StoreUnavailable(
                    "the file is being stored by another process", file_id=file_id
                ) from None
            yield
        finally:
            os.close(fd)  # lets the lock go

    async def _fill(
        self,
        part: _PartFile,
        chunks: AsyncIterator[bytes],
        max_bytes: int,
        on_progress: ProgressCallback | None,
        declared_type: str | None,
    ) -> tuple[int, str]:
        """Stream `chunks` into `part`; return the size and the content type to serve it with."""
        size = reported = 0
        head = bytearray()
        content_type: str | None = None
        pending = bytearray()
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"the file is larger than {max_bytes} bytes", max_bytes=max_bytes)
            if content_type is None and len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
                if len(head) >= SNIFF_BYTES:
                    content_type = _check_type(head, declared_type)
            pending += chunk
            if len(pending) >= self.buffer_bytes:
                await asyncio.to_thread(part.append, bytes(pending))
                pending.clear()
            if on_progress is not None and size - reported >= self.progress_every:
                reported = size
                await on_progress(size)
        if content_type is None:  # shorter than the sniff window: judged on the whole file
            content_type = _check_type(head, declared_type)
        if pending:
            await asyncio.to_thread(part.append, bytes(pending))
        return size, content_type

    async def open(self, file_id: str) -> FileStream:
        path = await self._path_for(file_id)
        try:
            handle, file = await asyncio.to_thread(self._open, file_id, path)
        except FileNotFoundError:
            raise FileNotFound("no such file", file_id=file_id) from None
        return FileStream(file, self._read(handle), handle.close)

    def _open(self, file_id: str, path: Path) -> tuple[IO[bytes], StoredFile]:
        handle = path.open("rb")
        try:
            return handle, _decode_header(file_id, handle.read(HEADER_BYTES))
        except BaseException:
            handle.close()
            raise

    async def _read(self, handle: IO[bytes]) -> AsyncIterator[bytes]:
        # The open handle pins the file's inode: a rename over it or a delete does not change what
        # this stream reads.
        try:
            while chunk := await asyncio.to_thread(handle.read, self.read_chunk_bytes):
                yield chunk
        finally:
            handle.close()

    async def stat(self, file_id: str) -> StoredFile | None:
        path = await self._path_for(file_id)
        return await asyncio.to_thread(self._stat, file_id, path)

    def _stat(self, file_id: str, path: Path) -> StoredFile | None:
        try:
            with path.open("rb") as handle:
                return _decode_header(file_id, handle.read(HEADER_BYTES))
        except FileNotFoundError:
            return None

    async def delete(self, file_id: str) -> bool:
        path = await self._path_for(file_id)
        return await asyncio.to_thread(_unlink, path)

    async def remove_partials(self, *, older_than_seconds: float = 3600.0) -> int:
        """Remove temporary files left by uploads a crash interrupted; call at startup. Only files
        older than `older_than_seconds`, so an upload in progress in another process is spared."""
        return await asyncio.to_thread(self._remove_partials, time.time() - older_than_seconds)

    def _remove_partials(self, cutoff: float) -> int:
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root):
                is_part = entry.name.startswith(".") and entry.name.endswith(_PART_SUFFIX)
                if is_part and entry.stat().st_mtime < cutoff and _unlink(Path(entry.path)):
                    removed += 1
        return removed


def _check_type(head: bytes | bytearray, declared_type: str | None) -> str:
    sniffed = sniff_mime(bytes(head))
    if declared_type is not None and not declared_type_matches(declared_type, sniffed):
        raise ContentTypeMismatch(
            "the declared content type does not match the file's content",
            declared=declared_type[:255],
            sniffed=sniffed,
        )
    return resolve_content_type(declared_type, sniffed)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


__all__ = ["HEADER_BYTES", "LocalFileStorage"]
