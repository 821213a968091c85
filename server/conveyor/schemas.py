"""The wire shapes every front door shares: request parameters, and one view per resource.

A resource (a job, a tool) has one model here, which is both its schema (MCP output schemas,
the OpenAPI document) and, through ``of``, its one serializer; every door answers with it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic_core import PydanticCustomError

from conveyor import strict_json
from conveyor.executor import MAX_TIMEOUT_MS
from conveyor.jobs.models import Job, JobStatus, WebhookEvent, now_ms
from conveyor.toolkit import Tool

MAX_WAIT_SECONDS = 25.0
MAX_OFFSET = 2**31 - 1  # fits every SQL integer type; a larger one overflowed SQLite's binding


class _Request(BaseModel):
    """Parameters of a request, the same at every door: MCP arguments and REST bodies are
    validated strictly as JSON (a number is a JSON number), REST query values leniently (they are
    text), and REST path parameters fill the fields they name. A null stands for a parameter left
    out: clients in OpenAI's strict mode must send every parameter, and send null for those they
    would leave out."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_is_left_out(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


def _capped_wait(value: float | None) -> float | None:
    return None if value is None else min(MAX_WAIT_SECONDS, value)  # capped, not refused


MAX_QUERY_CHARS = 200
MAX_SEARCH_LIMIT = 50
MAX_CREDENTIALS = 32
Credentials = dict[
    Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
    Annotated[str, StringConstraints(max_length=8192)],
]
CREDENTIALS_DESCRIPTION = (
    "Secrets for this run alone, by name (API tokens, passwords), handed to the tool, which uses "
    "them (e.g. as HTTP auth). Never shown back or logged; a job keeps them encrypted until it "
    "ends, then erases them."
)

MAX_VERSION_CHARS = 64
VERSION_DESCRIPTION = "The version of the tool to run, as GET /tools lists them; left out: the newest."

WAIT_DESCRIPTION = (
    "Seconds to wait for the job to finish before answering (at most 25). Leave it out unless "
    "your client waits longer than a few seconds for an answer: by default the answer comes soon "
    "enough for any client, and you call again if the job is still running."
)


class SubmitJobRequest(_Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"tool": "demo_sleep", "arguments": {"seconds": 0.1, "steps": 2}}]},
    )

    tool: str = Field(description="Name of the tool to run, as listed by tools/list.", min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict, description="The tool's arguments.")
    arguments_json: str | None = Field(
        None,
        description="The tool's arguments as JSON text, e.g. '{\"a\": 1}', for clients that cannot send "
        "a free-form object (such as OpenAI's strict mode); give arguments or arguments_json, not both.",
    )
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
    wait_seconds: float | None = Field(
        None,
        ge=0,
        description="Seconds to wait for the job to finish before answering (at most 25); by "
        "default the answer comes at once. Leave it out, then call jobs_status.",
    )
    credentials: Credentials | None = Field(
        None, max_length=MAX_CREDENTIALS, description=CREDENTIALS_DESCRIPTION, repr=False
    )
    version: str | None = Field(
        None, min_length=1, max_length=MAX_VERSION_CHARS, description=VERSION_DESCRIPTION
    )

    _cap = field_validator("wait_seconds", mode="after")(_capped_wait)

    @model_validator(mode="after")
    def _arguments_from_json(self) -> SubmitJobRequest:
        if self.arguments_json is None:
            return self
        if self.arguments:
            raise PydanticCustomError("arguments_twice", "Give arguments or arguments_json, not both")
        try:
            arguments = strict_json.loads(self.arguments_json)
        except strict_json.NotStrictJson as exc:
            raise PydanticCustomError(
                "arguments_json", "arguments_json is not strict JSON: {reason}", {"reason": str(exc)}
            ) from None
        if not isinstance(arguments, dict):
            raise PydanticCustomError("arguments_json", "arguments_json must be a JSON object")
        self.arguments = arguments
        self.arguments_json = None
        return self


class JobStatusRequest(_Request):
    job_id: str = Field(description="The job's id, as jobs_submit returned it.", min_length=1)
    wait_seconds: float | None = Field(None, ge=0, description=WAIT_DESCRIPTION)

    _cap = field_validator("wait_seconds", mode="after")(_capped_wait)


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
    version: str | None = Field(
        None,
        description="The version of the tool the job runs: the one its submit named, else the newest then.",
    )
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

    @classmethod
    def of(cls, job: Job) -> dict[str, Any]:
        """A job as every door shows it (REST, MCP meta-tools, resources, SSE, webhooks): the
        seed API's shape, fields that do not apply to the status left out."""
        view: dict[str, Any] = {
            "job_id": job.job_id,
            "status": str(job.status),
            "tool": job.tool,
            "version": job.tool_version,
            "created_at": _seconds(job.created_at),
            "started_at": _seconds(job.started_at),
            "completed_at": _seconds(job.completed_at),
            "queue": job.queue,
            "attempts": job.attempts,
            "estimated_duration_ms": job.estimated_duration_ms,
            "timeout_ms": job.timeout_ms,
            "idempotency_key": job.idempotency_key,
            "trace_id": job.trace_id,
        }
        if job.status is JobStatus.QUEUED:
            view["position_in_queue"] = job.position_in_queue
            view["status_message"] = job.status_message
        if job.status is JobStatus.RUNNING and job.cancel_requested_at is not None:
            # A sync tool stops only when it returns or checks: until then the cancel is pending.
            view["cancel_requested_at"] = _seconds(job.cancel_requested_at)
        if job.progress is not None:
            view["progress"] = job.progress
        if job.status is JobStatus.COMPLETED:
            view["result"] = job.result
        if job.error is not None and job.status.terminal:
            view["error"] = job.error
        if job.status.terminal:
            view["execution_time_ms"] = job.execution_time_ms
        if job.step_results:
            view["step_results"] = job.step_results
        # estimated_duration_ms stays even when unknown (null), as the seed API always answers it.
        kept = ("result", "estimated_duration_ms")
        return {key: value for key, value in view.items() if value is not None or key in kept}


def _seconds(ms: int | None) -> int | None:
    return None if ms is None else ms // 1000


class Pagination(BaseModel):
    limit: int
    offset: int
    total: int


class JobList(BaseModel):
    jobs: list[JobView]
    pagination: Pagination


def webhook_payloads(job: Job, event: WebhookEvent, delivery_ids: list[str]) -> list[str]:
    """The body of each delivery of this event: the event, when it happened, the job as
    GET /jobs/{job_id} answers it, and the delivery's id, inside the signed body so that a
    receiver dedupes by an id nobody can forge."""
    happened = job.completed_at if job.completed_at is not None else now_ms()
    timestamp = datetime.fromtimestamp(happened / 1000, UTC).isoformat(timespec="milliseconds")
    body = {"event": str(event), "timestamp": timestamp.replace("+00:00", "Z"), "job": JobView.of(job)}
    return [
        json.dumps({**body, "delivery_id": delivery_id}, ensure_ascii=False, separators=(",", ":"))
        for delivery_id in delivery_ids
    ]


class ToolAnnotationsView(BaseModel):
    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool


class ToolView(BaseModel):
    name: str
    toolkit: str
    title: str
    description: str
    version: str
    versions: list[str] = Field(
        description="Every version of the tool served, newest first: a call or job may name one."
    )
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    annotations: ToolAnnotationsView
    cancellable: bool
    timeout_ms: int | None = None

    @classmethod
    def of(cls, tool: Tool) -> dict[str, Any]:
        """A tool as every door describes it: REST's GET /tools, and the MCP tool definition,
        which is made from this."""
        hints = tool.annotations
        return {
            "name": tool.wire_name,
            "toolkit": tool.toolkit,
            "title": tool.title,
            "description": tool.description,
            "version": tool.version,
            "versions": list(tool.versions),
            "input_schema": tool.input_schema,
            "output_schema": tool.output_schema,
            "annotations": {
                "read_only": hints.read_only,
                "destructive": hints.destructive,
                "idempotent": hints.idempotent,
                "open_world": hints.open_world,
            },
            "cancellable": tool.cancellable,
            "timeout_ms": tool.timeout_ms,
        }


class ToolList(BaseModel):
    tools: list[ToolView]


class SearchToolsRequest(_Request):
    query: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="What the tool should do, in a few words (e.g. 'weather forecast for a city').",
    )
    limit: int = Field(10, ge=1, le=MAX_SEARCH_LIMIT, description="How many tools to answer at most (1-50).")
