"""Decisions about what lives in a user's own stream: their notifications and their uploads."""

from __future__ import annotations

from engine.model.actors import Actor
from engine.model.errors import NotFound, ValidationFailed
from engine.projections.notifications import Inbox, Notification
from engine.projections.uploads import Upload


def require_notification(inbox: Inbox, notification_id: str) -> Notification:
    """NotFound unless the user has that notification (marking it read again is allowed)."""
    found = inbox.notifications.get(notification_id)
    if found is None:
        raise NotFound(f"no notification {notification_id!r}", notification_id=notification_id)
    return found


def check_upload_start(existing: Upload | None, actor: Actor, file_id: str) -> None:
    """ValidationFailed if `file_id` is taken: file ids name stored files (GET /files/{file_id}), so a
    second upload under one id would replace what others may be reading. The owner's failed upload is
    not taken: its id was released to its owner, who may start it again."""
    if existing is not None and not (existing.failed and existing.user_id == actor.user_id):
        raise ValidationFailed(f"file_id {file_id!r} is already in use", file_id=file_id)


def require_own_upload(upload: Upload | None, actor: Actor, file_id: str) -> Upload:
    """The upload a progress report belongs to. NotFound for an unknown file, and for another user's
    (not PermissionDenied: that would confirm the id exists); ValidationFailed once it is complete or
    has failed (a failed one must be started again first)."""
    if upload is None or upload.user_id != actor.user_id:
        raise NotFound(f"no upload {file_id!r}", file_id=file_id)
    if upload.complete:
        raise ValidationFailed(f"upload {file_id!r} is already complete", file_id=file_id)
    if upload.failed:
        raise ValidationFailed(f"upload {file_id!r} has failed; start it again", file_id=file_id)
    return upload


__all__ = ["check_upload_start", "require_notification", "require_own_upload"]
