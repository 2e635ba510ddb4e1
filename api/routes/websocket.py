"""`WS /api/v1/ws`: the handshake (Origin, token) in front of an engine session.

Authentication happens after `accept` on purpose: a refused handshake reaches a browser only as a
bare failure, while an accepted socket can carry the reason (AUTHENTICATION_FAILED) and a close
code (4401) telling the client not to retry with the same token. The Origin check is the exception:
a foreign page gets nothing at all, not even an open socket.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse

from api.auth import extract_token, origin_allowed
from api.deps import EngineDep, SettingsDep, VerifierDep
from api.routes.management import refuse_while_draining
from api.websocket import refuse, serve_socket
from engine.model.errors import AuthenticationFailed
from engine.protocol.error_codes import PERMISSION_DENIED

log = logging.getLogger(__name__)

router = APIRouter(tags=["websocket"])


@router.websocket("/ws")
async def websocket_endpoint(
    websocket: WebSocket, engine: EngineDep, verifier: VerifierDep, settings: SettingsDep
) -> None:
    if await refuse_while_draining(websocket, engine):  # POST /ws/shutdown began (api/routes/management.py)
        return
    if not origin_allowed(websocket, settings.allowed_origins):
        await _refuse_origin(websocket)
        return
    token, subprotocol = extract_token(websocket)
    await websocket.accept(subprotocol=subprotocol)
    try:
        credentials = verifier.credentials(token)
    except AuthenticationFailed as exc:
        await refuse(websocket, exc, engine)
        return
    await serve_socket(websocket, engine, credentials, verifier.credentials)


async def _refuse_origin(websocket: WebSocket) -> None:
    """Answer the handshake with HTTP 403 and a JSON reason when the server supports denial
    responses (uvicorn does), else with a close before accept, which servers also send as a 403."""
    origin = websocket.headers.get("origin")
    log.info("refused WebSocket handshake from origin %r", origin)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        body = {"error": f"origin {origin!r} is not allowed", "code": PERMISSION_DENIED}
        await websocket.send_denial_response(JSONResponse(body, status_code=403))
    else:
        await websocket.close()  # a close before accept: the server answers the handshake with 403
