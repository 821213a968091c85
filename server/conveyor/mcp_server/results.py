"""Turning outcomes, jobs and errors into ``CallToolResult``s (text for the model, structure for code)."""

from __future__ import annotations

from typing import Any

import mcp_types as types

from conveyor import strict_json
from conveyor.errors import ConveyorError
from conveyor.executor import Outcome

MAX_TEXT_RESULT = 4000  # keep the readable summary short; the full result is in structuredContent


def outcome_result(outcome: Outcome, *, structured: bool) -> types.CallToolResult:
    return value_result(outcome.result, structured=structured)


def value_result(value: Any, *, structured: bool) -> types.CallToolResult:
    """What a successful ``tools/call`` answers: the value as text, and as structure when it has a schema."""
    text = value if isinstance(value, str) else strict_json.dumps(value, compact=False)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=value if structured and isinstance(value, dict) else None,
    )


def error_result(error: ConveyorError, request_id: str) -> types.CallToolResult:
    return payload_error_result({**error.to_payload(), "request_id": request_id})


def payload_error_result(payload: dict[str, Any]) -> types.CallToolResult:
    """A failed ``tools/call``: ``isError``, the code in the text, the whole error as structure."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"{payload['code']}: {payload['message']}")],
        structured_content={"error": payload},
        is_error=True,
    )


def structured_result(data: dict[str, Any], text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=data)


def describe_job(job: dict[str, Any]) -> str:
    """One or two lines an agent can act on."""
    name = f"Job {job['job_id']} ({job['tool']})"
    status = job["status"]
    if status == "queued":
        waiting = f" {job['status_message']}" if job.get("status_message") else ""
        return f"{name} is queued, position {job.get('position_in_queue')}.{waiting} " + _poll_hint(job)
    if status == "running":
        progress = job.get("progress") or {}
        done = f", {progress['percentage']}% done" if progress.get("percentage") is not None else ""
        if job.get("cancel_requested_at") is not None:
            done += ", cancel requested (it stops when its tool next checks or returns)"
        return f"{name} is running{done}. " + _poll_hint(job)
    if status == "completed":
        result = strict_json.dumps(job.get("result"), compact=False)
        if len(result) > MAX_TEXT_RESULT:
            result = result[:MAX_TEXT_RESULT] + "… (truncated; the full result is in the structured content)"
        return f"{name} completed in {job.get('execution_time_ms')} ms. Result: {result}"
    if status == "canceled":
        return f"{name} was canceled."
    error = job.get("error") or {}
    fix = f" {error['suggested_fix']}" if error.get("suggested_fix") else ""
    if status == "timeout":
        return f"{name} timed out after {job.get('execution_time_ms')} ms.{fix}"
    return f"{name} failed: {error.get('code', 'EXECUTION_ERROR')}: {error.get('message', '')}.{fix}".replace(
        "..", "."
    )


def _poll_hint(job: dict[str, Any]) -> str:
    return f"Call jobs_status with job_id={job['job_id']!r} to wait for it, and again while it runs."
