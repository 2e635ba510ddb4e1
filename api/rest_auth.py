"""Who is calling a REST endpoint: the same JWT as the WebSocket, sent as `Authorization: Bearer`
(docs/protocol.md), verified by the same `TokenVerifier`, and the role each kind of endpoint needs.

Declared through FastAPI's `HTTPBearer` so the OpenAPI schema shows every protected route's security;
`auto_error=False` because its own 403 for a missing header is wrong: no token is a 401.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from api.deps import get_verifier
from engine.model.actors import Actor
from engine.model.errors import AuthenticationFailed, PermissionDenied

_bearer = HTTPBearer(auto_error=False, description="The JWT the WebSocket accepts (`collab token` mints one)")


class Unauthenticated(AuthenticationFailed):
    """No or a bad token on a REST call: 401 with `WWW-Authenticate: Bearer` (api/http_errors.py)."""


async def current_actor(
    conn: HTTPConnection,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The caller named by a valid bearer token; raises Unauthenticated (401)."""
    if credentials is None:
        raise Unauthenticated(_missing_token_text(conn))
    try:
        return (await get_verifier(conn)).verify(credentials.credentials)
    except AuthenticationFailed as exc:
        raise Unauthenticated(str(exc)) from None


def _missing_token_text(conn: HTTPConnection) -> str:
    """Names the one place REST reads a token; `?token=` and the subprotocol are the WebSocket's."""
    text = "missing token: send the header Authorization: Bearer <JWT>"
    if conn.headers.get("authorization"):
        text = "the Authorization header must read Bearer <JWT>"
    if "token" in conn.query_params:
        text += " (?token= is read by the WebSocket endpoint only)"
    return text


ActorDep = Annotated[Actor, Depends(current_actor)]


async def require_admin(actor: ActorDep) -> Actor:
    """The caller, if an admin; else PermissionDenied (403)."""
    if not actor.has_role("admin"):
        raise PermissionDenied("this endpoint needs the admin role")
    return actor


AdminDep = Annotated[Actor, Depends(require_admin)]


def may_read_room(actor: Actor, room_id: str) -> bool:
    """Admins read every room's history; auditors every room their token's `rooms` patterns admit
    (all, without the claim); anyone else only rooms they may join (their role lets them join and
    the patterns admit the room)."""
    if actor.has_role("admin"):
        return True
    return actor.may_enter(room_id) if actor.has_role("auditor") else actor.may_join(room_id)


def require_room_reader(actor: Actor, room_id: str) -> Actor:
    """The caller, if `may_read_room`; else PermissionDenied (403)."""
    if not may_read_room(actor, room_id):
        raise PermissionDenied(f"no right to read room {room_id!r}")
    return actor


async def require_auditor(actor: ActorDep) -> Actor:
    """The caller, if an auditor or admin (the global event stream); else PermissionDenied (403)."""
    if not actor.has_role("auditor", "admin"):
        raise PermissionDenied("this endpoint needs the auditor or admin role")
    return actor


AuditorDep = Annotated[Actor, Depends(require_auditor)]

__all__ = [
    "ActorDep",
    "AdminDep",
    "AuditorDep",
    "Unauthenticated",
    "current_actor",
    "may_read_room",
    "require_admin",
    "require_auditor",
    "require_room_reader",
]
