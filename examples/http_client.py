"""Drive Conveyor over MCP's streamable HTTP, as an agent framework would: submit a job, print its result.

Start a server (``conveyor serve --http``; on its first start it prints an admin key once), then::

    CONVEYOR_API_KEY=cvk_... python examples/http_client.py [URL] [KEY]

URL is the server's base URL (default ``$CONVEYOR_URL``, else ``http://127.0.0.1:8765``); MCP is
served at ``URL/mcp``. KEY defaults to ``$CONVEYOR_API_KEY``. The client submits ``demo_sleep``
through the ``jobs_submit`` meta-tool with ``wait_seconds``, so a short job comes back finished in
the same call; a longer one is followed with ``jobs_status`` until it ends.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

WAIT_SECONDS = 25  # the most one call waits; loop for longer jobs


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A meta-tool's structured result; a tool error becomes an exception with its code."""
    result = await client.call_tool(tool, arguments)
    data = result.structured_content or {}
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {data.get('error', result.content)}")
    return data


async def main(url: str, key: str) -> None:
    # Long reads: a call may wait up to WAIT_SECONDS for the job before it answers.
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(30, read=300)
    )
    async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
        tools = await client.list_tools()
        print(f"connected to {url}/mcp: {len(tools.tools)} tools")
        job = await call(
            client,
            "jobs_submit",
            {"tool": "demo_sleep", "arguments": {"seconds": 1, "steps": 4}, "wait_seconds": WAIT_SECONDS},
        )
        print(f"submitted {job['job_id']}: {job['status']}")
        while job["status"] in ("queued", "running"):
            job = await call(client, "jobs_status", {"job_id": job["job_id"], "wait_seconds": WAIT_SECONDS})
        print(f"finished: {job['status']} in {job.get('execution_time_ms')} ms")
        if job["status"] != "completed":
            raise SystemExit(f"job ended {job['status']}: {job.get('error')}")
        print("result:", json.dumps(job["result"]))


if __name__ == "__main__":
    args = sys.argv[1:]
    url = (args[0] if args else os.environ.get("CONVEYOR_URL", "http://127.0.0.1:8765")).rstrip("/")
    key = args[1] if len(args) > 1 else os.environ.get("CONVEYOR_API_KEY", "")
    if not key:
        raise SystemExit("usage: http_client.py [URL] [KEY]  (or set CONVEYOR_URL and CONVEYOR_API_KEY)")
    try:
        anyio.run(main, url, key)
    except* (MCPError, httpx2.HTTPError) as failed:
        first: BaseException = failed
        while isinstance(first, BaseExceptionGroup):  # task groups nest the error that matters
            first = first.exceptions[0]
        raise SystemExit(
            f"{url}/mcp refused or failed the request ({first}): check the URL and the API key"
        ) from None
