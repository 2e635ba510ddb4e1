"""The JavaScript client's own tests (clients/collab-client/test/, node's test runner) against the
real app on a free port: pytest serves the app on the test database and hands node its address and
the test JWT secret, so `make test` runs them with everything else."""

from __future__ import annotations

import asyncio
import re
import subprocess

import pytest

from tests.api.conftest import ROOT, SECRET, Server
from tests.browser.conftest import node_binary

CLIENT = ROOT / "clients" / "collab-client"
NODE_TIMEOUT = 180


def _websocket_flag(node: str) -> list[str]:
    """Node 22 has a global WebSocket; Node 20 needs the flag (its undici client is the same)."""
    probe = subprocess.run([node, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"], check=False)
    return [] if probe.returncode == 0 else ["--experimental-websocket"]


async def test_collab_client_suite_passes_against_the_real_server(web: Server) -> None:
    node = node_binary()
    if node is None:
        pytest.skip("collab-client tests skipped: `node` (18 or newer) is not installed")
    tests = sorted(str(p) for p in (CLIENT / "test").glob("*.test.js"))
    proc = await asyncio.create_subprocess_exec(
        node, *_websocket_flag(node), "--test", "--test-reporter=spec", *tests,
        cwd=CLIENT,
        env={
            "PATH": "/usr/bin:/bin",
            "COLLAB_WS_URL": web.ws_url,
            "COLLAB_HTTP_URL": web.http_url,
            "COLLAB_JWT_SECRET": SECRET,
            "NODE_NO_WARNINGS": "1",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT)
    report = output.decode(errors="replace")
    print(report)
    assert proc.returncode == 0, report
    assert re.search(r"^\S* ?fail 0$", report, re.MULTILINE), report
