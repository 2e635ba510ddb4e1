"""The `collab` CLI as a person runs it: a real subprocess with a clean environment of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Settings that must come from each test, never from the shell that runs the suite.
_OWN = ("JWT_", "DATABASE_URL", "LOG_", "DATA_DIR")


def collab(
    *args: str, data_dir: Path, stdin: str | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(_OWN)}
    environ.update(DATA_DIR=str(data_dir), **env)
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        env=environ,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_explained(done: subprocess.CompletedProcess[str], *needles: str) -> list[str]:
    """The failure a user can fix: exit 1, one or two lines on stderr (cause, then fix), no traceback,
    each needle somewhere in them. Returns the lines."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, done.stderr
    assert lines[0].startswith("collab: "), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in done.stderr, (needle, done.stderr)
    return lines
