"""Claims: a global id settled once, by the first event of the id's own stream.

A file id is global (one URL per file) while uploads live in each user's own stream, and a sheet id is
global while a sheet's edits live in its room's stream. So who owns a file id is decided in
`file:{file_id}` and which room a sheet belongs to in `sheet:{sheet_id}`: the stream's first event
(`FileClaimed`, `SheetClaimed`), appended at expected version 0. Of two claims racing for one id, on
one node or two, exactly one commits; the other is a Conflict and reads the winner. A claim is
appended before the first event that relies on it (the owner's first `FileUploadStarted`, the sheet's
first edit): a crash between the two leaves an id claimed and unused, which its claimant uses later.

Why a stream per id, and not the first start or edit naming it: finding that one read the whole log
(files) or a table every room's append shares (sheets), and a decision kept inside one stream stays
inside one partition when the log is split by stream (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.features.ports import Commit
from engine.model.catalogue import Event, FileClaimed
from engine.model.errors import StoreUnavailable
from engine.model.events import Committed, Origin
from engine.model.reading import ReadStream


async def claimed(read_stream: ReadStream, stream_id: str) -> Mapping[str, Any] | None:
    """The data of the claim that settled `stream_id`'s id, None while nobody has claimed it."""
    first = await read_stream(stream_id, 0, 1)
    return first[0].data if first else None


async def claim(commit: Commit, read_stream: ReadStream, event: Event, origin: Origin) -> Mapping[str, Any]:
    """The data of the claim that settles `event`'s id: `event`'s own when the id was free (it is
    appended now), otherwise the claim that came first."""
    found = await claimed(read_stream, event.stream_id)
    if found is not None:
        return found
    outcome = await commit(event.claim(origin))
    if isinstance(outcome, Committed):
        return event.to_data()
    found = await claimed(read_stream, event.stream_id)  # a Conflict: another claim committed first
    if found is None:
        raise StoreUnavailable(f"the claim of {event.stream_id!r} was refused, yet none is in the log")
    return found


async def claim_file(
    commit: Commit, read_stream: ReadStream, file_id: str, user_id: str, origin: Origin
) -> bool:
    """Claim `file_id` for `user_id` if nobody has; True if the id is theirs."""
    claimed_by = await claim(commit, read_stream, FileClaimed(file_id, user_id), origin)
    return str(claimed_by["user_id"]) == user_id


__all__ = ["claim", "claim_file", "claimed"]
