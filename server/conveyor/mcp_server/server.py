"""Builds the SDK's low-level ``Server`` from the registry, the executor and the engine."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import ValidationError

import conveyor
from conveyor.auth import LOCAL_USER, Principal
from conveyor.errors import ConveyorError, InternalError, ToolNotFound
from conveyor.jobs.models import Job
from conveyor.mcp_server.call_meta import VERSION_META, requested_version
from conveyor.mcp_server.eras import era_of
from conveyor.mcp_server.meta_tools import META_TOOLS
from conveyor.mcp_server.resources import JobResources
from conveyor.mcp_server.results import error_result, outcome_result
from conveyor.mcp_server.task_notifier import TaskNotifier
from conveyor.mcp_server.tasks import Tasks
from conveyor.mcp_server.tool_list import ToolList
from conveyor.progress import Progress, ProgressSink
from conveyor.registry import Registry
from conveyor.runtime import Runtime
from conveyor.schemas import ToolView
from conveyor.toolkit import Tool

INSTRUCTIONS = """\
Conveyor runs tools now or as durable background jobs.
- Quick tools: call them directly.
- Anything that may take more than a few seconds: call jobs_submit with the tool's name and
  arguments. It answers at once with the job and its job_id.
- Then call jobs_status with that job_id. It waits a few seconds for the job, then answers its
  status, progress, and its result once it has finished. While the status is queued or running,
  call jobs_status again; stop when it is completed, failed, canceled or timeout.
- If a call fails or times out, make the same call again: jobs_submit answers your identical job
  that is still queued or running instead of starting a second one.
- jobs_cancel stops a job; jobs_list shows your jobs. Jobs survive restarts, so a job_id stays
  valid across conversations.
- tools_search finds tools by what they do, including tools that tools/list leaves out; call
  them by the name it answers."""

logger = logging.getLogger("conveyor.mcp")

PrincipalResolver = Callable[[ServerRequestContext[Any, Any]], Principal]


class ConveyorServer(Server[Any]):
    """The SDK's low-level server, saying (in the 2025-11-25 handshake) that its tool list can change."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


def define_tools(registry: Registry, listed: Collection[str] | None = None) -> list[types.Tool]:
    """What ``tools/list`` shows: the tools of the ``listed`` toolkits (all when None), and the
    meta-tools always. The others are still callable, and ``tools_search`` finds them."""
    shown = [tool for tool in registry if listed is None or tool.toolkit in listed]
    return [mcp_tool(tool) for tool in shown] + [meta.as_mcp_tool() for meta in META_TOOLS.values()]


def build_server(runtime: Runtime, *, principal_of: PrincipalResolver | None = None) -> Server[Any]:
    resolve = principal_of or (lambda _ctx: LOCAL_USER)
    resources = JobResources(runtime, resolve)
    listed = runtime.settings.tools_listed
    tool_list = ToolList(runtime.registry, define_tools, resources.bus, listed=listed)
    calls = ToolCalls(runtime)

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        if era_of(ctx) == "2025":
            tool_list.listed_by(ctx.session)
        return types.ListToolsResult(tools=tool_list.tools())

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        async def send_progress(progress: Progress) -> None:
            await ctx.session.report_progress(progress.current, progress.total, progress.message)

        return await calls.call(
            resolve(ctx), params.name, params.arguments, params.meta, _request_id(ctx), send_progress
        )

    async def load_job(job_id: str) -> Job:
        return await runtime.engine.get(job_id, owner=None)

    notifier = TaskNotifier(runtime.events, load_job, poll_interval_ms=runtime.settings.task_poll_interval_ms)
    server: Server[Any] = ConveyorServer(
        "conveyor",
        version=conveyor.__version__,
        title="Conveyor",
        description="Run tools now or as durable background jobs.",
        instructions=INSTRUCTIONS,
        lifespan=lambda _server: _background(notifier, resources, tool_list),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=tool_list.input_schema,
    )
    server.middleware.append(_coded_errors)  # outermost of ours: whatever the handlers below raise
    Tasks(runtime, resolve, notifier).install(server)
    resources.install(server)
    return server


@asynccontextmanager
async def _background(
    notifier: TaskNotifier, resources: JobResources, tool_list: ToolList
) -> AsyncIterator[None]:
    """The server's lifespan owns what outlives a request: task notifications, resource watches,
    and telling clients that the tools changed."""
    async with notifier.running(), resources.running(), tool_list.announcing():
        yield


class ToolCalls:
    """``tools/call`` apart from its transport: a meta-tool, or a tool run directly, with the
    errors a caller gets. The SDK's handler calls it, and so does the 2026 plain HTTP answer
    (``http_api/plain_tool_call.py``): one way for every direct call."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def call(
        self,
        principal: Principal,
        name: str,
        arguments: dict[str, Any] | None,
        meta: Mapping[str, Any] | None,
        request_id: str,
        progress: ProgressSink | None,
    ) -> types.CallToolResult:
        """``progress``: where the run's progress goes (None: the caller asked for none)."""
        runtime = self.runtime
        meta_tool = META_TOOLS.get(name)
        try:
            if meta_tool is not None:
                return await meta_tool.handler(runtime, principal, meta_tool.parse(arguments))
            with runtime.limiter.direct_run(principal):
                version = requested_version(meta)
                tool = runtime.registry.get(name, version)
                outcome = await runtime.executor.run(
                    tool.wire_name, arguments, progress=progress, caller=principal, version=version
                )
                return outcome_result(outcome, structured=tool.structured)
        except ToolNotFound as exc:
            if meta_tool is None and exc.extra.get("tool") == name:
                # An unknown tool name in tools/call is a protocol error (the spec's -32602).
                data = {**exc.to_payload(), "request_id": request_id}
                raise MCPError(code=INVALID_PARAMS, message=exc.message, data=data) from None
            return error_result(exc, request_id)
        except ConveyorError as exc:
            return error_result(exc, request_id)


async def _coded_errors(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    with coding_errors(_request_id(ctx)):
        return await call_next(ctx)


@contextmanager
def coding_errors(request_id: str) -> Iterator[None]:
    """Every error a client sees is coded: a Conveyor error keeps its code in ``data``, and a bug
    is INTERNAL_ERROR with a request id to find it in the log (the SDK would answer code 0 with
    the exception's text). JSON-RPC errors pass as they are (the SDK answers a ValidationError
    as invalid params)."""
    try:
        yield
    except (MCPError, ValidationError):
        raise
    except ConveyorError as exc:
        code = INVALID_PARAMS if exc.http_status < 500 else INTERNAL_ERROR
        raise MCPError(code, exc.message, {**exc.to_payload(), "request_id": request_id}) from None
    except Exception:
        logger.exception(
            "MCP handler failed", extra={"action": "mcp.internal_error", "request_id": request_id}
        )
        error = InternalError()
        raise MCPError(
            INTERNAL_ERROR, error.message, {**error.to_payload(), "request_id": request_id}
        ) from None


def _request_id(ctx: ServerRequestContext[Any, Any]) -> str:
    """The JSON-RPC id names the request in client and server logs alike; in-process calls may have none."""
    return str(ctx.request_id) if ctx.request_id is not None else f"req_{secrets.token_hex(8)}"


def mcp_tool(tool: Tool) -> types.Tool:
    """The MCP definition of a tool, made from its one view."""
    view = ToolView.of(tool)
    hints = view["annotations"]
    return types.Tool(
        name=view["name"],
        title=view["title"],
        description=view["description"],
        input_schema=view["input_schema"],
        output_schema=view["output_schema"],
        annotations=types.ToolAnnotations(
            title=view["title"],
            read_only_hint=hints["read_only"],
            destructive_hint=hints["destructive"],
            idempotent_hint=hints["idempotent"],
            open_world_hint=hints["open_world"],
        ),
        _meta={
            VERSION_META: view["version"],
            "conveyor/cancellable": view["cancellable"],
            # Only where there is a choice: most tools have one version.
            **({"conveyor/versions": view["versions"]} if len(view["versions"]) > 1 else {}),
        },
    )
