"""LocalFileStorage on a real file system (tmp_path) with real asyncio: streaming, limits, atomicity,
path safety and races."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.features.storage import (
    ContentTypeMismatch,
    FileNotFound,
    InvalidFileId,
    LocalFileStorage,
    StoredFile,
    TooLarge,
)
from engine.model.errors import StoreUnavailable

MB = 1024 * 1024


async def _chunks(data: bytes, size: int, *, pause: bool = False) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        if pause:
            await asyncio.sleep(0)  # let a concurrent upload run between our chunks
        yield data[start : start + size]


async def _read_all(storage: LocalFileStorage, file_id: str) -> tuple[StoredFile, bytes]:
    async with await storage.open(file_id) as stream:
        return stream.file, b"".join([chunk async for chunk in stream])


async def write(
    storage: LocalFileStorage, file_id: str, chunks: AsyncIterator[bytes], **options: Any
) -> StoredFile:
    """What an upload does with storage: stage the body, then place it holding the id's lock."""
    staged = await storage.stage(file_id, chunks, **options)
    try:
        async with storage.exclusive(file_id, wait_seconds=30.0):
            await staged.place()
    finally:
        staged.discard()
    return staged.file


def _entries(root: Path) -> list[str]:
    """The folder's files, but for the lock files that storage keeps for itself."""
    return sorted(name for name in os.listdir(root) if not name.startswith(".lock.")) if root.exists() else []


async def test_write_round_trip_streams_hashes_and_reports_progress(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path / "files", progress_every=256 * 1024, buffer_bytes=128 * 1024)
    data = random.Random(7).randbytes(3 * MB + 12_345)
    progress: list[int] = []

    async def on_progress(done: int) -> None:
        progress.append(done)

    stored = await write(
        storage, "sheet.bin", _chunks(data, 37_001), max_bytes=4 * MB, on_progress=on_progress
    )

    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.content_type == "application/octet-stream"
    assert progress == sorted(set(progress)) and progress[-1] == len(data)
    # Throttled: at least progress_every bytes apart, except the final report of the whole size.
    assert all(b - a >= 256 * 1024 for a, b in itertools.pairwise([0, *progress[:-1]]))
    assert len(data) // (256 * 1024 + 37_001) <= len(progress) <= len(data) // (256 * 1024) + 1
    assert await storage.stat("sheet.bin") == stored
    file, read_back = await _read_all(storage, "sheet.bin")
    assert (file, read_back) == (stored, data)
    assert _entries(tmp_path / "files") == ["sheet.bin"]


async def test_write_uses_declared_type_when_it_agrees(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path)
    stored = await write(
        storage, "data.csv", _chunks(b"a,b\n1,2\n", 3), max_bytes=100, declared_type="text/csv; charset=utf-8"
    )
    assert stored.content_type == "text/csv"
    odd = await write(
        storage, "odd.bin", _chunks(b"\x00\x01", 1), max_bytes=9, declared_type='a/"b' + "\u00e9" * 300
    )
    assert odd.content_type == "application/octet-stream"  # a malformed declared type is ignored


async def test_write_refuses_a_contradicting_declared_type_and_keeps_nothing(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path)
    pdf = b"%PDF-1.7\n" + b"x" * 10_000
    with pytest.raises(ContentTypeMismatch) as caught:
        await write(storage, "picture.png", _chunks(pdf, 100), max_bytes=MB, declared_type="image/png")
    assert caught.value.details == {"declared": "image/png", "sniffed": "application/pdf"}
    assert _entries(tmp_path) == []


async def test_write_over_the_limit_raises_too_large_mid_stream_and_leaves_nothing(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path, buffer_bytes=64 * 1024)
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 64 * 1024
            yield b"z" * 64 * 1024

    with pytest.raises(TooLarge) as caught:
        await write(storage, "big.txt", endless(), max_bytes=MB)
    assert caught.value.code == "PAYLOAD_TOO_LARGE"
    assert sent <= MB + 64 * 1024  # stopped at the first chunk past the limit
    assert _entries(tmp_path) == []


async def test_write_failure_leaves_the_previous_file_untouched(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path)
    first = await write(storage, "f.txt", _chunks(b"version one", 4), max_bytes=100)
    with pytest.raises(TooLarge):
        await write(storage, "f.txt", _chunks(b"v2" * 100, 7), max_bytes=100)
    assert await _read_all(storage, "f.txt") == (first, b"version one")
    assert _entries(tmp_path) == ["f.txt"]


async def test_write_cancelled_mid_stream_leaves_no_part_file(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path, buffer_bytes=1024)
    stalled = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"a" * 10_000
        stalled.set()
        await asyncio.Event().wait()
        yield b""  # pragma: no cover

    task = asyncio.create_task(write(storage, "slow.txt", stalls(), max_bytes=MB))
    await stalled.wait()
    assert len(_entries(tmp_path)) == 1  # the part file exists while the upload runs...
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):  # ...and is gone after (a worker thread may finish the cleanup)
        if not _entries(tmp_path):
            break
        await asyncio.sleep(0.01)
    assert _entries(tmp_path) == []


BAD_IDS = ["../x", "..", "a/b", "/etc/passwd", ".hidden", "", "x" * 129, "a\x00b", "a\\b", "..\\x"]


@pytest.mark.parametrize("file_id", BAD_IDS)
async def test_unsafe_ids_are_refused_before_touching_disk(tmp_path: Path, file_id: str) -> None:
    root = tmp_path / "files"
    storage = LocalFileStorage(root)
    consumed = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal consumed
        consumed = True
        yield b"payload"

    with pytest.raises(InvalidFileId):
        await write(storage, file_id, body(), max_bytes=MB)
    for operation in (storage.open, storage.stat, storage.delete):
        with pytest.raises(InvalidFileId):
            await operation(file_id)
    assert not consumed
    assert not root.exists()
    assert _entries(tmp_path) == []


async def test_a_symlink_planted_in_the_folder_does_not_lead_outside(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not serve")
    (root / "evil").symlink_to(secret)
    storage = LocalFileStorage(root)
    with pytest.raises(InvalidFileId):
        await storage.open("evil")
    with pytest.raises(InvalidFileId):
        await write(storage, "evil", _chunks(b"overwrite", 4), max_bytes=100)
    assert secret.read_bytes() == b"do not serve"


async def test_concurrent_writes_of_one_id_end_with_one_complete_file(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path, buffer_bytes=16 * 1024)
    bodies = [bytes([letter]) * (MB // 2) for letter in b"abcd"]
    for _ in range(5):
        results = await asyncio.gather(
            *(
                write(storage, "shared.bin", _chunks(body, 10_000, pause=True), max_bytes=MB)
                for body in bodies
            )
        )
        file, data = await _read_all(storage, "shared.bin")
        assert data in bodies  # one body, whole: never a mix
        assert file in results and file.sha256 == hashlib.sha256(data).hexdigest()
        assert _entries(tmp_path) == ["shared.bin"]


async def test_an_open_stream_keeps_reading_the_version_it_opened(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path, read_chunk_bytes=1024)
    await write(storage, "doc.txt", _chunks(b"old " * 1000, 500), max_bytes=MB)
    async with await storage.open("doc.txt") as stream:
        first = await anext(aiter(stream))
        await write(storage, "doc.txt", _chunks(b"new " * 2000, 500), max_bytes=MB)
        rest = b"".join([chunk async for chunk in stream])
    assert first + rest == b"old " * 1000
    assert (await storage.stat("doc.txt")).size == 8000  # type: ignore[union-attr]


async def test_delete_then_stat_open_and_delete_report_absence(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path)
    await write(storage, "gone.txt", _chunks(b"bye", 1), max_bytes=10)
    assert await storage.delete("gone.txt") is True
    assert await storage.stat("gone.txt") is None
    with pytest.raises(FileNotFound):
        await storage.open("gone.txt")
    assert await storage.delete("gone.txt") is False
    assert await storage.stat("never-written") is None


async def test_empty_upload_is_stored_and_reported(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path)
    progress: list[int] = []

    async def on_progress(done: int) -> None:
        progress.append(done)

    stored = await write(storage, "empty.txt", _chunks(b"", 1), max_bytes=0, on_progress=on_progress)
    assert (stored.size, stored.sha256, progress) == (0, hashlib.sha256(b"").hexdigest(), [0])
    assert await _read_all(storage, "empty.txt") == (stored, b"")


async def test_remove_partials_sweeps_only_old_part_files(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path)
    await write(storage, "kept.txt", _chunks(b"x", 1), max_bytes=10)
    old, fresh = tmp_path / ".crashed.abc.part", tmp_path / ".running.def.part"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(old, (1, 1))
    assert await storage.remove_partials(older_than_seconds=60) == 1
    assert _entries(tmp_path) == [".running.def.part", "kept.txt"]


async def test_staged_bytes_stay_apart_until_placed_and_leave_nothing_when_discarded(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path)
    await write(storage, "doc.txt", _chunks(b"old", 3), max_bytes=MB)
    kept = await storage.stage("doc.txt", _chunks(b"kept", 4), max_bytes=MB)
    dropped = await storage.stage("doc.txt", _chunks(b"dropped", 4), max_bytes=MB)
    assert (await _read_all(storage, "doc.txt"))[1] == b"old"  # neither is visible yet
    dropped.discard()
    await kept.place()
    kept.discard()  # nothing left to remove once placed
    file, data = await _read_all(storage, "doc.txt")
    assert (data, file.sha256) == (b"kept", hashlib.sha256(b"kept").hexdigest())
    assert kept.file == file
    assert _entries(tmp_path) == ["doc.txt"]


async def test_exclusive_holds_off_another_holder_of_the_id_even_through_another_storage(
    tmp_path: Path,
) -> None:
    """Two storages on one folder stand for two processes: the lock is the file system's."""
    first, second = LocalFileStorage(tmp_path), LocalFileStorage(tmp_path)
    async with first.exclusive("doc.txt", wait_seconds=1.0):
        with pytest.raises(StoreUnavailable):
            async with second.exclusive("doc.txt", wait_seconds=0.2):
                pass
    async with second.exclusive("doc.txt", wait_seconds=1.0):
        pass
