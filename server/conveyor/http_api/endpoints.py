"""The REST endpoints, each declared once: route, access, rate-limit cost, and the models
that both validate the request and describe it in OpenAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

import conveyor
from conveyor import job_requests, strict_json
from conveyor.arguments import invalid_arguments
from conveyor.auth import Principal
from conveyor.errors import ConveyorError, InvalidArguments, PayloadTooLarge
from conveyor.http_api.models import (
    CancelResponse,
    ErrorBody,
    ExecuteToolError,
    ExecuteToolRequest,
    ExecuteToolResponse,
    Health,
    JobAccepted,
    RankedToolList,
    RegisterWebhookBody,
    ToolsQuery,
    WebhookCreated,
    WebhookDeleted,
    WebhookList,
)
from conveyor.http_api.responses import JSONResponse, error_response, request_id_of
from conveyor.runtime import Runtime
from conveyor.schemas import (
    JobList,
    JobStatusRequest,
    JobView,
    ListJobsRequest,
    SubmitJobRequest,
    ToolView,
)
from conveyor.settings import Settings

Access = Literal["public", "user", "admin"]
BODY_FIX = "Send the request body as one JSON object, as /openapi.json describes this endpoint's."
Handler = Callable[[Request, Runtime, Principal | None], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    access: Access = "user"
    counted: bool = False  # counts against the caller's rate limit (an execution)
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | str] = field(default_factory=dict)  # str: a non-JSON media type
    errors: tuple[int, ...] = ()
    error_body: type[BaseModel] = ErrorBody  # the body of every status in errors


async def read_body(request: Request, model: type[M], settings: Settings) -> M:
    limit = settings.max_request_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is over the {limit} byte limit", limit_bytes=limit)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is over the {limit} byte limit", limit_bytes=limit)
    try:
        data = strict_json.loads(body or b"null", max_depth=settings.max_json_depth)
    except strict_json.NotStrictJson as exc:
        location = exc.location
        raise InvalidArguments(
            f"request body is not strict JSON: {exc}", argument=location or "body", suggested_fix=BODY_FIX
        ) from None
    if not isinstance(data, dict):
        raise InvalidArguments("request body must be a JSON object", argument="body", suggested_fix=BODY_FIX)
    try:
        # Strict: a number is a JSON number, as the OpenAPI document says; no "5", no true.
        return model.model_validate_json(bytes(body), strict=True)
    except ValidationError as exc:
        raise invalid_arguments(exc) from None


def read_query(request: Request, model: type[M]) -> M:
    """The query's values (lax: they are text, so "5" is how a number arrives) and the path's,
    for the fields the model has; other query parameters (a cache buster) are no business of ours."""
    values = {name: value for name, value in request.query_params.items() if name in model.model_fields}
    values.update(request.path_params)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise invalid_arguments(exc) from None


def _principal(principal: Principal | None) -> Principal:
    assert principal is not None, "the access middleware authenticates every non-public endpoint"
    return principal


# -- handlers ---------------------------------------------------------------------------------


async def execute_tool(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    body = await read_body(request, ExecuteToolRequest, runtime.settings)
    if body.mode == "async":
        job = SubmitJobRequest.model_validate(
            {
                "tool": body.tool,
                "arguments": body.arguments,
                "timeout_ms": body.timeout_ms,
                "credentials": body.credentials,
                "version": body.version,
            }
        )
        return await _submit(runtime, _principal(principal), job)
    try:
        with runtime.limiter.direct_run(_principal(principal)):
            outcome = await runtime.executor.run(
                body.tool,
                body.arguments,
                timeout_ms=body.timeout_ms,
                credentials=body.credentials,
                caller=_principal(principal),
                version=body.version,
            )
    except ConveyorError as exc:
        status = "timeout" if exc.http_status == 504 else "error"
        return error_response(exc, request_id_of(request), tool=body.tool, status=status)
    answer = {
        "tool": outcome.tool,
        "status": "success",
        "result": outcome.result,
        "execution_time_ms": outcome.execution_time_ms,
        "version": outcome.version,  # after the seed's fields
    }
    return JSONResponse(answer)


async def submit_job(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    body = await read_body(request, SubmitJobRequest, runtime.settings)
    return await _submit(runtime, _principal(principal), body)


async def _submit(runtime: Runtime, principal: Principal, body: SubmitJobRequest) -> Response:
    job = await job_requests.submit_job(runtime, principal, body)
    return JSONResponse(JobView.of(job), status_code=200 if job.status.terminal else 202)


async def get_job(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    query = read_query(request, JobStatusRequest)
    wait = query.wait_seconds or 0.0  # REST answers at once unless asked to wait, as the seed API does
    job = await job_requests.job_status(runtime, _principal(principal), query.job_id, wait)
    return JSONResponse(JobView.of(job))


async def cancel_job(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    # Owner only: even an admin cancels only their own jobs (the seed API's rule).
    job, message = await job_requests.cancel_job(
        runtime, _principal(principal), request.path_params["job_id"]
    )
    return JSONResponse({**JobView.of(job), "message": message})


async def list_jobs(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    query = read_query(request, ListJobsRequest)
    jobs, total = await runtime.engine.list(
        owner=_principal(principal).visible_owner,
        status=query.status,
        tool=query.tool,
        limit=query.limit,
        offset=query.offset,
    )
    page = {"limit": query.limit, "offset": query.offset, "total": total}
    return JSONResponse({"jobs": [JobView.of(job) for job in jobs], "pagination": page})


async def register_webhook(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    body = await read_body(request, RegisterWebhookBody, runtime.settings)
    webhook, secret = await runtime.webhooks.register(_principal(principal).id, body.url, body.events)
    return JSONResponse({**webhook.to_public(), "secret": secret}, status_code=201)


async def list_webhooks(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    # Even an admin's list is their own: a registration's URL is its owner's business.
    webhooks = await runtime.webhooks.list(_principal(principal).id)
    return JSONResponse({"webhooks": [webhook.to_public() for webhook in webhooks]})


async def delete_webhook(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    webhook_id = request.path_params["webhook_id"]
    await runtime.webhooks.delete(webhook_id, owner=_principal(principal).id)
    return JSONResponse({"webhook_id": webhook_id, "deleted": True})


async def list_tools(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    query = read_query(request, ToolsQuery)
    if query.q is None:
        return JSONResponse({"tools": [ToolView.of(tool) for tool in runtime.registry]})
    found = runtime.registry.search(query.q, query.limit)
    return JSONResponse({"tools": [{**ToolView.of(tool), "score": round(score, 4)} for tool, score in found]})


async def health(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    store = runtime.engine.store
    depth = await store.queue_depth()  # public: only an index lookup, never a scan
    answer: dict[str, Any] = {
        "status": "ok" if store.fault is None else "unavailable",
        "version": conveyor.__version__,
        "tools": len(runtime.registry),
        "queue_depth": depth,
    }
    if store.fault is not None:  # the database file went away: nothing is acknowledged any more
        answer["reason"] = f"the database file was {store.fault}; restart Conveyor"
        return JSONResponse(answer, status_code=503)
    return JSONResponse(answer)


JOB_ERRORS = (400, 401, 404, 429)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/execute_tool",
        execute_tool,
        "Run a tool now and answer with its result (admin)",
        access="admin",
        counted=True,
        body=ExecuteToolRequest,
        responses={200: ExecuteToolResponse, 202: JobAccepted},
        errors=(400, 401, 403, 404, 413, 429, 500, 503, 504),
        error_body=ExecuteToolError,
    ),
    Endpoint(
        "POST",
        "/jobs/submit",
        submit_job,
        "Submit a tool run as a background job",
        counted=True,
        body=SubmitJobRequest,
        responses={202: JobAccepted, 200: JobAccepted},
        errors=(400, 401, 404, 409, 413, 429, 503),
    ),
    Endpoint(
        "GET",
        "/jobs",
        list_jobs,
        "List your jobs, newest first",
        query=ListJobsRequest,
        responses={200: JobList},
        errors=(400, 401, 429),
    ),
    Endpoint(
        "GET",
        "/jobs/{job_id}",
        get_job,
        "Poll a job's status and result",
        query=JobStatusRequest,
        responses={200: JobView},
        errors=JOB_ERRORS,
    ),
    Endpoint(
        "DELETE",
        "/jobs/{job_id}",
        cancel_job,
        "Cancel a job (owner only)",
        responses={200: CancelResponse},
        errors=(*JOB_ERRORS, 403, 503),
    ),
    Endpoint(
        "POST",
        "/webhooks",
        register_webhook,
        "Register a webhook: your jobs' ends are POSTed to its URL, signed",
        body=RegisterWebhookBody,
        responses={201: WebhookCreated},
        errors=(400, 401, 413, 429, 503),
    ),
    Endpoint(
        "GET",
        "/webhooks",
        list_webhooks,
        "List your webhooks (never their secrets)",
        responses={200: WebhookList},
        errors=(401, 429),
    ),
    Endpoint(
        "DELETE",
        "/webhooks/{webhook_id}",
        delete_webhook,
        "Unregister a webhook (owner only); its pending deliveries are dropped",
        responses={200: WebhookDeleted},
        errors=(401, 404, 429, 503),
    ),
    Endpoint(
        "GET",
        "/tools",
        list_tools,
        "Discover tools: names, descriptions, schemas, versions; with q, search them",
        query=ToolsQuery,
        responses={200: RankedToolList},
        errors=(400, 401, 429),
    ),
    Endpoint(
        "GET",
        "/healthz",
        health,
        "Liveness and queue depth",
        access="public",
        responses={200: Health, 503: Health},
    ),
)
