"""What every HTTP response carries, whatever its status: the seed's secure headers, a request id, CORS
from ALLOWED_ORIGINS; and the JSON log lines that name the request or connection they belong to."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text

from api.logging_setup import ContextFilter, JsonFormatter
from api.middleware import API_CSP, PAGE_CSP
from tests.api.conftest import ALLOWED_ORIGIN, Server, make_settings, serve
from tests.api.live_helpers import greet

SECURE = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
async def no_cors(database_url: str) -> AsyncIterator[Server]:
    """A server with ALLOWED_ORIGINS empty, plus a probe route with an integer parameter: none of the
    app's own routes can answer 422 before authentication, and the probe shows that FastAPI's
    validation errors pass through the same middleware as everything else."""
    async with serve(make_settings(database_url)) as running:

        async def probe(count: int) -> dict[str, int]:
            return {"count": count}

        running.app.add_api_route("/probe", probe, methods=["GET"])
        yield running


async def call(server: Server, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        return await http.request(method, path, **kwargs)


def assert_secure(response: httpx.Response, csp: str = API_CSP) -> None:
    for name, value in SECURE.items():
        assert response.headers.get(name) == value, (name, response.status_code)
    assert response.headers["content-security-policy"] == csp
    assert "strict-transport-security" not in response.headers  # plain HTTP
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/ws/health", 200),
        ("/metrics", 200),
        ("/api/v1/no/such/route", 404),
        ("/probe?count=many", 422),
        ("/api/v1/ws/stats", 401),
    ],
)
async def test_secure_headers_on_every_status(no_cors: Server, path: str, status: int) -> None:
    response = await call(no_cors, "GET", path)
    assert response.status_code == status
    assert_secure(response)
    if status >= 400:
        assert set(response.json()) >= {"error", "code"}


async def test_hsts_only_when_the_request_came_over_tls(no_cors: Server) -> None:
    """uvicorn trusts X-Forwarded-Proto from loopback (FORWARDED_ALLOW_IPS), as from a local proxy."""
    plain = await call(no_cors, "GET", "/api/v1/ws/health")
    assert "strict-transport-security" not in plain.headers
    proxied = await call(no_cors, "GET", "/api/v1/ws/health", headers={"X-Forwarded-Proto": "https"})
    assert proxied.headers["strict-transport-security"].startswith("max-age=")


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_docs_pages_load_everything_from_this_server(no_cors: Server, path: str) -> None:
    """Swagger UI and ReDoc come from this server (no CDN): the policy allows scripts and styles from
    'self' only, and each inline script by its hash, nothing else inline."""
    docs = await call(no_cors, "GET", path)
    assert docs.status_code == 200
    policy = dict(part.strip().split(" ", 1) for part in docs.headers["content-security-policy"].split(";"))
    assert_secure(docs, csp=docs.headers["content-security-policy"])
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', docs.text)
    styles = re.findall(r'<link[^>]+href="([^"]+\.css)"', docs.text)
    for url in scripts + styles:
        assert not urlsplit(url).netloc, url  # same origin
        assert (await call(no_cors, "GET", url)).status_code == 200, url
    sources = policy["script-src"].split()
    assert "'unsafe-inline'" not in sources and "https:" not in " ".join(sources)
    inline = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    hashes = {
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in inline
    }
    assert hashes == {s for s in sources if s.startswith("'sha256-")}
    assert "'self'" in policy["connect-src"]  # they fetch /openapi.json
    schema = await call(no_cors, "GET", "/openapi.json")
    assert schema.status_code == 200
    assert_secure(schema)  # the API's strict policy everywhere but the pages


@pytest.mark.parametrize("path", ["/", "/app", "/console"])
async def test_pages_get_a_policy_without_inline_code(no_cors: Server, path: str) -> None:
    page = await call(no_cors, "GET", path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert_secure(page, csp=PAGE_CSP)
    assert "<script>" not in page.text and "style=" not in page.text
    for url in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
        if url.startswith(("/app", "/console", "/docs")):
            continue
        assert (await call(no_cors, "GET", url)).status_code == 200, url


async def test_request_id_is_echoed_when_plain_and_replaced_otherwise(no_cors: Server) -> None:
    given = await call(no_cors, "GET", "/api/v1/ws/health", headers={"X-Request-ID": "trace-42.a:b"})
    assert given.headers["x-request-id"] == "trace-42.a:b"
    for bad in ("has spaces", "x" * 129, "semi;colon"):
        replaced = await call(no_cors, "GET", "/api/v1/ws/health", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"]), bad
    first = await call(no_cors, "GET", "/api/v1/ws/health")
    second = await call(no_cors, "GET", "/api/v1/ws/health")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_cors_preflight_allowed_for_a_listed_origin(server: Server) -> None:
    response = await call(
        server,
        "OPTIONS",
        "/api/v1/ws/stats",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, x-request-id",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "GET" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "x-request-id" in allowed
    assert "access-control-allow-credentials" not in response.headers
    assert_secure(response)

    actual = await call(server, "GET", "/api/v1/ws/health", headers={"Origin": ALLOWED_ORIGIN})
    assert actual.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-request-id" in actual.headers["access-control-expose-headers"].lower()


async def test_cors_preflight_refused_for_another_origin(server: Server) -> None:
    response = await call(
        server,
        "OPTIONS",
        "/api/v1/ws/stats",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    assert_secure(response)
    actual = await call(server, "GET", "/api/v1/ws/health", headers={"Origin": "https://evil.example"})
    assert actual.status_code == 200
    assert "access-control-allow-origin" not in actual.headers


async def test_no_cors_headers_when_no_origin_is_allowed(no_cors: Server) -> None:
    preflight = await call(
        no_cors,
        "OPTIONS",
        "/api/v1/ws/stats",
        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 405
    assert not [h for h in preflight.headers if h.startswith("access-control-")]
    actual = await call(no_cors, "GET", "/api/v1/ws/health", headers={"Origin": ALLOWED_ORIGIN})
    assert not [h for h in actual.headers if h.startswith("access-control-")]


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Capture every log record (INFO and up) as the JSON lines `collab serve` writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_logs_carry_the_request_id_and_the_connection_id(
    no_cors: Server, json_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    await call(no_cors, "GET", "/api/v1/no/such/route", headers={"X-Request-ID": "req-under-test"})
    async with no_cors.connect(no_cors.token("logger-user")) as ws:
        connection_id = await greet(ws)

    lines = json_lines()
    (access,) = [line for line in lines if line.get("request_id") == "req-under-test"]
    assert access["logger"] == "api.access"
    assert (access["method"], access["path"], access["status"]) == ("GET", "/api/v1/no/such/route", 404)
    assert access["duration_ms"] >= 0
    assert access["level"] == "INFO" and access["ts"].endswith("+00:00")

    opened = [line for line in lines if line["message"] == "connection opened"]
    assert [line["connection_id"] for line in opened] == [connection_id]
    assert opened[0]["user_id"] == "logger-user"
    assert "request_id" not in opened[0]


async def test_text_postgresql_cannot_store_is_a_422_whichever_route_let_it_through(no_cors: Server) -> None:
    """A NUL character that reaches the database (a route without its own guard) is bad input: 422
    with the JSON error shape, never a 500."""

    async def echo_through_the_database(value: str) -> dict[str, str]:
        async with no_cors.engine.store.db_engine.connect() as conn:
            stored = (await conn.execute(text("SELECT CAST(:v AS text)"), {"v": value})).scalar_one()
        return {"value": stored}

    no_cors.app.add_api_route("/probe-text", echo_through_the_database, methods=["GET"])
    assert (await call(no_cors, "GET", "/probe-text", params={"value": "fine"})).json() == {"value": "fine"}
    refused = await call(no_cors, "GET", "/probe-text", params={"value": "a\x00b"})
    assert (refused.status_code, refused.json()["code"]) == (422, "VALIDATION_ERROR")
