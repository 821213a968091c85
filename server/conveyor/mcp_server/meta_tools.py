"""The meta-tools: the four jobs ones (submit, status, cancel, list) and ``tools_search``. Thin: the
engine and the registry do the work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from pydantic import BaseModel, Field, ValidationError

from conveyor import strict_json
from conveyor.arguments import invalid_arguments
from conveyor.auth import Principal
from conveyor.errors import InvalidArguments
from conveyor.job_requests import cancel_job, job_status, submit_job
from conveyor.jobs.models import Job
from conveyor.mcp_server.results import describe_job, structured_result
from conveyor.portable_schema import portable
from conveyor.runtime import Runtime
from conveyor.schemas import (
    CancelJobRequest,
    JobList,
    JobStatusRequest,
    JobView,
    ListJobsRequest,
    SearchToolsRequest,
    SubmitJobRequest,
)
from conveyor.toolkit import Tool

DESCRIPTION_IN_TEXT = (
    300  # characters of each description in the readable text; all of it is in the structure
)

Handler = Callable[[Runtime, Principal, Any], Awaitable[types.CallToolResult]]


@dataclass(frozen=True)
class MetaTool:
    name: str
    title: str
    description: str
    request: type[BaseModel]
    output: type[BaseModel]
    annotations: types.ToolAnnotations
    handler: Handler

    def parse(self, arguments: dict[str, Any] | None) -> BaseModel:
        """Strict, as a tool's arguments are: JSON types as the input schema says them."""
        arguments = arguments or {}
        try:
            strict_json.check(arguments)
        except strict_json.NotStrictJson as exc:
            raise InvalidArguments(
                f"Invalid arguments: {exc}", argument=exc.path[0] if exc.path else None
            ) from None
        try:
            return self.request.model_validate_json(strict_json.dumps(arguments), strict=True)
        except ValidationError as exc:
            raise invalid_arguments(exc) from None

    def as_mcp_tool(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            title=self.title,
            description=self.description,
            input_schema=portable(self.request.model_json_schema()),
            output_schema=portable(self.output.model_json_schema()),
            annotations=self.annotations,
        )


def job_result(job: Job) -> types.CallToolResult:
    view = JobView.of(job)
    text = describe_job(view)
    if job.reused:
        text += (
            " (This is the identical job you submitted before, still queued or running: no second one was"
            " started. To start another, pass a new idempotency_key.)"
        )
    return structured_result(view, text)


async def submit(runtime: Runtime, principal: Principal, request: SubmitJobRequest) -> types.CallToolResult:
    # Deduplicated: a model whose client timed out asks again, and must not start a second job.
    return job_result(await submit_job(runtime, principal, request, dedupe=True))


async def status(runtime: Runtime, principal: Principal, request: JobStatusRequest) -> types.CallToolResult:
    # Left out, the wait is the server's: short enough for the most impatient client it serves.
    wait = runtime.settings.job_wait_seconds if request.wait_seconds is None else request.wait_seconds
    return job_result(await job_status(runtime, principal, request.job_id, wait))


async def cancel(runtime: Runtime, principal: Principal, request: CancelJobRequest) -> types.CallToolResult:
    # Owners only, as on REST: an admin sees every job but cancels only their own.
    job, message = await cancel_job(runtime, principal, request.job_id)
    result = job_result(job)
    result.content[0].text = f"{message}. {result.content[0].text}"  # type: ignore[union-attr]
    return result


async def list_jobs(runtime: Runtime, principal: Principal, request: ListJobsRequest) -> types.CallToolResult:
    jobs, total = await runtime.engine.list(
        owner=principal.visible_owner,
        status=request.status,
        tool=request.tool,
        limit=request.limit,
        offset=request.offset,
    )
    views = [JobView.of(job) for job in jobs]
    data = {"jobs": views, "pagination": {"limit": request.limit, "offset": request.offset, "total": total}}
    lines = [f"{len(views)} of {total} jobs (offset {request.offset}):"]
    lines += [f"- {v['job_id']} {v['tool']} {v['status']}" for v in views]
    return structured_result(data, "\n".join(lines))


class FoundTool(BaseModel):
    name: str = Field(description="The tool's name: call it directly, or run it with jobs_submit.")
    title: str
    description: str
    score: float = Field(description="How well the tool fits the query (BM25); higher is better.")
    input_schema: dict[str, Any] = Field(description="The JSON Schema of the tool's arguments.")
    versions: list[str] = Field(
        description="The tool's versions, newest first (what runs unless a call or job names another)."
    )


class FoundTools(BaseModel):
    tools: list[FoundTool] = Field(
        description="Best first; tools that match no word of the query are left out."
    )


def found_tool(tool: Tool, score: float) -> dict[str, Any]:
    return {
        "name": tool.wire_name,
        "title": tool.title,
        "description": tool.description,
        "score": round(score, 4),
        "input_schema": tool.input_schema,
        "versions": list(tool.versions),
    }


async def search_tools(
    runtime: Runtime, principal: Principal, request: SearchToolsRequest
) -> types.CallToolResult:
    found = [found_tool(tool, score) for tool, score in runtime.registry.search(request.query, request.limit)]
    if not found:
        text = (
            f"No tool matches {request.query!r}. Try other words: what the tool does, or the kind of "
            "thing it works on."
        )
        return structured_result({"tools": found}, text)
    lines = [f"{len(found)} tool{'' if len(found) == 1 else 's'} for {request.query!r}, best first:"]
    for tool in found:
        description = " ".join(tool["description"].split())
        if len(description) > DESCRIPTION_IN_TEXT:
            description = description[:DESCRIPTION_IN_TEXT] + "…"
        arguments = ", ".join(tool["input_schema"].get("properties", {})) or "none"
        lines.append(f"- {tool['name']} ({tool['title']}): {description} Arguments: {arguments}.")
    lines.append(
        "Call a tool by its name (its full input schema is in the structured content), or run it "
        "with jobs_submit if it may take long."
    )
    return structured_result({"tools": found}, "\n".join(lines))


META_TOOLS: dict[str, MetaTool] = {
    tool.name: tool
    for tool in (
        MetaTool(
            name="jobs_submit",
            title="Submit a background job",
            description=(
                "Run any tool as a durable background job; use it for tools that may take longer than "
                "a few seconds. Answers at once with the job and its job_id: then call jobs_status "
                "until it has finished. Submitting the same tool and arguments again while that job "
                "is still queued or running answers the same job. If your client cannot send a "
                "free-form arguments object, pass the arguments as JSON text in arguments_json."
            ),
            request=SubmitJobRequest,
            output=JobView,
            annotations=types.ToolAnnotations(
                title="Submit a background job",
                read_only_hint=False,
                destructive_hint=False,
                open_world_hint=True,
            ),
            handler=submit,
        ),
        MetaTool(
            name="jobs_status",
            title="Get a job's status",
            description=(
                "A job's status and progress, and its result or error once it has finished. Waits a "
                "few seconds for the job to finish before answering; call it again while the job is "
                "queued or running."
            ),
            request=JobStatusRequest,
            output=JobView,
            annotations=types.ToolAnnotations(
                title="Get a job's status", read_only_hint=True, open_world_hint=False
            ),
            handler=status,
        ),
        MetaTool(
            name="jobs_cancel",
            title="Cancel a job",
            description=(
                "Cancel a queued job, or a running job of a tool that can be interrupted. "
                "Finished jobs are returned unchanged."
            ),
            request=CancelJobRequest,
            output=JobView,
            annotations=types.ToolAnnotations(
                title="Cancel a job",
                read_only_hint=False,
                destructive_hint=True,
                idempotent_hint=True,
                open_world_hint=False,
            ),
            handler=cancel,
        ),
        MetaTool(
            name="jobs_list",
            title="List jobs",
            description="Your jobs, newest first, filtered by status or tool, a page at a time.",
            request=ListJobsRequest,
            output=JobList,
            annotations=types.ToolAnnotations(title="List jobs", read_only_hint=True, open_world_hint=False),
            handler=list_jobs,
        ),
        MetaTool(
            name="tools_search",
            title="Search tools",
            description=(
                "Find tools by what they do: the tools that best fit a few words, best first, each "
                "with its name, description and input schema. Use it when no listed tool fits: "
                "tools/list may not show every tool this server can run. Call a found tool by its "
                "name, directly or with jobs_submit."
            ),
            request=SearchToolsRequest,
            output=FoundTools,
            annotations=types.ToolAnnotations(
                title="Search tools", read_only_hint=True, idempotent_hint=True, open_world_hint=False
            ),
            handler=search_tools,
        ),
    )
}
