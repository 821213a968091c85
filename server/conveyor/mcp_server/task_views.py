"""Jobs as MCP tasks: the status mapping of each protocol era, and the wire shapes.

| job status | 2025-11-25 task | 2026-07-28 task (extension) |
|---|---|---|
| queued, running | working | working |
| completed | completed | completed (result inlined) |
| failed, timeout | failed (the result has isError) | completed (result inlined, isError) |
| canceled | cancelled | cancelled |

The 2025 spec counts a tool result with ``isError`` as a failed task; the 2026 extension
keeps ``failed`` for JSON-RPC errors and reports tool errors as completed tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import mcp_types as types

from conveyor.jobs.models import Job, JobStatus
from conveyor.mcp_server.eras import Era
from conveyor.mcp_server.results import payload_error_result, value_result

RELATED_TASK = "io.modelcontextprotocol/related-task"
IMMEDIATE_RESPONSE = "io.modelcontextprotocol/model-immediate-response"


def task_status(job: Job, era: Era) -> str:
    if not job.status.terminal:
        return "working"
    if job.status is JobStatus.COMPLETED:
        return "completed"
    if job.status is JobStatus.CANCELED:
        return "cancelled"
    return "failed" if era == "2025" else "completed"


def status_message(job: Job) -> str:
    if job.status is JobStatus.QUEUED:
        return f"Queued, position {job.position_in_queue} in line." if job.position_in_queue else "Queued."
    if job.status is JobStatus.RUNNING:
        progress = job.progress or {}
        done = f" {progress['percentage']}% done." if progress.get("percentage") is not None else ""
        note = f" {progress['message']}" if progress.get("message") else ""
        return f"Running.{done}{note}"
    if job.error:
        return f"{job.error.get('code')}: {job.error.get('message')}"
    return f"{str(job.status).capitalize()}."


def task_2025(job: Job, *, poll_interval_ms: int) -> dict[str, Any]:
    return {
        "taskId": job.job_id,
        "status": task_status(job, "2025"),
        "statusMessage": status_message(job),
        "createdAt": iso(job.created_at),
        "lastUpdatedAt": iso(last_updated(job)),
        "ttl": job.ttl_ms,
        "pollInterval": poll_interval_ms,
    }


def task_2026(job: Job, *, poll_interval_ms: int, structured: bool, detailed: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "taskId": job.job_id,
        "status": task_status(job, "2026"),
        "statusMessage": status_message(job),
        "createdAt": iso(job.created_at),
        "lastUpdatedAt": iso(last_updated(job)),
        "ttlMs": job.ttl_ms,
        "pollIntervalMs": poll_interval_ms,
    }
    if detailed and view["status"] == "completed":
        # The 2026 schema requires resultType on the inlined result, though prose examples omit it.
        view["result"] = {**call_result(job, structured=structured), "resultType": "complete"}
    return view


def call_result(job: Job, *, structured: bool) -> dict[str, Any]:
    """Exactly what ``tools/call`` would have answered for this finished job."""
    if job.status is JobStatus.COMPLETED:
        result = value_result(job.result, structured=structured)
    else:
        result = payload_error_result(
            job.error or {"code": "EXECUTION_ERROR", "message": "Job ended without a result"}
        )
    return dump(result)


def dump(model: types.CallToolResult) -> dict[str, Any]:
    # resultType belongs to the 2026 envelope; task_2026 sets it where that era wants it.
    return model.model_dump(by_alias=True, mode="json", exclude_none=True, exclude={"result_type"})


def mcp_progress(progress: dict[str, Any]) -> tuple[float, float | None, str | None]:
    """A job's progress as an MCP progress notification's progress, total and message: the step
    counts if they are numbers, else the percentage out of 100."""
    current, total = progress.get("current_step"), progress.get("total_steps")
    if not isinstance(current, int | float):
        current, total = progress.get("percentage") or 0, 100
    return float(current), total, progress.get("message")


def last_updated(job: Job) -> int:
    return max(t for t in (job.created_at, job.started_at, job.completed_at) if t is not None)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
