"""Ports for the servers tests start of their own."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port free right now (the server that takes it may still race another)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
