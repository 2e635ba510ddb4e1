"""Every REST error as JSON `{"error": TEXT, "code": CODE}`, whatever raised it: an engine error
(status from engine/protocol/error_codes.py's table), a bad token, a request that failed validation, an
unknown route, or FastAPI's own HTTPException.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.model.errors import AuthenticationFailed, EngineError
from engine.protocol.error_codes import AUTHENTICATION_FAILED, CODE_FOR_STATUS, VALIDATION_ERROR, http_status

log = logging.getLogger(__name__)


def error_body(code: str, text: str, **details: Any) -> dict[str, Any]:
    return {"error": text, "code": code, **details}


def error_response(
    status: int, code: str, text: str, *, headers: dict[str, str] | None = None, **details: Any
) -> JSONResponse:
    return JSONResponse(jsonable_encoder(error_body(code, text, **details)), status, headers=headers)


async def _engine_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngineError)
    details = dict(exc.details)
    headers = None
    if exc.retryable:
        details["retryable"] = True
        headers = {"Retry-After": "1"}
    elif "retry_after" in details:
        headers = {"Retry-After": str(max(1, int(float(details["retry_after"]) + 0.999)))}
    status = http_status(exc.code)
    if status == HTTPStatus.REQUEST_TIMEOUT:  # the rest of a stalled body is not waited for (RFC 9110)
        headers = {**(headers or {}), "Connection": "close"}
    return error_response(status, exc.code, exc.message, headers=headers, **details)


async def _authentication_failed(_: Request, exc: Exception) -> JSONResponse:
    return error_response(
        401, AUTHENTICATION_FAILED, str(exc), headers={"WWW-Authenticate": 'Bearer realm="collab-engine"'}
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    details = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in errors
    ]
    text = "; ".join(explain_validation(err) for err in errors) or "request failed validation"
    return error_response(422, VALIDATION_ERROR, text, details=details)


_PLACES = {"query": "query parameter", "path": "path parameter", "header": "header", "cookie": "cookie"}
_TIME_ERRORS = frozenset(
    {"datetime_parsing", "datetime_from_date_parsing", "datetime_type", "timezone_aware"}
)
# "2026-11-26T10:00:00 01:00": the `+` of an offset arrived as a space, as `+` means in a query string.
_PLUS_AS_SPACE = re.compile(r"\d \d{2}(:?\d{2})?$")
_MAX_ECHO = 64


def explain_validation(err: Mapping[str, Any]) -> str:
    """One refused parameter in words: which one, what was expected, what came (short values only),
    and for times how to write one, including the `+` that a URL turns into a space."""
    loc = [str(part) for part in err.get("loc", ())]
    if loc and loc[0] in _PLACES and len(loc) > 1:
        where = f"{_PLACES[loc[0]]} {'.'.join(loc[1:])!r}"
    elif loc and loc[0] == "body":
        where = f"body field {'.'.join(loc[1:])!r}" if len(loc) > 1 else "the request body"
    else:
        where = ".".join(loc) or "the request"
    msg = str(err.get("msg", "invalid"))
    text = f"{where}: {msg[:1].lower()}{msg[1:]}"
    value = err.get("input")
    if isinstance(value, str | int | float) and not isinstance(value, bool) and len(str(value)) <= _MAX_ECHO:
        text += f", got {value!r}"
    if err.get("type") in _TIME_ERRORS:
        text += "; expected an ISO-8601 time with a zone, e.g. 2026-11-26T10:00:00Z"
        if isinstance(value, str) and _PLUS_AS_SPACE.search(value):
            text += (
                "; the '+' of its offset arrived as a space, as '+' means in a URL: "
                "URL-encode it as %2B (2026-11-26T10:00:00%2B01:00) or use Z"
            )
    return text


async def _http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = CODE_FOR_STATUS.get(exc.status_code, f"HTTP_{exc.status_code}")
    text = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, text, headers=headers)


# Text PostgreSQL cannot store (a NUL character): the input is bad, whichever route let it through.
_BAD_TEXT_SQLSTATES = frozenset({"22021", "22P05"})


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if getattr(exc.orig, "sqlstate", None) in _BAD_TEXT_SQLSTATES:
        return error_response(422, VALIDATION_ERROR, "text with characters that cannot be stored (NUL)")
    raise exc


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EngineError, _engine_error)
    app.add_exception_handler(AuthenticationFailed, _authentication_failed)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(DBAPIError, _database_error)


__all__ = ["error_body", "error_response", "explain_validation", "install_error_handlers"]
