"""The caller's notifications: `GET /api/v1/notifications` (newest first, paginated) and
`POST /api/v1/notifications/{notification_id}/read` (the WebSocket `notification_read`, so the
caller's sockets get the same `notification_event`). Only ever the caller's own: another user's
notification id is 404, like one that never existed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import EngineDep
from api.params import IdPath, count_query
from api.rest_auth import ActorDep
from engine.features.notifications import page
from engine.projections.notifications import Notification
from engine.protocol import iso

router = APIRouter(prefix="/notifications", tags=["notifications"])


class NotificationOut(BaseModel):
    """The seed's notification object, plus when it was created and read."""

    id: str
    title: str | None
    message: str | None
    category: str | None
    priority: str | None
    module_name: str | None
    created_at: str = Field(description="ISO-8601 UTC time of the NotificationCreated event")
    read: bool
    read_at: str | None = Field(description="time of the first NotificationRead, or null")

    @classmethod
    def of(cls, notification: Notification) -> NotificationOut:
        return cls(
            **notification.as_dict(),
            created_at=iso(notification.created_at),
            read=notification.read,
            read_at=iso(notification.read_at) if notification.read_at is not None else None,
        )


class NotificationList(BaseModel):
    notifications: list[NotificationOut] = Field(description="newest first")
    next_cursor: int | None = Field(description="pass as `cursor` for the next page; null on the last page")
    unread_count: int = Field(description="unread notifications of the caller in all, not only this page")


@router.get("", response_model=NotificationList)
async def list_notifications(
    actor: ActorDep,
    engine: EngineDep,
    unread: Annotated[bool, Query(description="only notifications not yet read")] = False,
    limit: Annotated[int, Query(ge=1, le=500, description="notifications per page")] = 50,
    cursor: Annotated[int | None, count_query("`next_cursor` of the previous page", low=1)] = None,
) -> NotificationList:
    """The caller's notifications, newest first."""
    found = page(await engine.inbox(actor.user_id), unread_only=unread, limit=limit, before=cursor)
    return NotificationList(
        notifications=[NotificationOut.of(n) for _, n in found.items],
        next_cursor=found.next_cursor,
        unread_count=found.unread_count,
    )


@router.post(
    "/{notification_id:id}/read",
    response_model=NotificationOut,
    responses={404: {"description": "the caller has no notification with this id"}},
)
async def read_notification(
    actor: ActorDep,
    engine: EngineDep,
    notification_id: IdPath,
) -> NotificationOut:
    """Mark one of the caller's notifications read (again is allowed: the first time is kept)."""
    return NotificationOut.of(await engine.mark_notification_read(actor, notification_id))


__all__ = ["router"]
