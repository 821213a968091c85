"""Wire shapes shared by the front doors: request parameters and the public job view.

MCP meta-tools take their input and output schemas from these models, so what the
schema promises is what the handlers validate and return.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from conveyor.executor import MAX_TIMEOUT_MS
from conveyor.jobs.models import JobStatus

MAX_WAIT_SECONDS = 25.0
MAX_OFFSET = 2**31 - 1  # fits every SQL integer type; a larger one overflowed SQLite's binding


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def json_number(value: Any) -> Any:
    """A number must be a JSON number: pydantic's lax mode would also take true or "5"."""
    if isinstance(value, bool | str):
        raise PydanticCustomError("number_type", "Input should be a number")
    return value


def _capped_wait(value: Any) -> Any:
    value = json_number(value)
    if isinstance(value, int | float):
        return min(MAX_WAIT_SECONDS, float(value))  # negatives are left for ge=0 to refuse
    return value


WAIT_DESCRIPTION = (
    "Seconds to wait for the job to finish before answering (capped at 25). "
    "If it finishes in time the answer holds its result; otherwise its current state."
)


class SubmitJobRequest(_Request):
    tool: str = Field(description="Name of the tool to run, as listed by tools/list.", min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict, description="The tool's arguments.")
    idempotency_key: str | None = Field(
        None, max_length=200, description="Resubmitting with the same key returns the same job."
    )
    timeout_ms: int | None = Field(
        None, gt=0, le=MAX_TIMEOUT_MS, description="Stop the job after this many milliseconds."
    )
    webhook_url: str | None = Field(
        None,
        max_length=2000,
        description="http(s) URL the job is POSTed to when it ends (JSON, signed: X-Conveyor-Signature).",
    )
    wait_seconds: float = Field(0, ge=0, description=WAIT_DESCRIPTION)

    _cap = field_validator("wait_seconds", mode="before")(_capped_wait)
    _number = field_validator("timeout_ms", mode="before")(json_number)


class JobStatusRequest(_Request):
    job_id: str = Field(description="The job's id, as jobs_submit returned it.", min_length=1)
    wait_seconds: float = Field(0, ge=0, description=WAIT_DESCRIPTION)

    _cap = field_validator("wait_seconds", mode="before")(_capped_wait)


class CancelJobRequest(_Request):
    job_id: str = Field(description="The job to cancel.", min_length=1)


class ListJobsRequest(_Request):
    status: JobStatus | None = Field(None, description="Only jobs with this status.")
    tool: str | None = Field(None, description="Only jobs of this tool.")
    limit: int = Field(20, ge=1, le=100, description="Page size (at most 100).")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Jobs to skip, newest first.")


class JobProgress(BaseModel):
    current_step: str | float | None = None
    total_steps: float | None = None
    percentage: float | None = None
    message: str | None = None


class JobError(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    details: dict[str, Any] | None = None


class JobView(BaseModel):
    """A job as clients see it; fields that do not apply to its status are absent."""

    job_id: str
    status: JobStatus
    tool: str
    created_at: int = Field(description="Unix time, seconds.")
    started_at: int | None = None
    completed_at: int | None = None
    position_in_queue: int | None = None
    status_message: str | None = Field(
        None, description="Why a queued job waits, when no running worker can run its tool."
    )
    progress: JobProgress | None = None
    cancel_requested_at: int | None = Field(
        None,
        description="Unix time, seconds: a cancel was asked of this running job; it ends canceled "
        "when its tool stops (a sync tool: when it returns or calls ctx.check_cancelled()).",
    )
    result: Any = Field(
        None,
        description="What the tool returned (completed jobs only).",
        json_schema_extra={"type": ["object", "array", "string", "number", "boolean", "null"]},
    )
    error: JobError | None = None
    execution_time_ms: int | None = None
    estimated_duration_ms: int | None = None
    attempts: int | None = None
    queue: str | None = None
    timeout_ms: int | None = None
    idempotency_key: str | None = None
    trace_id: str | None = None
    step_results: list[dict[str, Any]] | None = None


class Pagination(BaseModel):
    limit: int
    offset: int
    total: int


class JobList(BaseModel):
    jobs: list[JobView]
    pagination: Pagination
