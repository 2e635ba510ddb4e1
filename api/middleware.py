"""HTTP middleware: request ids and access logs, the seed's secure headers, CORS, routing on the path's
segments as sent (api/params.py).

Plain ASGI middleware rather than Starlette's `BaseHTTPMiddleware`: it runs the route in the same task
(so the request id's context variable reaches every log line the route writes) and never buffers a
body. WebSocket scopes pass through untouched: their handshake is checked in api/routes/websocket.py
and their log lines carry the connection id (api/websocket.py).

Outermost first: request id -> secure headers -> CORS -> segmented path -> the routes, so a CORS
preflight answer carries the request id and the secure headers too. (A crash that escapes every
handler is answered by Starlette's outermost error middleware, outside these; such a response carries
no body worth framing.)
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Final

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.logging_setup import request_id_var
from api.params import SegmentedPaths
from api.settings import Settings

access_log = logging.getLogger("api.access")

REQUEST_ID_HEADER: Final = "X-Request-ID"
# A caller's id is kept only if it is short and plain: it is echoed in a header and written to logs.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

API_CSP: Final = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The app, the console and the landing page (api/routes/pages.py): scripts and styles only from this
# server, no inline code, data: images (the favicon), and fetch/WebSocket to this origin ('self'
# covers ws: and wss: on the same host in CSP Level 3).
PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def docs_csp(script_hashes: Iterable[str]) -> str:
    """Swagger UI and ReDoc, served from this server (api/routes/pages.py): their bundles, the inline
    start-up script FastAPI writes (allowed by its hash, nothing else inline), the inline styles both
    set from script, data: images, /openapi.json, and ReDoc's search worker, which it starts from a
    blob: URL."""
    hashes = "".join(f" 'sha256-{h}'" for h in script_hashes)
    return (
        f"default-src 'none'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; worker-src blob:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


HSTS: Final = "max-age=63072000; includeSubDomains"
SECURE_HEADERS: Final[Mapping[str, str]] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class RequestContextMiddleware:
    """Give each HTTP request an id (the caller's `X-Request-ID` when plain, else a new one), echo it
    in the response, bind it for log lines, and log one access line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = given if _VALID_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before starting a response

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id_var.reset(token)


class SecureHeadersMiddleware:
    """The seed's "Secure Headers" on every HTTP response; a header the route set itself is kept, which
    is how the HTML pages (api/routes/pages.py) carry the policy that fits what they load."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = dict(SECURE_HEADERS)
        added["Content-Security-Policy"] = API_CSP
        # Only over TLS (RFC 6797: a browser ignores it over plain HTTP anyway). Behind a proxy, uvicorn
        # sets the scheme from X-Forwarded-Proto when the proxy is trusted (FORWARDED_ALLOW_IPS).
        if scope.get("scheme") == "https":
            added["Strict-Transport-Security"] = HSTS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in added.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_middleware(app: FastAPI, settings: Settings) -> None:
    """Routing on the path as sent (ids holding `/`: api/params.py), CORS from ALLOWED_ORIGINS (none
    when empty), the secure headers, request ids: innermost first, since Starlette wraps each added
    middleware around the ones before it."""
    app.add_middleware(SegmentedPaths)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After", "WWW-Authenticate"],
            # Bearer tokens, never cookies: no credentialed requests to allow.
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(SecureHeadersMiddleware)
    app.add_middleware(RequestContextMiddleware)


__all__ = [
    "API_CSP",
    "PAGE_CSP",
    "REQUEST_ID_HEADER",
    "RequestContextMiddleware",
    "SecureHeadersMiddleware",
    "docs_csp",
    "install_middleware",
]
