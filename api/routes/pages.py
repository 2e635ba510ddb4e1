"""What a person opens in a browser: the landing page, the sheet app (`/app`), the admin and auditor
console (`/console`), the JavaScript client (`/client/collab-client.js`), and the API docs (`/docs`,
`/redoc`) with Swagger UI and ReDoc served from this server, so they render with no internet access.

Pages and their scripts are plain files (api/static/, clients/collab-client/): no build step, no
Node at run time. Each HTML response carries the Content-Security-Policy that allows exactly what it
loads (api/middleware.py); everything else keeps the API's `default-src 'none'`.

Pages hold no secrets and need no token to load: a page reads the token from its URL fragment, which
browsers never send to the server, and uses it for the WebSocket and REST calls it makes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Awaitable, Callable
from functools import cache
from importlib.resources import files
from os import PathLike
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from api.http_errors import error_response
from api.middleware import PAGE_CSP, docs_csp

STATIC_DIR: Final = Path(__file__).resolve().parents[1] / "static"
# The npm package folder is the one copy of the client; the server serves it from the checkout.
CLIENT_DIR: Final = Path(__file__).resolve().parents[2] / "clients" / "collab-client"
CLIENT_FILES: Final = {"collab-client.js": "text/javascript", "collab-client.d.ts": "text/plain"}
# Swagger UI and ReDoc bundles from the fastapi-offline package (its assets only, not its app class).
DOCS_ASSETS: Final = Path(str(files("fastapi_offline") / "static"))
DOCS_ASSETS_URL: Final = "/static/docs"
PAGES: Final = {"/": "index.html", "/app": "app/index.html", "/console": "console/index.html"}
# Revalidate on every load (ETag/Last-Modified make that cheap): a new release reaches open tabs at once.
NO_CACHE: Final = {"Cache-Control": "no-cache"}

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


class _Revalidated(StaticFiles):
    """StaticFiles whose answers browsers check again before reuse."""

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(NO_CACHE)
        return response


def _inline_hashes(html: str) -> tuple[str, ...]:
    """The CSP hashes of a page's inline scripts, so the policy allows those and nothing else inline."""
    return tuple(
        base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        for body in _INLINE_SCRIPT.findall(html)
    )


@cache
def _with_policy(html: str) -> tuple[bytes, str]:
    return html.encode(), docs_csp(_inline_hashes(html))


def _docs_response(page: HTMLResponse) -> HTMLResponse:
    body, policy = _with_policy(bytes(page.body).decode())
    return HTMLResponse(body, headers={"Content-Security-Policy": policy, **NO_CACHE})


def install_pages(app: FastAPI) -> None:
    """Mount the pages, the client and the offline docs on `app` (whose own docs must be off)."""
    for path, name in PAGES.items():
        app.add_api_route(path, _page(STATIC_DIR / name), methods=["GET"], include_in_schema=False)
    app.mount("/static/docs", _Revalidated(directory=DOCS_ASSETS), name="docs-assets")
    app.mount("/static", _Revalidated(directory=STATIC_DIR), name="static")

    @app.get("/client/{name}", include_in_schema=False)
    async def client_file(name: str) -> Response:
        path = CLIENT_DIR / name
        if name not in CLIENT_FILES or not path.is_file():
            return error_response(404, "NOT_FOUND", "no such client file")
        return FileResponse(path, media_type=CLIENT_FILES[name], headers=NO_CACHE)

    title = app.title
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _docs_response(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{title} - Swagger UI",
                oauth2_redirect_url=oauth2_redirect,
                swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
            )
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _docs_response(get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _docs_response(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{title} - ReDoc",
                redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )


def _page(path: Path) -> Callable[[], Awaitable[FileResponse]]:
    async def page() -> FileResponse:
        headers = {"Content-Security-Policy": PAGE_CSP, **NO_CACHE}
        return FileResponse(path, media_type="text/html", headers=headers)

    page.__name__ = f"page_{path.parent.name or 'index'}"
    return page


__all__ = ["CLIENT_DIR", "STATIC_DIR", "install_pages"]
