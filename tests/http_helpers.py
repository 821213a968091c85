"""Helpers shared by the HTTP tests: coded-error checks, MCP clients over real HTTP, held jobs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests import toolkits
from tests.live_server import LiveServer

TERMINAL = {"completed", "failed", "canceled", "timeout"}
MODERN = "2026-07-28"
MODERN_META = {  # the envelope a raw 2026-07-28 request carries in params._meta
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
UNKNOWN_JOB = "job_" + "0" * 32


def error_of(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    """Check that the response is the coded error, in the one error shape; return its ``error``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return error


def sse_events(text: str) -> list[dict[str, Any]]:
    """The JSON-RPC messages in an event stream's text, in order."""
    return [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]


def ok(response: httpx2.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def submit(http: httpx2.AsyncClient, tool: str, arguments: dict[str, Any] | None = None) -> str:
    response = await http.post("/jobs/submit", json={"tool": tool, "arguments": arguments or {}})
    job_id: str = ok(response, 202)["job_id"]
    return job_id


async def finished(http: httpx2.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job once it has ended (a long-poll; the server answers as soon as it is terminal)."""
    with anyio.fail_after(10):
        job: dict[str, Any] = ok(await http.get(f"/jobs/{job_id}", params={"wait_seconds": 10}))
    assert job["status"] in TERMINAL, job
    return job


async def started_hold(http: httpx2.AsyncClient, tool: str = "testkit_hold") -> str:
    """Submit a held job over REST and return once its tool is running."""
    job_id = await submit(http, tool)
    with anyio.fail_after(5):
        await toolkits.started.wait()
    return job_id


@asynccontextmanager
async def mcp_client(
    live: LiveServer, key: str, era: str, *, message_handler: Any = None, **headers: str
) -> AsyncIterator[Client]:
    """An MCP SDK client talking to the live server's /mcp over real HTTP with the key."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}", **headers}, timeout=30)
    transport = streamable_http_client(f"{live.url}/mcp", http_client=http)
    async with http, Client(transport, mode=era, message_handler=message_handler) as client:
        yield client
