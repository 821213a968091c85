"""Run by the frameworks' own virtual environment (``.ci/run`` makes it): the README's pydantic-ai
agent, its model replaced by one that follows Conveyor's instructions to the letter. Prints the
agent's answer and the tool calls it made, as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "frameworks"))
from pydantic_ai_agent import make_agent

calls: list[str] = []


def as_instructed(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """A model that does what the server's instructions say: submit, then poll until it ends."""
    names = {tool.name for tool in info.function_tools}
    assert {"jobs_submit", "jobs_status"} <= names, names
    assert info.instructions is not None
    assert "jobs_status" in info.instructions, info.instructions
    last = _last_return(messages)
    if last is None:
        return _call("jobs_submit", {"tool": "demo_sleep", "arguments": {"seconds": 2, "steps": 2}})
    job = last.content if isinstance(last.content, dict) else json.loads(str(last.content))
    job = job.get("structuredContent", job) if isinstance(job, dict) else job
    if job["status"] in ("queued", "running"):
        return _call("jobs_status", {"job_id": job["job_id"]})
    return ModelResponse(parts=[TextPart(json.dumps({"status": job["status"], "result": job.get("result")}))])


def _last_return(messages: list[ModelMessage]) -> ToolReturnPart | None:
    for message in reversed(messages):
        for part in getattr(message, "parts", []):
            if isinstance(part, ToolReturnPart):
                return part
    return None


def _call(tool: str, arguments: dict[str, Any]) -> ModelResponse:
    calls.append(tool)
    return ModelResponse(parts=[ToolCallPart(tool, arguments)])


if __name__ == "__main__":
    output = make_agent(FunctionModel(as_instructed)).run_sync("Sleep 2 seconds as a background job.").output
    print(json.dumps({"output": json.loads(output), "calls": calls}))
