"""REST bodies and answers. Handlers validate with these and OpenAPI is generated from them."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from conveyor.executor import MAX_TIMEOUT_MS
from conveyor.jobs.models import WebhookEvent
from conveyor.schemas import (
    CREDENTIALS_DESCRIPTION,
    MAX_CREDENTIALS,
    MAX_VERSION_CHARS,
    VERSION_DESCRIPTION,
    Credentials,
    JobView,
    ToolView,
)

ANY_JSON: JsonDict = {"type": ["object", "array", "string", "number", "boolean", "null"]}


class ExecuteToolRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"tool": "demo_add", "arguments": {"a": 1, "b": 2}}]}
    )

    tool: str = Field(min_length=1, description="Tool name, as GET /tools lists it.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="The tool's arguments.")
    mode: Literal["sync", "async"] = Field(
        "sync",
        description="sync: run now and answer with the result; async: submit as a job (like /jobs/submit).",
    )
    timeout_ms: int | None = Field(
        None, gt=0, le=MAX_TIMEOUT_MS, description="Stop the run after this many milliseconds."
    )
    credentials: Credentials | None = Field(
        None, max_length=MAX_CREDENTIALS, description=CREDENTIALS_DESCRIPTION, repr=False
    )
    version: str | None = Field(
        None, min_length=1, max_length=MAX_VERSION_CHARS, description=VERSION_DESCRIPTION
    )


class ExecuteToolResponse(BaseModel):
    tool: str
    status: Literal["success"]
    result: Any = Field(json_schema_extra=ANY_JSON)
    execution_time_ms: int
    version: str | None = Field(
        None, description="The version of the tool that ran."
    )  # after the seed's fields


class JobAccepted(JobView):
    """The new job (status queued), or the finished job when wait_seconds let it end in time."""


class CancelResponse(JobView):
    message: str


class JobEvent(BaseModel):
    """One Server-Sent Event of GET /jobs/{job_id}/stream (keep-alive comments aside)."""

    media_type: ClassVar[str] = "text/event-stream"

    id: str = Field(description="1 for the job as the stream opened, then 2, 3, ... for each change.")
    data: str = Field(
        description="The job, as JSON: the same object GET /jobs/{job_id} answers.",
        json_schema_extra={
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/JobView"},
        },
    )


class ToolsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    q: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Search: answer the tools that best fit these words (BM25 over name, title, "
        "description and argument names), best first, each with its score. Left out: every tool.",
    )
    limit: int = Field(10, ge=1, le=50, description="With q: how many tools to answer at most.")


class RankedTool(ToolView):
    score: float | None = Field(
        None, description="With q: how well the tool fits the query (BM25); higher is better."
    )


class RankedToolList(BaseModel):
    tools: list[RankedTool]


class Health(BaseModel):
    status: Literal["ok", "unavailable"] = Field(
        description="unavailable (with 503): the database file was deleted or replaced; restart Conveyor."
    )
    version: str
    tools: int
    queue_depth: int
    reason: str | None = None


class RegisterWebhookBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://example.com/hooks/conveyor", "events": ["job.completed", "job.failed"]}
            ]
        },
    )

    url: str = Field(
        min_length=1,
        max_length=2000,
        description="The http(s) URL each event is POSTed to. Loopback and private addresses are "
        "refused unless the server allows them.",
        json_schema_extra={"format": "uri"},
    )
    events: list[WebhookEvent] | None = Field(
        None, min_length=1, description="The events to send; every one of them when left out."
    )


class WebhookView(BaseModel):
    webhook_id: str
    url: str
    events: list[WebhookEvent]
    created_at: int = Field(description="Unix time, seconds.")


class WebhookCreated(WebhookView):
    secret: str = Field(
        description="Signs this webhook's deliveries (X-Conveyor-Signature: sha256=<hex HMAC of the "
        "body>). Shown only in this answer."
    )


class WebhookList(BaseModel):
    webhooks: list[WebhookView]


class WebhookDeleted(BaseModel):
    webhook_id: str
    deleted: Literal[True]


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


class ExecuteToolError(ErrorBody):
    """POST /execute_tool's failures. Once the tool was looked up, "tool" and "status" ("error" or
    "timeout") stand next to the error, as in the seed API; earlier failures carry the error alone."""

    tool: str | None = None
    status: Literal["error", "timeout"] | None = None
