"""The benchmark harness runs end to end at a tiny size (benchmarks themselves are not tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import databases

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_benchmark_harness_writes_a_report_at_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    command = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--conveyor-only",
        "--only",
        "roundtrip,throughput,postgres",
    ]
    env = {**os.environ, "CONVEYOR_BENCH_POSTGRES_URL": databases.postgres_url()}
    done = subprocess.run(
        [*command, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    report = out.read_text()
    assert "## Machine" in report
    assert "Job round trip" in report
    assert "raw sqlite3 loop" in report
    assert "raw asyncpg loops" in report
    assert "Conveyor on PostgreSQL, 4 worker processes" in report
