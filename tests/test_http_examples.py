"""The HTTP examples run against a real ``conveyor serve --http`` process, as a reader would run them."""

from __future__ import annotations

import re
import shutil
import signal
import sys
from pathlib import Path

import anyio
import pytest

from tests.serve_process import conveyor_http, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def test_the_http_client_example_runs_a_job_over_mcp_and_prints_its_result(tmp_path: Path) -> None:
    async with conveyor_http(tmp_path, stop=signal.SIGTERM) as served:
        with anyio.fail_after(60):
            run = await anyio.run_process(
                [sys.executable, str(EXAMPLES / "http_client.py"), served.url, served.key],
                cwd=tmp_path,
                check=False,
            )
    output = run.stdout.decode()
    assert run.returncode == 0, run.stderr.decode()
    assert f"connected to {served.url}/mcp" in output
    assert "finished: completed" in output
    assert 'result: {"slept_seconds": 1.0, "steps": 4}' in output


async def test_the_http_client_example_reads_the_url_and_key_from_the_environment(tmp_path: Path) -> None:
    async with conveyor_http(tmp_path, stop=signal.SIGINT) as served:
        env = {**server_env(), "CONVEYOR_URL": served.url, "CONVEYOR_API_KEY": served.key}
        with anyio.fail_after(60):
            run = await anyio.run_process(
                [sys.executable, str(EXAMPLES / "http_client.py")], cwd=tmp_path, env=env, check=False
            )
    assert run.returncode == 0, run.stderr.decode()
    assert "finished: completed" in run.stdout.decode()


async def test_the_rest_walkthrough_calls_every_endpoint_and_exits_0(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("examples/rest.sh needs curl")
    async with conveyor_http(tmp_path, stop=signal.SIGINT) as served:
        env = {**server_env(), "CONVEYOR_URL": served.url, "CONVEYOR_API_KEY": served.key}
        with anyio.fail_after(60):
            run = await anyio.run_process(
                ["bash", str(EXAMPLES / "rest.sh")], cwd=tmp_path, env=env, check=False
            )
    output = run.stdout.decode()
    assert run.returncode == 0, output + run.stderr.decode()
    steps = [
        f"{method} {re.sub(r'job_[0-9a-f]+', 'ID', path)}"
        for method, path in re.findall(r"^== (GET|POST|DELETE) (\S+?):?(?:\s|$)", output, re.MULTILINE)
    ]
    assert steps == [
        "GET /healthz",
        "GET /tools",
        "GET /tools?q=sleep",
        "POST /execute_tool",
        "POST /jobs/submit",
        "GET /jobs/ID",
        "GET /jobs/ID?wait_seconds=10",
        "GET /jobs/{job_id}/stream",
        "DELETE /jobs/{job_id}",
        "GET /jobs?tool=demo_sleep&status=completed&limit=5",
        "POST /webhooks",
        "GET /webhooks",
        "DELETE /webhooks/{webhook_id}",
        "GET /openapi.json",
        "GET /metrics",
    ]
    assert '{"status":"ok"' in output
    assert "demo_add demo_echo demo_fail demo_sleep" in output
    assert '"tool":"demo_add","status":"success","result":{"sum":3.0}' in output
    assert '"status":"queued"' in output  # the submit answer
    assert '"result":{"slept_seconds":1.0,"steps":4}' in output  # the long-poll's answer
    events = re.findall(r"^data: (.*)$", output, flags=re.MULTILINE)
    assert '"status":"completed"' in events[-1]  # the stream ends with the finished job
    assert '"status":"canceled"' in output
    assert "Job canceled successfully" in output
    assert '"pagination":{"limit":5,"offset":0,"total":2}' in output
    assert '"events":["job.completed","job.failed"]' in output
    assert '"deleted":true' in output
    assert "Conveyor Tool Execution & Jobs API - 11 paths" in output
    assert 'conveyor_jobs{status="canceled"} 1.0' in output  # prometheus-client writes floats
