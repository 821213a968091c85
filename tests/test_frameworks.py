"""The README's agent-framework snippet (pydantic-ai) against a live server, run by the frameworks'
own virtual environment: the agent finds Conveyor's tools and instructions, and a model that
follows them completes a job through jobs_submit and jobs_status.

Set up with ``python3 -m venv tests/.frameworks-venv && tests/.frameworks-venv/bin/pip install -r
tests/frameworks/requirements.txt`` (the README's test command does). Without it these tests skip
locally; in CI (``CI`` set) they fail, so a broken install cannot pass unnoticed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from tests.conftest import make_settings
from tests.live_server import LiveServer, live_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
PYTHON = HERE / ".frameworks-venv" / "bin" / "python"


@pytest.fixture
def framework_python() -> Path:
    if not PYTHON.exists():
        reason = f"{PYTHON.parent.parent} is not installed; see tests/frameworks/requirements.txt"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(reason)
        pytest.skip(reason)
    return PYTHON


async def test_a_pydantic_ai_agent_completes_a_job_as_conveyors_instructions_say(
    tmp_path: Path, framework_python: Path
) -> None:
    async with live_server(make_settings(tmp_path, job_wait_seconds=4.0)) as live:  # the default wait
        await drive(live, framework_python)


async def drive(live: LiveServer, framework_python: Path) -> None:
    key = await live.new_key(plan="pro")
    env = {**os.environ, "CONVEYOR_URL": live.url, "CONVEYOR_API_KEY": key}
    with anyio.fail_after(120):
        run = await anyio.run_process(
            [str(framework_python), str(HERE / "frameworks" / "pydantic_ai_pattern.py")], env=env, check=False
        )
    assert run.returncode == 0, run.stderr.decode()
    answer = json.loads(run.stdout.decode().strip().splitlines()[-1])
    assert answer["output"] == {"status": "completed", "result": {"slept_seconds": 2.0, "steps": 2}}
    assert answer["calls"][0] == "jobs_submit"
    assert set(answer["calls"][1:]) == {"jobs_status"}
    jobs, total = await live.runtime.engine.list(owner=None)
    assert total == 1
    assert jobs[0].tool == "demo_sleep"
