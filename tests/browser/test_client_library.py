"""The JavaScript client's own tests (clients/collab-client/test/, node's test runner) against the
real app on a free port: pytest serves the app on the test database and hands node its address and
the test JWT secret, so `make test` runs them with everything else. A check of their harness runs
alone: a test that fails while it holds the network down must fail by itself, and at once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess

import pytest

from tests.api.conftest import ROOT, SECRET, Server
from tests.browser.conftest import node_binary

CLIENT = ROOT / "clients" / "collab-client"
NODE_TIMEOUT = 180
# A failing assertion must end its test at once: a run that outlives this is stuck on the network.
HARNESS_TIMEOUT = 30


def _websocket_flag(node: str) -> list[str]:
    """Node 22 has a global WebSocket; Node 20 needs the flag (its undici client is the same)."""
    probe = subprocess.run([node, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"], check=False)
    return [] if probe.returncode == 0 else ["--experimental-websocket"]


async def _run_node_tests(web: Server, files: list[str], seconds: float, **env: str) -> tuple[int, str]:
    """Node's exit code and its report. A run still going after `seconds` is killed, with
    the process it runs each test file in, and fails the test with what it had printed by then."""
    node = node_binary()
    if node is None:
        pytest.skip("collab-client tests skipped: `node` (18 or newer) is not installed")
    proc = await asyncio.create_subprocess_exec(
        node, *_websocket_flag(node), "--test", "--test-reporter=spec", *files,
        cwd=CLIENT,
        env={
            "PATH": "/usr/bin:/bin",
            "COLLAB_WS_URL": web.ws_url,
            "COLLAB_HTTP_URL": web.http_url,
            "COLLAB_JWT_SECRET": SECRET,
            "NODE_NO_WARNINGS": "1",
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    stdout = proc.stdout
    assert stdout is not None
    printed = bytearray()

    async def read_all() -> None:
        while chunk := await stdout.read(65536):
            printed.extend(chunk)
        await proc.wait()

    try:
        await asyncio.wait_for(read_all(), seconds)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        pytest.fail(f"node still running after {seconds} s:\n{printed.decode(errors='replace')}")
    report = printed.decode(errors="replace")
    print(report)
    assert proc.returncode is not None
    return proc.returncode, report


async def test_collab_client_suite_passes_against_the_real_server(web: Server) -> None:
    tests = sorted(str(p) for p in (CLIENT / "test").glob("*.test.js"))
    returncode, report = await _run_node_tests(web, tests, NODE_TIMEOUT)
    assert returncode == 0, report
    assert re.search(r"^\S* ?fail 0$", report, re.MULTILINE), report


async def test_an_assertion_failing_with_the_network_down_fails_its_test_promptly(web: Server) -> None:
    """The next test must find the proxy open again, not wait for a network that never comes back."""
    check = str(CLIENT / "test" / "fixtures" / "blocked-failure.js")
    returncode, report = await _run_node_tests(web, [check], HARNESS_TIMEOUT, COLLAB_HARNESS_CHECK="1")
    assert returncode != 0, report
    assert "deliberate failure with the network down" in report, report
    assert re.search(r"^\S* ?pass 1$", report, re.MULTILINE), report
    assert re.search(r"^\S* ?fail 1$", report, re.MULTILINE), report
