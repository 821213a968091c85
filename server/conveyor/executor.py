"""The single path every run of a tool takes: validate → limits → timeout → run → outcome.

Direct MCP calls, REST ``execute_tool`` and jobs all come through ``Executor.run``, so
validation, size bounds, timeouts, error mapping and progress behave the same everywhere.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from conveyor import strict_json
from conveyor.auth import Principal
from conveyor.context import ToolContext
from conveyor.credentials import redact
from conveyor.errors import ConveyorError, ExecutionError, ExecutionTimeout, InvalidArguments, PayloadTooLarge
from conveyor.progress import ProgressRelay, ProgressSink
from conveyor.registry import Registry
from conveyor.secret_arguments import redacted_error, redacted_progress, redacting_logs, secret_values
from conveyor.toolkit import Tool
from conveyor.toolkit_settings import ToolkitConfig, configure

logger = logging.getLogger("conveyor.executor")


MAX_TIMEOUT_MS = 30 * 24 * 3600 * 1000  # a month: longer is a mistake, and it must fit SQL integers


@dataclass(frozen=True, slots=True)
class ExecutionLimits:
    max_argument_bytes: int = 1_000_000
    max_result_bytes: int = 5_000_000
    default_timeout_ms: int | None = 3_600_000
    max_json_depth: int = strict_json.MAX_DEPTH


class RunStopped(Exception):
    """The run's cancel scope was cancelled by the caller that gave it (see ``Executor.run``)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    tool: str
    result: Any
    execution_time_ms: int
    step_results: list[dict[str, Any]]
    version: str | None = None  # the tool's version that ran


class Executor:
    def __init__(
        self,
        registry: Registry,
        limits: ExecutionLimits | None = None,
        toolkit_configs: Mapping[str, ToolkitConfig] | None = None,
    ) -> None:
        self.registry = registry
        self.limits = limits or ExecutionLimits()
        self._states: dict[str, Any] = {}
        # Each toolkit's settings and allowed roles (``toolkit_settings.configure_all``); a toolkit
        # not given here (say, an executor made by a test) gets its defaults when first run.
        self._configs: dict[str, ToolkitConfig] = dict(toolkit_configs or {})

    def bind_toolkit_state(self, toolkit: str, state: Any) -> None:
        """What a toolkit's lifespan yielded; tools see it as ``ctx.state``."""
        self._states[toolkit] = state

    def config_of(self, tool: Tool) -> ToolkitConfig:
        config = self._configs.get(tool.toolkit)
        if config is None:
            config = self._configs[tool.toolkit] = configure(tool.toolkit_ref, None)
        return config

    def validate(
        self, tool_name: str, arguments: Any, *, caller: Principal | None = None, version: str | None = None
    ) -> tuple[Tool, dict[str, Any]]:
        """Look the tool up, check that ``caller`` may run it (None: a trusted caller, such as a
        job's run, admitted when it was submitted) and check its arguments, without running
        anything: the tool (of ``version``, else the newest), and the keyword arguments of its
        function."""
        tool = self.registry.get(tool_name, version)
        self.config_of(tool).admit(caller, tool=tool.wire_name, toolkit=tool.toolkit)
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise InvalidArguments("arguments must be a JSON object", argument=None)
        try:
            strict_json.check(arguments, max_depth=self.limits.max_json_depth)
        except strict_json.NotStrictJson as exc:
            name = exc.path[0] if exc.path else None
            raise InvalidArguments(f"Invalid arguments: {exc}", argument=name) from None
        text = strict_json.dumps(arguments)
        size = len(text.encode())
        if size > self.limits.max_argument_bytes:
            raise PayloadTooLarge(
                f"arguments are {size} bytes; the limit is {self.limits.max_argument_bytes}",
                limit_bytes=self.limits.max_argument_bytes,
            )
        try:
            return tool, tool.arguments.parse(text)
        except InvalidArguments as exc:  # a validator's message may quote a value: never a secret one
            redacted_error(exc, secret_values(arguments, tool.secret_arguments))
            raise

    def timeout_ms_for(self, tool: Tool, requested_ms: int | None) -> int | None:
        if requested_ms is not None:
            if not 0 < requested_ms <= MAX_TIMEOUT_MS:
                raise InvalidArguments(
                    f"timeout_ms must be between 1 and {MAX_TIMEOUT_MS} milliseconds", argument="timeout_ms"
                )
            return requested_ms
        return tool.timeout_ms or self.limits.default_timeout_ms

    async def run(
        self,
        tool_name: str,
        arguments: Any,
        *,
        timeout_ms: int | None = None,
        progress: ProgressSink | None = None,
        progress_interval: float = 0.0,
        job_id: str | None = None,
        trace_id: str | None = None,
        cancel: threading.Event | None = None,
        shield_uncancellable: bool = True,
        credentials: Mapping[str, str] | None = None,
        caller: Principal | None = None,
        version: str | None = None,
        scope: anyio.CancelScope | None = None,
    ) -> Outcome:
        """Run a tool once; raises a ``ConveyorError`` for every way a run can fail.

        ``scope``: a cancel scope, not yet entered, that the caller keeps to stop the run with (a
        job's engine); the run enters it, with the timeout as its deadline, and raises
        ``RunStopped`` if the caller cancels it. Without one, the run makes its own.

        ``cancel``, once set, makes the tool's ``ctx.check_cancelled()`` raise: the way to stop
        a sync tool, which no cancel scope can interrupt. A tool that is not ``cancellable`` is
        shielded from outside cancellation unless ``shield_uncancellable`` is False (a job's
        engine, which never cancels such a run but to stop the process). ``version``: the tool's
        version to run (default: the newest).

        A tool with secret arguments gets them in clear; its result, step results, progress,
        errors and the log records made while it runs have their values redacted.
        """
        tool, kwargs = self.validate(tool_name, arguments, caller=caller, version=version)
        hidden = secret_values(arguments, tool.secret_arguments)
        if hidden and progress is not None:
            progress = redacted_progress(progress, hidden)
        run = self._run_checked(
            tool,
            kwargs,
            timeout_ms=timeout_ms,
            progress=progress,
            progress_interval=progress_interval,
            job_id=job_id,
            trace_id=trace_id,
            cancel=cancel,
            shield_uncancellable=shield_uncancellable,
            credentials=credentials,
            scope=scope,
        )
        if not hidden:
            return await run
        with redacting_logs(hidden):
            try:
                outcome = await run
            except ConveyorError as exc:
                raise redacted_error(exc, hidden) from None
        return replace(
            outcome, result=redact(outcome.result, hidden), step_results=redact(outcome.step_results, hidden)
        )

    async def _run_checked(
        self,
        tool: Tool,
        kwargs: dict[str, Any],
        *,
        timeout_ms: int | None,
        progress: ProgressSink | None,
        progress_interval: float,
        job_id: str | None,
        trace_id: str | None,
        cancel: threading.Event | None,
        shield_uncancellable: bool,
        credentials: Mapping[str, str] | None,
        scope: anyio.CancelScope | None,
    ) -> Outcome:
        """``run``, once the tool is found and its arguments checked."""
        timeout = self.timeout_ms_for(tool, timeout_ms)
        # Only a tool that takes a ToolContext can report progress: the others need no relay.
        relay = (
            ProgressRelay(_safe(progress), progress_interval) if progress and tool.context_parameter else None
        )
        ctx: ToolContext | None = None
        if tool.context_parameter:  # made only for a tool that takes it
            ctx = ToolContext(
                tool=tool.wire_name,
                relay=relay,
                job_id=job_id,
                trace_id=trace_id,
                cancel=cancel,
                credentials=credentials,
            )
            ctx.state = self._states.get(tool.toolkit)
            ctx.settings = self.config_of(tool).settings
            kwargs[tool.context_parameter] = ctx
        started = time.perf_counter()
        failure: BaseException | None = None
        value: Any = None
        if relay is None:
            try:
                value = await self._call_bounded(tool, kwargs, timeout, shield_uncancellable, scope)
            except Exception as exc:
                failure = exc
        else:
            async with anyio.create_task_group() as tg:
                tg.start_soon(relay.drain_forever)
                try:
                    value = await self._call_bounded(tool, kwargs, timeout, shield_uncancellable, scope)
                except Exception as exc:  # mapped below, outside the task group
                    failure = exc
                await relay.flush()
                tg.cancel_scope.cancel()
        elapsed_ms = int((time.perf_counter() - started) * 1000)
        if isinstance(failure, RunStopped):
            raise failure
        if failure is not None:
            raise _map_failure(tool, failure)
        steps = (
            strict_json.sanitized(to_jsonable_python(ctx.step_results, fallback=repr))
            if ctx is not None and ctx.step_results
            else []
        )
        return Outcome(tool.wire_name, self._to_result(tool, value), elapsed_ms, steps, tool.version)

    async def _call_bounded(
        self,
        tool: Tool,
        kwargs: dict[str, Any],
        timeout_ms: int | None,
        shield_uncancellable: bool,
        scope: anyio.CancelScope | None,
    ) -> Any:
        # One scope for the timeout and the caller's own stop (a scope per job run is not free).
        # A non-cancellable tool is shielded from outside cancellation; its own timeout still applies.
        deadline = anyio.current_time() + timeout_ms / 1000 if timeout_ms else math.inf
        given = scope is not None
        scope = scope or anyio.CancelScope()
        scope.shield = shield_uncancellable and not tool.cancellable
        scope.deadline = deadline
        with scope:
            if tool.is_async:
                return await tool.func(**kwargs)
            return await anyio.to_thread.run_sync(
                # What cancels this wait is the timeout, a direct call's client, or the process
                # stopping: none of them can stop the thread, so the wait stops instead. (A job's
                # cancel sets ``cancel`` and waits for the tool to return or check it.)
                partial(tool.func, **kwargs),
                abandon_on_cancel=True,
            )
        if given and anyio.current_time() < deadline:
            raise RunStopped  # its caller cancelled the scope it gave
        raise ExecutionTimeout(f"Tool execution exceeded {timeout_ms}ms timeout", timeout_ms=timeout_ms)

    def _to_result(self, tool: Tool, value: Any) -> Any:
        try:
            if tool.output_model is not None and not isinstance(value, tool.output_model):
                value = tool.output_model.model_validate(value)
            result = (
                value.model_dump(mode="json") if isinstance(value, BaseModel) else to_jsonable_python(value)
            )
        except (ValidationError, PydanticSerializationError) as exc:
            logger.warning(
                "tool result rejected", extra={"action": "tool.bad_result", "tool": tool.wire_name}
            )
            raise ExecutionError(
                f"Tool {tool.wire_name} returned a result that does not match its output schema",
                details={"reason": str(exc).splitlines()[0]},
            ) from None
        try:
            strict_json.check(result, max_depth=self.limits.max_json_depth)
        except strict_json.NotStrictJson as exc:
            raise ExecutionError(
                f"Tool {tool.wire_name} returned a result that JSON cannot carry: {exc}",
                details={"reason": exc.reason, "at": exc.location},
            ) from None
        size = len(strict_json.dumps(result).encode())
        if size > self.limits.max_result_bytes:
            raise PayloadTooLarge(
                f"result is {size} bytes; the limit is {self.limits.max_result_bytes}",
                limit_bytes=self.limits.max_result_bytes,
            )
        return result


def _map_failure(tool: Tool, exc: BaseException) -> ConveyorError:
    if isinstance(exc, ConveyorError):
        return exc
    # The client gets the exception's type and text; the traceback stays in the server log.
    logger.error("tool raised", exc_info=exc, extra={"action": "tool.raised", "tool": tool.wire_name})
    return ExecutionError(
        strict_json.clean_text(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__),
        details={"exception": type(exc).__name__},
    )


def _safe(sink: ProgressSink) -> ProgressSink:
    """A failing progress consumer (say, a client that went away) must not fail the run."""

    async def guarded(progress: Any) -> None:
        try:
            await sink(progress)
        except Exception:
            logger.debug("progress delivery failed", exc_info=True, extra={"action": "progress.dropped"})

    return guarded
