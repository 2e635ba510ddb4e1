"""api/logging_setup.py: one JSON object per line with the context's ids, the text form, the config."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.logging_setup import (
    ContextFilter,
    JsonFormatter,
    RedactFilter,
    TextFormatter,
    connection_id_var,
    install_redaction,
    logging_config,
    redact,
    request_id_var,
    resolve_log_format,
)

ROOT = Path(__file__).resolve().parents[2]

Captured = tuple[logging.Logger, io.StringIO]


@pytest.fixture
def captured() -> Iterator[Captured]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.unit.logging_setup")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_the_basics_and_no_ids_outside_a_context(captured: Captured) -> None:
    logger, stream = captured
    logger.info("hello %s", "world")
    (line,) = lines(stream)
    assert line["message"] == "hello world"
    assert (line["level"], line["logger"]) == ("INFO", "tests.unit.logging_setup")
    assert str(line["ts"]).endswith("+00:00")
    assert "request_id" not in line and "connection_id" not in line


def test_json_line_carries_the_ids_of_its_context_and_extra_fields(captured: Captured) -> None:
    logger, stream = captured
    request = request_id_var.set("req-1")
    connection = connection_id_var.set("ws_abc")
    try:
        logger.warning("inside", extra={"status": 404, "path": "/x", "odd": object()})
    finally:
        request_id_var.reset(request)
        connection_id_var.reset(connection)
    logger.info("outside")
    inside, outside = lines(stream)
    assert (inside["request_id"], inside["connection_id"]) == ("req-1", "ws_abc")
    assert (inside["status"], inside["path"]) == (404, "/x")
    assert str(inside["odd"]).startswith("<object object")  # unencodable extras become text
    assert "request_id" not in outside


def test_json_line_carries_the_traceback(captured: Captured) -> None:
    logger, stream = captured
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    (line,) = lines(stream)
    assert "ValueError: boom" in str(line["exc_info"])
    assert "\n" not in stream.getvalue().rstrip("\n")  # still one line


def test_text_form_names_the_context() -> None:
    record = logging.LogRecord("api.x", logging.INFO, __file__, 1, "done", None, None)
    ContextFilter().filter(record)
    assert TextFormatter().format(record) == "INFO api.x: done"
    token = request_id_var.set("r-9")
    try:
        record = logging.LogRecord("api.x", logging.INFO, __file__, 1, "done", None, None)
        ContextFilter().filter(record)
    finally:
        request_id_var.reset(token)
    assert TextFormatter().format(record) == "INFO api.x [r-9]: done"


@pytest.mark.parametrize(("log_format", "formatter"), [("json", JsonFormatter), ("text", TextFormatter)])
def test_config_routes_everything_through_one_handler(log_format: str, formatter: type) -> None:
    config = logging_config(log_format, "debug")  # type: ignore[arg-type]
    assert config["formatters"]["main"]["()"] == f"{formatter.__module__}.{formatter.__name__}"
    assert config["root"] == {"handlers": ["main"], "level": "DEBUG"}
    assert config["loggers"]["uvicorn.access"]["propagate"] is False  # the middleware logs requests
    assert config["handlers"]["main"]["filters"] == ["context", "redact"]
    # The factory it names builds (dictConfig itself would reconfigure the test process's logging).
    built = logging.config.DictConfigurator(config).configure_formatter(config["formatters"]["main"])
    assert isinstance(built, formatter)


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize(
    ("log_format", "tty", "resolved"),
    [("auto", True, "text"), ("auto", False, "json"), ("json", True, "json"), ("text", False, "text")],
)
def test_auto_is_text_at_a_terminal_and_json_elsewhere(log_format: str, tty: bool, resolved: str) -> None:
    assert resolve_log_format(log_format, _Stream(tty)) == resolved  # type: ignore[arg-type]


def test_auto_logs_text_when_stderr_is_a_real_terminal() -> None:
    """The process's own stderr, as `collab serve` sees it: a pseudo-terminal gets text, not JSON."""
    program = (
        "import logging; from api.logging_setup import configure_logging; "
        "configure_logging('auto'); logging.getLogger('api.demo').warning('hello')"
    )
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-c", program], stderr=follower, cwd=ROOT, timeout=30, check=True
        )
        assert done.returncode == 0
        written = os.read(leader, 4096).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert written.strip() == "WARNING api.demo: hello"


JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcwMDAwMDAwMH0"
    ".c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/api/v1/ws?token=" + JWT, "/api/v1/ws?token=[redacted]"),
        ("/x?room=r1&token=abc.def&since=3", "/x?room=r1&token=[redacted]&since=3"),
        ("/x?access_token=abc&id_token=def", "/x?access_token=[redacted]&id_token=[redacted]"),
        ('"WebSocket /api/v1/ws?TOKEN=abc" 403', '"WebSocket /api/v1/ws?TOKEN=[redacted]" 403'),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [redacted]"),
        ("headers={'authorization': 'bearer xyz'}", "headers={'authorization': 'bearer [redacted]'}"),
        (f"Sec-WebSocket-Protocol: bearer, {JWT}", "Sec-WebSocket-Protocol: bearer, [redacted]"),
        (f"invalid token {JWT}!", "invalid token [redacted]!"),
    ],
)
def test_redact_replaces_every_form_of_token(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "missing token: send ?token=, Authorization: Bearer, or subprotocol bearer",
        "GET /api/v1/ws/health 200",
        "max_tokens=5 tokens=3",
        "eyJ alone, or eyJabc.def without a payload",
    ],
)
def test_redact_leaves_other_text_alone(text: str) -> None:
    assert redact(text) == text


def test_filter_redacts_message_arguments_extras_and_traceback(captured: Captured) -> None:
    logger, stream = captured
    logger.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", f"/api/v1/ws?token={JWT}")
    logger.warning("split token=%s", JWT[:20], extra={"url": f"/x?access_token={JWT}"})  # split
    try:
        raise ValueError(f"could not fetch http://h/x?token={JWT}")
    except ValueError:
        logger.exception("failed for %s", "Bearer abc")
    output = stream.getvalue()
    assert "eyJ" not in output and "abc" not in output
    accepted, split, failed = lines(stream)
    assert accepted["message"] == '127.0.0.1:5 - "WebSocket /api/v1/ws?token=[redacted]" [accepted]'
    assert split["message"] == "split token=[redacted]"
    assert split["url"] == "/x?access_token=[redacted]"
    assert failed["message"] == "failed for Bearer [redacted]"
    assert "ValueError: could not fetch http://h/x?token=[redacted]" in str(failed["exc_info"])


def test_filter_keeps_arguments_for_formatters_that_read_them() -> None:
    """uvicorn's access formatter unpacks the record's five arguments: they stay five, redacted."""
    from uvicorn.logging import AccessFormatter

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/api/v1/ws/health?token={JWT}", "1.1", 200), None,
    )  # fmt: skip
    RedactFilter().filter(record)
    formatted = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert formatted == '127.0.0.1:5 - "GET /api/v1/ws/health?token=[redacted] HTTP/1.1" 200 OK'


def test_install_redaction_filters_each_handler_once() -> None:
    logger = logging.getLogger("tests.unit.logging_setup.install")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    try:
        install_redaction(("tests.unit.logging_setup.install",))
        install_redaction(("tests.unit.logging_setup.install",))
        assert [type(f) for f in handler.filters] == [RedactFilter]
    finally:
        logger.removeHandler(handler)
