"""File bodies: `PUT /api/v1/files/{file_id}` streams the request body into storage and
`GET /api/v1/files/{file_id}` streams it back (docs/protocol.md, "Files over REST").

The upload is recorded as events by the engine (engine/features/files.py): the uploader's sockets get
`file_upload_progress` while bytes arrive and `file_upload_complete` once they are stored, or
`file_upload_failed` when the body fails (too large; shorter than the file_size its upload was
started with: 422, a truncated file is never stored; no byte for UPLOAD_IDLE_TIMEOUT_SECONDS: 408;
the client gone). A download is for the owner, admins, and whoever may read the room the file was
shared in (`?room_id=` at upload); anyone else gets 404, never 403, so a file id reveals nothing
about a file.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from api.attachments import content_disposition
from api.deps import EngineDep, SettingsDep
from api.params import RoomIdQuery
from api.rest_auth import ActorDep, may_read_room, require_room_reader
from engine.features.files import SharedFile, file_url
from engine.features.storage import FileStream, served_content_type
from engine.model.errors import NotFound, ValidationFailed
from engine.protocol.fields import FileId, FileName

router = APIRouter(prefix="/files", tags=["files"])

FileIdPath = Annotated[FileId, Path(description="letters, digits, '.', '_', '~', '-'; no '..'")]

_BINARY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the file's bytes; `Content-Type` must agree with them",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class FileOut(BaseModel):
    """A stored file: the fields of `file_upload_complete`, and what it is served with."""

    file_id: str
    filename: str
    url: str = Field(description="where GET serves the bytes")
    user_id: str = Field(description="the uploader, who owns the file id")
    size: int
    sha256: str = Field(description="hex digest of the bytes; also the download's ETag")
    content_type: str | None = Field(description="the type the file is served with")
    room_id: str | None = Field(description="the room the file was shared in: its readers may download it")

    @classmethod
    def of(cls, file: SharedFile) -> FileOut:
        upload = file.upload
        return cls(
            file_id=upload.file_id,
            filename=upload.filename or upload.file_id,
            url=upload.url or file_url(upload.file_id),
            user_id=upload.user_id,
            size=upload.size or 0,
            sha256=upload.sha256 or "",
            content_type=upload.mime_type,
            room_id=file.room_id,
        )


@router.put(
    "/{file_id:id}",
    status_code=201,
    response_model=FileOut,
    openapi_extra=_BINARY_BODY,
    responses={
        403: {"description": "not an editor or admin, or no right to the room given"},
        408: {"description": "UPLOAD_TIMEOUT: no byte of the body for UPLOAD_IDLE_TIMEOUT_SECONDS"},
        409: {
            "description": "FILE_ID_TAKEN: another user's id, already uploaded, being uploaded, or "
            "an upload that ended (expired) before its body did"
        },
        413: {
            "description": "PAYLOAD_TOO_LARGE: the body exceeds MAX_UPLOAD_BYTES, or the file_size its "
            "upload was started with; nothing is kept"
        },
        422: {
            "description": "bad file id, filename or Content-Type, a Content-Type the bytes contradict, or "
            "a body shorter than the file_size its upload was started with (details file_size, size; "
            "nothing is kept)"
        },
    },
)
async def upload_file(
    request: Request,
    response: Response,
    actor: ActorDep,
    engine: EngineDep,
    settings: SettingsDep,
    file_id: FileIdPath,
    filename: Annotated[
        FileName | None, Query(description="needed unless a file_upload_start over the WebSocket gave it")
    ] = None,
    room_id: RoomIdQuery = None,
) -> FileOut:
    """Store the request body under `file_id`, streamed (never held whole in memory)."""
    if room_id is not None:
        require_room_reader(actor, room_id)
    try:
        stored = await engine.store_file(
            actor,
            file_id,
            request.stream(),
            max_bytes=settings.max_upload_bytes,
            filename=filename,
            room_id=room_id,
            content_type=request.headers.get("content-type"),
            content_length=_content_length(request),
        )
    except ClientDisconnect:
        # Storage kept nothing; nobody is left to read the answer, but it must not be a server error.
        raise ValidationFailed("the client went away before the body ended", file_id=file_id) from None
    response.headers["Location"] = file_url(file_id)
    return FileOut.of(stored)


@router.get(
    "/{file_id:id}",
    response_class=StreamingResponse,
    responses={
        # Served with the type it was stored with (text/plain, image/png, application/pdf...).
        200: {
            "description": "the bytes",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "If-None-Match names the file's ETag"},
        404: {"description": "no such file, or not one the caller may read"},
    },
)
async def download_file(
    request: Request, actor: ActorDep, engine: EngineDep, file_id: FileIdPath
) -> Response:
    """The file's bytes, as an attachment, with the type it was stored with."""
    found = await engine.shared_file(file_id)
    in_room = found is not None and found.room_id is not None and may_read_room(actor, found.room_id)
    if found is None or not found.readable_by(actor, in_room=in_room):
        raise NotFound("no such file", file_id=file_id)
    stream = await engine.open_file(file_id)
    stored = stream.file
    headers = {
        "ETag": f'"{stored.sha256}"',
        "Content-Disposition": content_disposition(found.upload.filename or file_id),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-cache",
    }
    if _etags(request.headers.get("if-none-match")) & {stored.sha256, "*"}:
        await stream.aclose()
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(stored.size)
    body = _body(stream)
    first = await anext(body, b"")  # the charset of text is told by its first bytes
    headers["Content-Type"] = served_content_type(stored.content_type, first)
    return StreamingResponse(_resumed(first, body), headers=headers)


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")}


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise ValidationFailed("Content-Length must be a number of bytes")
    return int(value)


async def _body(stream: FileStream) -> AsyncGenerator[bytes, None]:
    async with stream:  # closed also when the client goes away mid-download
        async for chunk in stream:
            yield chunk


async def _resumed(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """`first`, then the rest of the body it was taken from; the rest is closed whatever happens."""
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()


__all__ = ["router"]
