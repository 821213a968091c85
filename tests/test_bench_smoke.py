"""The benchmark harness runs end to end at a tiny size (benchmarks themselves are not tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_benchmark_harness_writes_a_report_at_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    command = [sys.executable, "-m", "bench", "--quick", "--conveyor-only", "--only", "roundtrip,throughput"]
    done = subprocess.run(
        [*command, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    report = out.read_text()
    assert "## Machine" in report
    assert "Job round trip" in report
    assert "raw sqlite3 loop" in report
