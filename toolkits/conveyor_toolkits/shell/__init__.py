"""The ``shell`` toolkit: run an allowed command, as a job or directly, watching its output.

Off unless loaded (``conveyor_toolkits.shell:toolkit``) and configured in
``[toolkit_settings.shell]``: which commands (by name or absolute path, with optional argument
patterns), in which directories, with which environment. A command runs as an argv, never
through a shell. Its output arrives as progress, line by line; the result keeps the last lines
of each stream and the exit code. A nonzero exit is a result (``ok: false``), not an error: a
failing test suite's output is what the caller wants to read. Only admin keys may call it over
HTTP unless ``allowed_roles`` says otherwise.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

import anyio
from pydantic import BaseModel, Field

from conveyor import ToolContext, Toolkit
from conveyor.credentials import redact
from conveyor.errors import ExecutionTimeout
from conveyor_toolkits.shell.output import StreamTail
from conveyor_toolkits.shell.policy import Invocation, prepare
from conveyor_toolkits.shell.process import run_command
from conveyor_toolkits.shell.settings import CommandRule, ShellSettings

__all__ = ["CommandRule", "ShellResult", "ShellSettings", "toolkit"]

TAIL_IN_ERRORS = 20  # lines of each stream a timeout's error carries

toolkit = Toolkit(
    "shell",
    description="Run allowed commands (builds, test suites, exports) with their output as progress.",
    version="1.0.0",
    settings=ShellSettings,
    allowed_roles=("admin",),
)


class ShellResult(BaseModel):
    command: list[str] = Field(description="what ran: the executable's path, then the arguments")
    exit_code: int = Field(description="the command's exit status; negative: the signal that ended it")
    ok: bool = Field(description="whether the exit status was 0")
    stdout: str = Field(description="the last lines of standard output")
    stderr: str = Field(description="the last lines of standard error")
    stdout_truncated: bool = Field(description="earlier lines of stdout were left out")
    stderr_truncated: bool = Field(description="earlier lines of stderr were left out")
    stdout_bytes: int = Field(description="how many bytes the command wrote to stdout in all")
    stderr_bytes: int = Field(description="how many bytes the command wrote to stderr in all")
    duration_ms: int


@toolkit.tool(title="Run a command", destructive=True, open_world=True)
async def run(
    ctx: ToolContext,
    command: Annotated[
        str,
        Field(min_length=1, max_length=4096, description="An allowed command: its name or absolute path."),
    ],
    args: Annotated[
        tuple[str, ...],
        Field(
            max_length=10_000,
            description="Its arguments, each passed as it is (no shell: no globs, pipes or $VARS).",
        ),
    ] = (),
    cwd: Annotated[
        str | None,
        Field(
            max_length=4096,
            description="Where to run: inside an allowed root; relative paths start at the first.",
        ),
    ] = None,
    env: Annotated[
        dict[str, str] | None, Field(description="Environment variables to set (only the allowed names).")
    ] = None,
    timeout_s: Annotated[
        float | None,
        Field(
            gt=0,
            le=30 * 24 * 3600,
            description="Stop the command after this many seconds (within the server's maximum).",
        ),
    ] = None,
    stdin: Annotated[str | None, Field(description="Text to write to its standard input.")] = None,
) -> ShellResult:
    """Run an allowed command (a build, a test suite, an export) and return its exit code with
    the last lines of its output; each line arrives as a progress message while it runs. A
    nonzero exit code is a result (ok: false), not an error. Submit it with jobs_submit for
    anything slow; cancelling stops the command and every process it started."""
    settings = ctx.settings if isinstance(ctx.settings, ShellSettings) else ShellSettings()
    invocation = prepare(
        settings,
        command=command,
        args=args,
        cwd=cwd,
        env=env or {},
        timeout_s=timeout_s,
        stdin=stdin,
        credentials=ctx.credentials,
        server_env=os.environ,
    )
    secrets = [value for value in ctx.credentials.values() if value]

    def tail(name: str) -> StreamTail:
        return StreamTail(
            name,
            max_lines=settings.tail_lines,
            max_bytes=settings.max_output_bytes,
            max_line_chars=settings.max_line_chars,
            clean=lambda line: str(redact(line, secrets)),
        )

    out, err = tail("stdout"), tail("stderr")
    lines = 0

    def on_line(stream: StreamTail, line: str) -> None:
        nonlocal lines
        lines += 1
        ctx.report_progress(lines, None, line if stream is out else f"stderr: {line}")

    started = time.monotonic()
    with anyio.move_on_after(invocation.timeout_s) as deadline:
        code = await run_command(invocation, out, err, on_line, grace_s=settings.kill_grace_s)
    if deadline.cancelled_caught:
        raise _timed_out(invocation, settings, out, err)
    ctx.log("command ended", command=invocation.argv[0], exit_code=code)
    return ShellResult(
        command=list(invocation.argv),
        exit_code=code,
        ok=code == 0,
        stdout=out.text,
        stderr=err.text,
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        stdout_bytes=out.total_bytes,
        stderr_bytes=err.total_bytes,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def _timed_out(
    invocation: Invocation, settings: ShellSettings, out: StreamTail, err: StreamTail
) -> ExecutionTimeout:
    return ExecutionTimeout(
        f"{os.path.basename(invocation.argv[0])} ran longer than {invocation.timeout_s:g} s and was stopped",
        timeout_ms=int(invocation.timeout_s * 1000),
        details={"stdout_tail": out.last(TAIL_IN_ERRORS), "stderr_tail": err.last(TAIL_IN_ERRORS)},
        suggested_fix=f"Give a larger timeout_s (at most {settings.max_timeout_s:g}), and the job a "
        "timeout_ms to match.",
    )
