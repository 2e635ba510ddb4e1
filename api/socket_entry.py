"""The FastAPI app with its WebSocket endpoint entered directly, past the HTTP-only layers.

A handshake went through a dozen ASGI layers that do nothing for a WebSocket (error pages, request
ids, secure headers, CORS, body limits, exception handlers, routing) and then FastAPI's dependency
solving, for three values the app already holds. Each of those calls also stayed on the stack, its
coroutine frame alive, for as long as the socket was open. `CollabApp` hands a WebSocket scope whose
path is the endpoint's straight to it, with the engine, verifier and settings from `app.state`;
every other scope, HTTP and unknown WebSocket paths alike, takes the normal way. The route stays
registered, so the app still lists it and `url_path_for` still finds it.

Nothing is skipped that acts on a WebSocket: the middleware in api/middleware.py passes WebSocket
scopes through, Starlette's error middleware re-raises for them, and the endpoint raises no
`WebSocketException` for the exception middleware to turn into a close.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from api.routes.websocket import websocket_endpoint


class CollabApp(FastAPI):
    socket_path: str | None = None  # the endpoint's path, found once the routes are in

    def enter_sockets_directly(self) -> None:
        """Call after the routes are included (raises NoMatchFound if the endpoint has no route)."""
        self.socket_path = str(self.url_path_for(websocket_endpoint.__name__))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self._route_path(scope) == self.socket_path:
            scope["app"] = self
            state = self.state
            await websocket_endpoint(
                WebSocket(scope, receive, send), state.engine, state.verifier, state.settings
            )
            return
        await super().__call__(scope, receive, send)

    @staticmethod
    def _route_path(scope: Scope) -> str:
        """The path as routing matches it: without the root path a proxy mounted the app under."""
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        return path[len(root) :] if root and path.startswith(root) else path
