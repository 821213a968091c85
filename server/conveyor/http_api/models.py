"""REST bodies and answers. Handlers validate with these and OpenAPI is generated from them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from conveyor.jobs.models import JobStatus
from conveyor.schemas import MAX_WAIT_SECONDS, JobView, SubmitJobRequest

ANY_JSON: JsonDict = {"type": ["object", "array", "string", "number", "boolean", "null"]}


class ExecuteToolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1, description="Tool name, as GET /tools lists it.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="The tool's arguments.")
    mode: Literal["sync", "async"] = Field(
        "sync",
        description="sync: run now and answer with the result; async: submit as a job (like /jobs/submit).",
    )
    timeout_ms: int | None = Field(None, gt=0, description="Stop the run after this many milliseconds.")


class ExecuteToolResponse(BaseModel):
    tool: str
    status: Literal["success"]
    result: Any = Field(json_schema_extra=ANY_JSON)
    execution_time_ms: int


class SubmitJobBody(SubmitJobRequest):
    """POST /jobs/submit: the jobs_submit meta-tool's parameters."""


class JobAccepted(JobView):
    """The new job (status queued), or the finished job when wait_seconds let it end in time."""


class CancelResponse(JobView):
    message: str


class ListJobsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0)
    status: JobStatus | None = None
    tool: str | None = None


class JobStatusQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    wait_seconds: float = Field(0, ge=0, le=MAX_WAIT_SECONDS, description="Long-poll until the job ends.")


class ToolsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    q: str | None = Field(None, max_length=200, description="Words that every listed tool must contain.")


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
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    annotations: ToolAnnotationsView
    cancellable: bool
    timeout_ms: int | None = None


class ToolList(BaseModel):
    tools: list[ToolView]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    tools: int
    queue_depth: int


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    request_id: str
    retryable: bool | None = None
    suggested_fix: str | None = None
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    error: ErrorDetail
