"""MCP tasks in both protocol eras, served from the job store: every task is a job.

2025-11-25 (``tasks`` capability): the client asks for a task with ``params.task`` on
``tools/call``; ``tasks/get``, ``tasks/result``, ``tasks/list`` and ``tasks/cancel`` follow it.
2026-07-28 (extension ``io.modelcontextprotocol/tasks``): a client that declares the
extension lets the server decide per call; long-running tools answer ``resultType: "task"``,
and ``tasks/get`` inlines the result. The SDK checks a handler's ``tools/call`` result
against ``CallToolResult``, so task creation happens in server middleware, whose results
it passes through; the same middleware adds what the SDK does not advertise.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Callable
from typing import Any

import anyio
from mcp.server import Server
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND, MISSING_REQUIRED_CLIENT_CAPABILITY, RequestParams
from pydantic import ConfigDict, Field

from conveyor.auth import Principal
from conveyor.errors import CannotCancelRunning, ConveyorError, JobNotFound
from conveyor.jobs.models import Job
from conveyor.mcp_server.call_meta import requested_version
from conveyor.mcp_server.eras import era_of
from conveyor.mcp_server.meta_tools import META_TOOLS
from conveyor.mcp_server.task_notifier import TaskNotifier
from conveyor.mcp_server.task_views import (
    IMMEDIATE_RESPONSE,
    RELATED_TASK,
    call_result,
    mcp_progress,
    task_2025,
    task_2026,
)
from conveyor.runtime import Runtime
from conveyor.schemas import MAX_OFFSET
from conveyor.toolkit import Tool

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TASK_CAPABILITY: dict[str, Any] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
LIST_PAGE = 50
MAX_CURSOR_DIGITS = 12
RESULT_WAIT_SLICE_S = 3600.0


class TaskIdParams(RequestParams):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    task_id: str = Field(alias="taskId")


class TaskListParams(RequestParams):
    model_config = ConfigDict(extra="allow")

    cursor: str | None = None


class Tasks:
    def __init__(
        self,
        runtime: Runtime,
        resolve: Callable[[ServerRequestContext[Any, Any]], Principal],
        notifier: TaskNotifier,
    ) -> None:
        self.runtime = runtime
        self.resolve = resolve
        self.notifier = notifier
        settings = runtime.settings
        self.poll_interval_ms = settings.task_poll_interval_ms
        self.max_ttl_ms = int(settings.retention_hours * 3600 * 1000)

    def install(self, server: Server[Any]) -> None:
        server.middleware.append(self.middleware)
        server.add_request_handler("tasks/get", TaskIdParams, self.get)
        server.add_request_handler("tasks/result", TaskIdParams, self.result)
        server.add_request_handler("tasks/list", TaskListParams, self.list)
        server.add_request_handler("tasks/cancel", TaskIdParams, self.cancel)
        server.add_request_handler("tasks/update", TaskIdParams, self.update)
        server.extensions = {**(server.extensions or {}), TASKS_EXTENSION: {}}

    # -- middleware: task creation, and what the SDK does not advertise -----------------------

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call":
            return await self._tools_call(ctx, call_next)
        result = await call_next(ctx)
        if ctx.method == "initialize" and isinstance(result, dict):
            capabilities = result.setdefault("capabilities", {})
            capabilities["tasks"] = TASK_CAPABILITY
        elif ctx.method == "tools/list" and isinstance(result, dict) and era_of(ctx) == "2025":
            for tool in result.get("tools", []):
                tool["execution"] = {"taskSupport": self._task_support(tool.get("name"))}
        return result

    def _task_support(self, name: str | None) -> str:
        tool = self._tool(name)
        return "forbidden" if tool is None else tool.task_support

    def _tool(self, name: Any) -> Tool | None:
        registry = self.runtime.registry
        return registry.get(name) if isinstance(name, str) and name in registry else None

    async def _tools_call(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = dict(ctx.params or {})
        tool = self._tool(params.get("name"))
        if era_of(ctx) == "2025":
            task = params.get("task")
            if task is None:
                if tool is not None and tool.task_support == "required":
                    raise MCPError(
                        METHOD_NOT_FOUND, f"Tool {tool.wire_name} must be called as a task", tool.wire_name
                    )
                return await call_next(ctx)
            if tool is None and params.get("name") not in META_TOOLS:  # unknown: as for a plain call
                raise MCPError(
                    INVALID_PARAMS, f"Tool {params.get('name')!r} does not exist", params.get("name")
                )
            if tool is None or tool.task_support == "forbidden":
                raise MCPError(
                    METHOD_NOT_FOUND, f"Tool {params.get('name')!r} cannot run as a task", params.get("name")
                )
            ttl = task.get("ttl") if isinstance(task, dict) else None
            job = await self._create(ctx, tool, params, ttl)
            self.notifier.watch(job.job_id, ctx.session, _progress_token(ctx))
            view = task_2025(job, poll_interval_ms=self.poll_interval_ms)
            note = f"Started as task {job.job_id}; poll tasks/get, then tasks/result."
            return {"task": view, "_meta": {IMMEDIATE_RESPONSE: note}}
        declared = _declares_extension(ctx)
        if tool is not None and tool.task_support == "required" and not declared:
            raise MCPError(
                MISSING_REQUIRED_CLIENT_CAPABILITY,
                f"Tool {tool.wire_name} runs only as a task: declare the {TASKS_EXTENSION} extension",
                {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}},
            )
        if tool is None or not declared or tool.task_support == "forbidden":
            return await call_next(ctx)
        job = await self._create(ctx, tool, params, None)
        if not await self._runs_long(tool):  # it may well end in time: answer it inline if it does
            job = await self._within_threshold(ctx, job)
            if job.status.terminal:
                return {
                    **call_result(job, structured=tool.structured),
                    "resultType": "complete",
                }
        view = task_2026(job, poll_interval_ms=self.poll_interval_ms, structured=False, detailed=False)
        return {"resultType": "task", **view}

    async def _runs_long(self, tool: Tool) -> bool:
        """Required tools, and optional ones that usually take longer than the threshold, become
        tasks at once: there is no point waiting for them."""
        if tool.task_support == "required":
            return True
        estimate = await self.runtime.engine.estimate(tool.wire_name)
        return estimate is not None and estimate >= self.runtime.settings.task_inline_threshold_ms

    async def _within_threshold(self, ctx: ServerRequestContext[Any, Any], job: Job) -> Job:
        """The job once it ends, or as it is when the threshold passes (then it goes on as a task).

        Its progress goes to the caller meanwhile, as a direct call's would; if the caller gives up
        before an answer, nobody can learn the task's id, so the job is canceled.
        """
        token = _progress_token(ctx)
        deadline = anyio.current_time() + self.runtime.settings.task_inline_threshold_ms / 1000
        try:
            with self.runtime.events.subscribe(job.job_id) as updates:
                job = await self.runtime.engine.get(job.job_id, owner=job.owner)
                last = job.progress
                with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                    while not job.status.terminal:
                        job = await updates.next()
                        if token is not None and job.progress and job.progress != last:
                            last = job.progress
                            await _report(ctx, job.progress)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), contextlib.suppress(ConveyorError):
                await self.runtime.engine.cancel(job.job_id, owner=job.owner)
            raise
        return job if job.status.terminal else await self.runtime.engine.get(job.job_id, owner=job.owner)

    async def _create(
        self, ctx: ServerRequestContext[Any, Any], tool: Tool, params: dict[str, Any], ttl: Any
    ) -> Job:
        principal = self.resolve(ctx)
        ttl_ms = self._ttl_ms(ttl)
        try:
            # Committed before the reply: a tasks/get for the returned id always resolves.
            return await self.runtime.engine.submit(
                tool.wire_name,
                params.get("arguments") or {},
                owner=principal.id,
                max_concurrent=self.runtime.limiter.max_concurrent_jobs(principal),
                kind="task",
                ttl_ms=ttl_ms,
                caller=principal,
                version=requested_version(params.get("_meta")),
            )
        except ConveyorError as exc:
            raise MCPError(INVALID_PARAMS, exc.message, exc.to_payload()) from None

    def _ttl_ms(self, requested: Any) -> int:
        """The client's ttl, within the retention period; anything but a positive number is ignored."""
        if isinstance(requested, bool) or not isinstance(requested, int | float) or not requested > 0:
            return self.max_ttl_ms
        return int(min(requested, self.max_ttl_ms))  # min() first: an infinite ttl is no int

    # -- tasks/* ---------------------------------------------------------------------------------

    async def get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        job = await self._job(ctx, params.task_id)
        if era_of(ctx) == "2025":
            return task_2025(job, poll_interval_ms=self.poll_interval_ms)
        return task_2026(
            job, poll_interval_ms=self.poll_interval_ms, structured=self._structured(job), detailed=True
        )

    async def result(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        _only_2025(ctx, "tasks/result")
        job = await self._job(ctx, params.task_id)
        while not job.status.terminal:  # the spec: block until the task ends
            job = await self.runtime.engine.wait(job.job_id, owner=job.owner, timeout_s=RESULT_WAIT_SLICE_S)
        answer = call_result(job, structured=self._structured(job))
        answer["_meta"] = {**answer.get("_meta", {}), RELATED_TASK: {"taskId": job.job_id}}
        return answer

    async def list(self, ctx: ServerRequestContext[Any, Any], params: TaskListParams) -> dict[str, Any]:
        _only_2025(ctx, "tasks/list")
        offset = _decode_cursor(params.cursor)
        jobs, total = await self.runtime.engine.list(
            owner=self.resolve(ctx).id, kind="task", limit=LIST_PAGE, offset=offset
        )
        page: dict[str, Any] = {
            "tasks": [task_2025(job, poll_interval_ms=self.poll_interval_ms) for job in jobs]
        }
        if offset + len(jobs) < total:
            page["nextCursor"] = _encode_cursor(offset + len(jobs))
        return page

    async def cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        if era_of(ctx) == "2026":
            # The extension's cancel is an acknowledgement; cancellation itself is cooperative.
            with contextlib.suppress(ConveyorError):
                await self.runtime.engine.cancel(params.task_id, owner=self.resolve(ctx).id)
            return {}
        job = await self._job(ctx, params.task_id)
        if job.status.terminal:
            raise MCPError(
                INVALID_PARAMS, f"Task {job.job_id} is already {job.status}", {"status": str(job.status)}
            )
        try:
            job = await self.runtime.engine.cancel(job.job_id, owner=job.owner)
        except CannotCancelRunning as exc:
            raise MCPError(INVALID_PARAMS, exc.message, exc.to_payload()) from None
        return task_2025(job, poll_interval_ms=self.poll_interval_ms)

    async def update(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        if era_of(ctx) == "2025":
            raise MCPError(METHOD_NOT_FOUND, "Method not found", "tasks/update")
        return {}  # no Conveyor tool asks for input, so there is never an outstanding request to answer

    async def _job(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> Job:
        try:
            # Tasks are bound to the caller: even an admin sees only their own through tasks/*.
            return await self.runtime.engine.get(task_id, owner=self.resolve(ctx).id)
        except JobNotFound:
            raise MCPError(INVALID_PARAMS, f"Failed to retrieve task: task {task_id} not found") from None

    def _structured(self, job: Job) -> bool:
        tool = self._tool(job.tool)
        return tool is not None and tool.structured


def _only_2025(ctx: ServerRequestContext[Any, Any], method: str) -> None:
    if era_of(ctx) != "2025":
        raise MCPError(METHOD_NOT_FOUND, "Method not found", method)


def _declares_extension(ctx: ServerRequestContext[Any, Any]) -> bool:
    capabilities = ctx.session.client_capabilities
    declared = capabilities.extensions if capabilities is not None else None
    return bool(declared) and TASKS_EXTENSION in declared  # type: ignore[operator]


def _progress_token(ctx: ServerRequestContext[Any, Any]) -> str | int | None:
    meta = ctx.meta or {}
    token = meta.get("progress_token", meta.get("progressToken"))
    return token if isinstance(token, str | int) else None


async def _report(ctx: ServerRequestContext[Any, Any], progress: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):  # a client that went away: the job goes on regardless
        await ctx.session.report_progress(*mcp_progress(progress))


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    """The offset a cursor of ours holds; anything else (forged, too long, out of range) is -32602."""
    if cursor is None:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii").partition(":")
    except (binascii.Error, UnicodeError, ValueError):
        kind, value = "", ""
    if kind == "o" and value.isascii() and value.isdigit() and len(value) <= MAX_CURSOR_DIGITS:
        offset = int(value)
        if offset <= MAX_OFFSET:
            return offset
    raise MCPError(INVALID_PARAMS, "Invalid cursor: pass back a nextCursor as tasks/list gave it", None)
