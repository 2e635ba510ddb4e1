"""Every benchmark under bench/ starts: `make bench` is how performance claims are checked, and lint
does not catch every error that stops a script before its first line runs (a name read before its
`global` declaration is refused by the compiler, not by ruff)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if 'if __name__ == "__main__"' in p.read_text())


def test_the_benchmarks_are_found() -> None:
    assert {p.name for p in SCRIPTS} >= {"append.py", "fanout.py", "repartition.py"}


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
