"""Every benchmark under bench/ starts: `make bench` is how performance claims are checked, and lint
does not catch every error that stops a script before its first line runs (a name read before its
`global` declaration is refused by the compiler, not by ruff)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
RUNNABLE = re.compile(r"""^if __name__ == ["']__main__["']:""", re.MULTILINE)
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if RUNNABLE.search(p.read_text()))
# Modules the scripts import, not scripts themselves.
LIBRARIES = {"__init__.py", "common.py", "baseline_relay.py", "raw_client.py", "vanish.py"}


def test_every_benchmark_is_found() -> None:
    assert {p.name for p in SCRIPTS} == {p.name for p in BENCH.glob("*.py")} - LIBRARIES


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_benchmark_explains_itself(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BENCH.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
