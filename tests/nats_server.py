"""A NATS server of the test's own (Debian's `nats-server`), which a test can stop and start again on
the same port: a real bus outage, without touching any other user of the machine's NATS."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bench.common import free_port

BINARY = shutil.which("nats-server") or "/usr/sbin/nats-server"
START_GUARD = 10.0  # seconds a start may take before the test fails


class NatsServer:
    """Blocking on purpose: a start or stop takes milliseconds, and sync fixtures can use it too."""

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [BINARY, "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_GUARD
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self._proc.poll() is None, "nats-server exited at start"
                assert time.monotonic() < deadline, "nats-server did not start listening"
                time.sleep(0.02)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


@contextmanager
def nats_server() -> Iterator[NatsServer]:
    if not os.path.exists(BINARY):
        pytest.skip("no nats-server binary (Debian package nats-server)")
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
