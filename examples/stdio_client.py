"""Drive Conveyor over stdio with the MCP Python SDK: submit a background job, wait, print the result.

The client starts ``conveyor serve`` itself (as ``python -m conveyor serve``, so it needs only
this interpreter) with a throw-away database, submits ``demo_sleep`` through the ``jobs_submit``
meta-tool, then long-polls ``jobs_status`` until the job is finished::

    python examples/stdio_client.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

WAIT_SECONDS = 25  # the most one jobs_status call waits; loop for longer jobs


def server_parameters(db: Path) -> StdioServerParameters:
    # --worker inline: jobs run in the server itself, which ends with this example. By default a
    # stdio server hands jobs to a local worker that outlives it (and its throwaway database here).
    return StdioServerParameters(
        command=sys.executable,
        args=[
            *("-m", "conveyor", "serve", "--db", str(db), "--worker", "inline"),
            *("--toolkit", "conveyor_toolkits.demo:toolkit"),
        ],
        env={"CONVEYOR_ENTRY_POINTS": "false", "CONVEYOR_LOG_LEVEL": "WARNING"},
    )


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A meta-tool's structured result; a tool error becomes an exception with its code."""
    result = await client.call_tool(tool, arguments)
    data = result.structured_content or {}
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {data.get('error', result.content)}")
    return data


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="conveyor-example-") as tmp:
        async with Client(server_parameters(Path(tmp) / "jobs.db")) as client:
            job = await call(
                client, "jobs_submit", {"tool": "demo_sleep", "arguments": {"seconds": 1, "steps": 4}}
            )
            print(f"submitted {job['job_id']}: {job['status']}")
            while job["status"] in ("queued", "running"):
                job = await call(
                    client, "jobs_status", {"job_id": job["job_id"], "wait_seconds": WAIT_SECONDS}
                )
            print(f"finished: {job['status']} in {job.get('execution_time_ms')} ms")
            if job["status"] != "completed":
                raise SystemExit(f"job ended {job['status']}: {job.get('error')}")
            print("result:", json.dumps(job["result"]))


if __name__ == "__main__":
    anyio.run(main)
