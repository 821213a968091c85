"""Conveyor's tools in a pydantic-ai agent, over MCP at /mcp.

    pip install 'pydantic-ai-slim[mcp,openai]'
    export CONVEYOR_URL=http://127.0.0.1:8765 CONVEYOR_API_KEY=cvk_... OPENAI_API_KEY=...
    python examples/frameworks/pydantic_ai_agent.py

The agent gets every tool and the four jobs_* tools, and Conveyor's instructions, which teach the
model the job pattern: jobs_submit answers at once, jobs_status waits a few seconds a call.
pydantic-ai waits up to 5 minutes for an answer (``read_timeout``), so Conveyor's default
``job_wait_seconds`` (4 s) suits it; raise that setting to have its models poll less.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset


def conveyor_toolset(url: str, key: str) -> MCPToolset[Any]:
    return MCPToolset(
        f"{url.rstrip('/')}/mcp",
        headers={"Authorization": f"Bearer {key}"},
        include_instructions=True,  # the job pattern, as Conveyor tells it
    )


def make_agent(model: Any) -> Agent[None, str]:
    toolset = conveyor_toolset(os.environ["CONVEYOR_URL"], os.environ["CONVEYOR_API_KEY"])
    return Agent(model, toolsets=[toolset])


if __name__ == "__main__":
    agent = make_agent(os.environ.get("CONVEYOR_MODEL", "openai:gpt-5"))
    question = (
        sys.argv[1]
        if len(sys.argv) > 1
        else "Sleep 3 seconds in 3 steps as a background job; say how it went."
    )
    print(agent.run_sync(question).output)
