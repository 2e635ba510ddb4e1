"""The seed's management endpoints (admin only): post to a room, message a user, create a notification,
remove a connection, shut the node down. Each is a thin call into engine/features/admin.py, where
everything done to clients becomes an event first.

    POST   /ws/rooms/{room_id}/broadcast               200 with the room `seq` it took
    POST   /ws/users/{user_id}/notify                  200 with the user's `seq`
    POST   /ws/broadcast/notification?event_type=...   200 with `notification_id` and `seq`
    DELETE /ws/connections/{connection_id}             200; the socket is closed with 4410
    POST   /ws/shutdown                                202; the process exits once clients are closed

Shutting down ends the process that serves this app, which the app cannot reach by itself: whoever
runs it may set `app.state.request_exit`: `collab serve` and the tests' in-process server set uvicorn's
`should_exit`, so the process ends as after Ctrl-C, with status 0. Otherwise (plain `uvicorn`, or
`collab serve --workers N`) the process sends itself SIGTERM, which uvicorn answers with its own
graceful shutdown; with several workers this stops the one that answered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Annotated, Any, Final, Literal

import orjson
from fastapi import APIRouter, FastAPI, Query, Request, WebSocket
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.deps import EngineDep, SettingsDep
from api.http_errors import error_response
from api.params import IdPath
from api.rest_auth import AdminDep
from api.settings import Settings
from engine.features.admin import (
    Delivery,
    MessageTooLarge,
    check_posted,
)
from engine.model.errors import ValidationFailed
from engine.protocol import iso
from engine.protocol.close_codes import CloseCode
from engine.protocol.fields import FilterTag, Id
from engine.service import Engine

log = logging.getLogger(__name__)

router = APIRouter(tags=["management"])

NOTIFICATION_CREATED: Final = "notification_created"
SHUTDOWN_REASON = "server shutdown requested by an administrator"
# How long clients get to take `server_shutdown` and close, before the process exits regardless.
SHUTDOWN_GRACE_SECONDS = 5.0
_MAX_TEXT = 4000


class PostedMessage(BaseModel):
    """Any JSON object with a string `type` (the seed's `system_announcement`, `direct_message`, ...);
    its other fields are delivered as posted."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "system_announcement",
                    "title": "Maintenance Notice",
                    "message": "System maintenance in 30 minutes",
                }
            ]
        },
    )
    type: str = Field(min_length=1, max_length=64)


class RoomDelivery(BaseModel):
    room_id: str
    seq: int = Field(description="the broadcast's place in the room's sequence")
    ts: str
    delivered_to: int = Field(description="connections on this node it was queued for")


class UserDelivery(BaseModel):
    user_id: str
    seq: int = Field(description="the message's place in the user's own stream")
    ts: str
    delivered_to: int = Field(description="connections of the user on this node it was queued for")
    notification_id: str = Field(
        description="its id in the user's inbox: `notification_read` with it marks it read"
    )


def _no_nul(value: str) -> str:
    if "\x00" in value:  # PostgreSQL's jsonb cannot hold it
        raise ValueError("must not contain NUL characters")
    return value


_Text = Annotated[str, AfterValidator(_no_nul)]


class NotificationRequest(BaseModel):
    """The seed's body; `category`, `module_name` and `priority` are what subscriptions filter on."""

    model_config = ConfigDict(extra="forbid")
    user_id: Id
    title: _Text = Field(min_length=1, max_length=200)
    message: _Text = Field(max_length=_MAX_TEXT)
    category: FilterTag | None = None
    priority: FilterTag | None = None
    module_name: FilterTag | None = None


class NotificationCreated(BaseModel):
    event_type: Literal["notification_created"]
    notification_id: str
    user_id: str
    seq: int = Field(description="the notification's place in the user's own stream")
    ts: str
    notification: dict[str, Any]


class ConnectionRemoved(BaseModel):
    connection_id: str
    user_id: str
    rooms_left: list[str]
    close_code: int


class ShutdownAccepted(BaseModel):
    status: Literal["shutting_down"]
    connections: int = Field(description="connections open on this node when the shutdown began")
    close_code: int
    grace_seconds: float


@router.post("/ws/rooms/{room_id:id}/broadcast", response_model=RoomDelivery)
async def broadcast_to_room(
    room_id: IdPath, body: PostedMessage, admin: AdminDep, engine: EngineDep, settings: SettingsDep
) -> RoomDelivery:
    """Deliver the body to every member of the room (with `room_id`, `seq`, `ts`), as a room event
    that `join_room since` replays. 404 ROOM_NOT_FOUND for a room that has no events."""
    delivery = await engine.broadcast_to_room(admin, room_id, _posted(body, settings))
    return RoomDelivery(room_id=room_id, **_fields(delivery))


@router.post("/ws/users/{user_id:id}/notify", response_model=UserDelivery)
async def notify_user(
    user_id: IdPath, body: PostedMessage, admin: AdminDep, engine: EngineDep, settings: SettingsDep
) -> UserDelivery:
    """Deliver the body to the user's connections (with the user's `seq`, `ts`); kept in the user's
    stream even when they are offline (`delivered_to` 0)."""
    delivery = await engine.notify_user(admin, user_id, _posted(body, settings))
    return UserDelivery(user_id=user_id, notification_id=str(delivery.notification_id), **_fields(delivery))


@router.post("/ws/broadcast/notification", response_model=NotificationCreated)
async def broadcast_notification(
    body: NotificationRequest,
    admin: AdminDep,
    engine: EngineDep,
    event_type: Annotated[str, Query(description="only `notification_created`")] = NOTIFICATION_CREATED,
) -> NotificationCreated:
    """Create a notification for `user_id`: persisted in their stream, delivered as
    `notification_event` to their connections whose subscription filters match."""
    if event_type != NOTIFICATION_CREATED:
        raise ValidationFailed(f"event_type must be {NOTIFICATION_CREATED!r}", event_type=event_type[:64])
    fields = body.model_dump(exclude={"user_id"})
    record, committed = await engine.record_notification(body.user_id, fields, created_by=admin.user_id)
    return NotificationCreated(
        event_type=NOTIFICATION_CREATED,
        notification_id=str(record["id"]),
        user_id=body.user_id,
        seq=committed.stream_version,
        ts=iso(committed.recorded_at),
        notification=record,
    )


@router.delete("/ws/connections/{connection_id:id}", response_model=ConnectionRemoved)
async def remove_connection(connection_id: IdPath, admin: AdminDep, engine: EngineDep) -> ConnectionRemoved:
    """Close the connection (after a CONNECTION_REMOVED error, with close code 4410) and record its
    departure from each room it had joined (reason "removed"), through whichever node holds it: this
    one asks its peers when it does not. 404 NOT_FOUND if no live node has it open."""
    removal = await engine.remove_connection(connection_id)
    log.info("admin %s removed connection %s", admin.user_id, connection_id)
    return ConnectionRemoved(
        connection_id=removal.connection_id,
        user_id=removal.user_id,
        rooms_left=list(removal.rooms_left),
        close_code=CloseCode.REMOVED,
    )


@router.post("/ws/shutdown", response_model=ShutdownAccepted, status_code=202)
async def shutdown(request: Request, admin: AdminDep, engine: EngineDep) -> ShutdownAccepted:
    """Begin a graceful shutdown: refuse new sockets (and report unhealthy), send every client
    `server_shutdown` and close it with 1012, then end the process. Repeating it changes nothing."""
    connections = engine.connection_count
    if engine.begin_shutdown():
        log.warning("admin %s requested shutdown (%d connections)", admin.user_id, connections)
        app: FastAPI = request.app
        # Kept on the app: a task nobody references may be collected before it has run.
        app.state.shutdown_task = asyncio.create_task(_shut_down(app, engine), name="admin-shutdown")
    return ShutdownAccepted(
        status="shutting_down",
        connections=connections,
        close_code=CloseCode.SERVICE_RESTART,
        grace_seconds=SHUTDOWN_GRACE_SECONDS,
    )


async def refuse_while_draining(websocket: WebSocket, engine: Engine) -> bool:
    """For the WebSocket route: once a shutdown has begun, answer a handshake with HTTP 503 (or a
    close before accept, which servers send as 403) and return True."""
    if not engine.draining:
        return False
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(
            error_response(503, "INTERNAL_ERROR", "the server is shutting down", retryable=True)
        )
    else:
        await websocket.close(CloseCode.SERVICE_RESTART)
    return True


async def _shut_down(app: FastAPI, engine: Engine) -> None:
    try:
        closed = await engine.drain(reason=SHUTDOWN_REASON, grace=SHUTDOWN_GRACE_SECONDS)
        log.warning("shutdown: closed %d connection(s); exiting", closed)
    finally:
        _request_exit(app)


def _request_exit(app: FastAPI) -> None:
    """Make the server stop: the runner's hook when it set one, else SIGTERM to this process."""
    hook = getattr(app.state, "request_exit", None)
    if callable(hook):
        hook()
    else:
        os.kill(os.getpid(), signal.SIGTERM)


def _posted(body: PostedMessage, settings: Settings) -> dict[str, Any]:
    """The body as a plain object, refused when it is larger than a WebSocket frame may be: it is
    delivered to clients as one frame."""
    posted = check_posted(body.model_dump())  # first: what it refuses may not even encode
    size = len(orjson.dumps(posted))
    if size > settings.max_message_bytes:
        limit = settings.max_message_bytes
        raise MessageTooLarge(f"message of {size} bytes exceeds the limit of {limit} bytes", limit=limit)
    return posted


def _fields(delivery: Delivery) -> dict[str, Any]:
    return {"seq": delivery.seq, "ts": iso(delivery.recorded_at), "delivered_to": delivery.delivered_to}


__all__ = ["refuse_while_draining", "router"]
