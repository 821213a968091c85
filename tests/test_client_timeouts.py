"""The job pattern the server's instructions teach survives a client that gives up on any request
after 5 seconds (openai-agents' default): a long job completes, no call times out, and a model
that asks twice starts one job."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from tests.conftest import ERAS, make_settings
from tests.http_helpers import TERMINAL, mcp_client
from tests.live_server import live_server
from tests.mcp_calls import call

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CLIENT_TIMEOUT_S = 5.0
JOB_SECONDS = 9  # stands for a 70 s job: long past the client's timeout, twice over


@pytest.mark.parametrize("era", ERAS)
async def test_a_client_that_gives_up_after_5_seconds_completes_a_long_job_as_the_instructions_say(
    tmp_path: Path, era: str
) -> None:
    async with live_server(make_settings(tmp_path, job_wait_seconds=4.0)) as server:  # the default
        key = await server.new_key(plan="pro")
        async with mcp_client(server, key, era) as client:
            patient: Client = client
            instructions = patient.instructions
            arguments = {"tool": "demo_sleep", "arguments": {"seconds": JOB_SECONDS, "steps": 9}}
            submitted = await call_within(patient, "jobs_submit", arguments)
            asked_again = await call_within(patient, "jobs_submit", arguments)  # a retrying model
            job, polls = submitted, 0
            while job["status"] not in TERMINAL:
                job = await call_within(patient, "jobs_status", {"job_id": submitted["job_id"]})
                polls += 1
            listed = await call(patient, "jobs_list", {})
    assert instructions is not None
    assert "call jobs_status again" in instructions
    assert asked_again["job_id"] == submitted["job_id"]
    assert job["status"] == "completed"
    assert job["result"] == {"slept_seconds": JOB_SECONDS, "steps": 9}
    assert listed["pagination"]["total"] == 1  # exactly one job
    assert polls <= JOB_SECONDS // 4 + 2  # each poll waited as long as was safe, not less


async def call_within(client: Client, tool: str, arguments: dict[str, object]) -> dict[str, object]:
    """A call as such a client makes it: given up (an exception, failing the test) after 5 s."""
    result = await client.call_tool(tool, arguments, read_timeout_seconds=CLIENT_TIMEOUT_S)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content
