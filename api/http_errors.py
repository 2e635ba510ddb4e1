"""Every REST error as JSON `{"error": TEXT, "code": CODE}`, whatever raised it: an engine error
(status from engine/protocol/error_codes.py's table), a bad token, a request that failed validation, an
unknown route, or FastAPI's own HTTPException.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import AuthenticationFailed
from engine.model.errors import EngineError
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
    return error_response(http_status(exc.code), exc.code, exc.message, headers=headers, **details)


async def _authentication_failed(_: Request, exc: Exception) -> JSONResponse:
    return error_response(
        401, AUTHENTICATION_FAILED, str(exc), headers={"WWW-Authenticate": 'Bearer realm="collab-engine"'}
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    return error_response(422, VALIDATION_ERROR, "request failed validation", details=details)


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


__all__ = ["error_body", "error_response", "install_error_handlers"]
