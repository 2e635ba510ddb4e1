"""Who owns a file id: settled once, in the id's own stream.

A file id is global (one URL per file) while uploads live in each user's own stream, so the owner is
decided in `file:{file_id}`, whose first event is `FileClaimed`, appended at expected version 0. Of two
users racing for one id, on one node or two, exactly one append commits; the other is a Conflict and
reads the winner. The claim is appended before the owner's first `FileUploadStarted`: a crash between
the two leaves an id owned but not started, which its owner starts later like any other.

Why a stream of its own and not a scan for the first start naming the id: the scan read the whole log
on every upload and every download of an unfinished file, and a decision kept inside one stream stays
inside one partition when the log is split by stream (docs/scaling.md).
"""

from __future__ import annotations

from engine.features.ports import Commit
from engine.model.catalogue import FileClaimed
from engine.model.errors import StoreUnavailable
from engine.model.events import Committed, Origin
from engine.model.reading import ReadStream
from engine.model.streams import file_stream


async def file_owner(read_stream: ReadStream, file_id: str) -> str | None:
    """The user who claimed `file_id`, None while nobody has."""
    first = await read_stream(file_stream(file_id), 0, 1)
    return str(first[0].data["user_id"]) if first else None


async def claim_file(
    commit: Commit, read_stream: ReadStream, origin: Origin, user_id: str, file_id: str
) -> str:
    """The owner of `file_id`, claiming it for `user_id` if nobody has: `user_id` when the id was free
    or already theirs, otherwise whoever claimed it first."""
    owner = await file_owner(read_stream, file_id)
    if owner is not None:
        return owner
    outcome = await commit(FileClaimed(file_id, user_id).claim(origin))
    if isinstance(outcome, Committed):
        return user_id
    owner = await file_owner(read_stream, file_id)  # a Conflict: another claim committed first
    if owner is None:
        raise StoreUnavailable(f"the claim of file id {file_id!r} was refused, yet none is in the log")
    return owner


__all__ = ["claim_file", "file_owner"]
