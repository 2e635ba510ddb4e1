"""uvicorn's httptools protocol with the request head bounded in size and in time.

uvicorn reads a request's head (request line and headers) with no limit: httptools keeps every byte
of a header that never ends, and a connection that sends a partial head, or nothing at all, is held
for as long as the client likes. Every WebSocket handshake is read here too, before uvicorn hands
the connection to the WebSocket protocol, so one bound covers plain requests and upgrades alike:

- a head over `max_head_bytes` (MAX_HEADER_BYTES) is answered 431 and the connection closed, without
  buffering more than that (plus one read) of it;
- a head not complete within `head_timeout` (HEADER_TIMEOUT_SECONDS) of its first byte, or of the
  connection's opening, is answered 408 and the connection closed (a connection that sent nothing at
  all is closed without an answer, as browsers open spare connections they may never use).

After such an answer the connection is half-closed and what the client still sends is read and
dropped for a moment (a "lingering close"), so the answer is not lost to a reset while the client is
still writing. Between requests on a keep-alive connection uvicorn's own keep-alive timeout applies.

`uvicorn_options` (api/server.py) passes `bounded_http_protocol(settings)` as uvicorn's `http`.
"""

from __future__ import annotations

import asyncio
import functools
import http
from typing import Any, Final

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from api.settings import Settings

# How long a refused connection keeps reading (and dropping) what the client still sends before it
# closes: long enough for a client that is mid-write to finish and read the answer.
LINGER_SECONDS: Final = 2.0


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that answers 431 to a head over `max_head_bytes` and 408 to one that is not
    complete within `head_timeout` seconds."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        max_head_bytes: int,
        head_timeout: float,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_head_bytes = max_head_bytes
        self.head_timeout = head_timeout
        # True while a head is awaited or being read (not during a body or the app's response).
        self._in_head = True
        self._head_bytes = 0  # bytes of the head in progress, counted per read while it is unfinished
        self._head_begun = False  # a byte of the awaited head has arrived
        self._head_done_in_read = False  # a head was completed inside the read being parsed
        self._refused = False  # answered 431 or 408: what arrives now is dropped
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

    # The connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a 431 or 408: read and drop
        counting = self._in_head  # this read starts inside a head (or where one is awaited)
        self._head_done_in_read = False
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse_too_large()
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        if self._in_head and counting and not self._head_done_in_read:
            # Still unfinished, and all of this read is part of it: the parser holds it. (A head that
            # began inside this read, after another request, is counted from the next read on, and
            # measured exactly once complete.)
            self._head_begun = self._head_begun or bool(data)
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse_too_large()

    def shutdown(self) -> None:
        self._cancel_timers()
        super().shutdown()

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_begun = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_done_in_read = True
        self._head_bytes = 0
        self._cancel_head_timer()
        if self._parsed_head_size() > self.max_head_bytes:
            raise _HeadTooLarge
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next request's head, if one comes before keep-alive ends
        self._head_begun = False

    def _parsed_head_size(self) -> int:
        """The head's size as sent: request line, each `name: value` line, the blank line."""
        line = len(self.parser.get_method()) + 1 + len(self.url) + len(" HTTP/1.1\r\n")
        return line + sum(len(name) + len(value) + 4 for name, value in self.headers) + 2

    # Refusing

    def _refuse_too_large(self) -> None:
        self.logger.info("request head over %d bytes: answered 431 and closed", self.max_head_bytes)
        self._refuse(
            http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            f"Request head larger than {self.max_head_bytes} bytes.\n",
        )

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head or self._refused:
            return
        if self.flow.read_paused or (self.cycle is not None and not self.cycle.response_complete):
            # A response is still being written (the head is a pipelined request's, which uvicorn reads
            # after it): the head's time starts again once it can be read.
            self._start_head_timer()
            return
        if not self._head_begun:
            self.transport.close()  # nothing sent: nothing to answer
            return
        self.logger.info("request head not complete within %gs: answered 408 and closed", self.head_timeout)
        self._refuse(
            http.HTTPStatus.REQUEST_TIMEOUT,
            f"Request head not complete within {self.head_timeout:g} seconds.\n",
        )

    def _refuse(self, status: http.HTTPStatus, text: str) -> None:
        """Answer `status` with `text` and end the connection, dropping whatever else it sends."""
        self._refused = True
        self._cancel_head_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            # A previous request's response is in flight: end the connection after it instead of
            # writing into it.
            self.cycle.keep_alive = False
            return
        body = text.encode()
        content = [f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.flow.resume_reading()  # keep reading (and dropping) so the client's writes do not stall
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer, then end of stream; the client's EOF closes it
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    # Timers

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None


def bounded_http_protocol(settings: Settings) -> functools.partial[BoundedHttpToolsProtocol]:
    """What uvicorn's `http` option takes: a protocol factory with the settings' bounds. A partial of
    a module-level class, so it pickles into `collab serve --workers N`'s worker processes."""
    return functools.partial(
        BoundedHttpToolsProtocol,
        max_head_bytes=settings.max_header_bytes,
        head_timeout=settings.header_timeout_seconds,
    )


__all__ = ["LINGER_SECONDS", "BoundedHttpToolsProtocol", "bounded_http_protocol"]
