"""``conveyor jobs watch``, run as a real process on a real SQLite file while a real ``conveyor worker``
process runs the jobs: bars on a pseudo-terminal, plain lines on a pipe, and the exit codes."""

from __future__ import annotations

import errno
import fcntl
import io
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from conveyor.auth import LOCAL_USER
from conveyor.jobs.models import Job, JobStatus
from conveyor.jobs_watch import Bars, Lines
from conveyor.runtime import Runtime, open_runtime
from tests.conftest import make_settings
from tests.serve_process import conveyor_worker, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


@asynccontextmanager
async def store_at(db: Path | str, tmp_path: Path) -> AsyncIterator[Runtime]:
    """The database, opened from this process to submit and wait on jobs; it runs none of them."""
    async with open_runtime(make_settings(tmp_path, db=str(db)), run_workers=False) as runtime:
        yield runtime


async def submit(runtime: Runtime, tool: str, arguments: dict[str, Any]) -> Job:
    return await runtime.engine.submit(tool, arguments, owner=LOCAL_USER.id)


def watch_command(db: Path | str, *job_ids: str) -> list[str]:
    return [sys.executable, "-m", "conveyor", "jobs", "watch", "--db", str(db), *job_ids]


# -- on a terminal ------------------------------------------------------------------------------


class Terminal:
    """A pseudo-terminal, 160 columns wide, whose output a test reads as it comes."""

    def __init__(self) -> None:
        self.primary, self.secondary = pty.openpty()
        fcntl.ioctl(self.secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        self.output = b""

    async def read_until(self, pattern: bytes) -> None:
        while pattern not in ANSI.sub(b"", self.output):
            chunk = await self._read()
            if not chunk:
                raise AssertionError(f"the terminal closed before {pattern!r}:\n{self.text}")
            self.output += chunk

    async def read_to_end(self) -> None:
        while chunk := await self._read():
            self.output += chunk

    async def _read(self) -> bytes:
        try:
            return await anyio.to_thread.run_sync(os.read, self.primary, 65536, abandon_on_cancel=True)
        except OSError as exc:  # EIO: every process holding the other end has exited
            if exc.errno == errno.EIO:
                return b""
            raise

    @property
    def text(self) -> str:
        return ANSI.sub(b"", self.output).decode(errors="replace")


def terminal_env() -> dict[str, str]:
    """A colour terminal of the pty's size, whatever the environment running the tests says."""
    overrides = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    env = {key: value for key, value in server_env().items() if key not in overrides}
    return {**env, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}


async def test_jobs_watch_in_a_terminal_shows_a_bar_moving_to_completion_as_a_worker_process_runs_the_job(
    tmp_path: Path,
) -> None:
    db = tmp_path / "conveyor.db"
    async with store_at(db, tmp_path) as runtime:
        job = await submit(runtime, "demo_sleep", {"seconds": 2, "steps": 4})
    terminal = Terminal()
    # Popen: the pty must be the child's stdout (a terminal to it), as in a shell.
    watcher = subprocess.Popen(  # noqa: ASYNC220
        watch_command(db, job.job_id),
        stdin=subprocess.DEVNULL,
        stdout=terminal.secondary,
        stderr=terminal.secondary,
        env=terminal_env(),
    )
    os.close(terminal.secondary)
    try:
        with anyio.fail_after(60):
            await terminal.read_until(b"queued")  # shown before any worker runs it
            async with conveyor_worker(tmp_path, signal.SIGTERM, db=db):
                await terminal.read_until(b"completed")
            await terminal.read_to_end()
            code = await anyio.to_thread.run_sync(watcher.wait)
    finally:
        if watcher.poll() is None:
            watcher.kill()
        os.close(terminal.primary)
    assert code == 0, terminal.text
    assert "\x1b[" in terminal.output.decode(errors="replace")  # drawn as a terminal's bars, not lines
    bar = [line for line in terminal.text.splitlines() if job.job_id in line]
    assert any(
        re.search(r"demo_sleep\s+" + job.job_id + r"\s+\S+\s+(25|50|75)%\s+running", line) for line in bar
    )
    assert re.search(r"\s100%\s+completed\s+0:00:0\d\s+step 4 of 4", bar[-1]), terminal.text


# -- on a pipe ----------------------------------------------------------------------------------


@asynccontextmanager
async def watching(db: Path | str, *job_ids: str) -> AsyncIterator[tuple[Process, BufferedByteReceiveStream]]:
    process = await anyio.open_process(
        watch_command(db, *job_ids), stdin=subprocess.DEVNULL, env=server_env()
    )
    async with process:
        assert process.stdout is not None
        yield process, BufferedByteReceiveStream(process.stdout)


async def next_line(lines: BufferedByteReceiveStream) -> str:
    return (await lines.receive_until(b"\n", 1 << 16)).decode()


async def rest_of(lines: BufferedByteReceiveStream) -> list[str]:
    found = []
    while True:
        try:
            found.append(await next_line(lines))
        except (anyio.EndOfStream, anyio.IncompleteRead):
            return found


async def test_jobs_watch_on_a_pipe_prints_a_line_per_change_follows_new_jobs_and_exits_1_when_one_fails(
    tmp_path: Path, database: str
) -> None:
    """On either store: other processes' changes reach it by SQLite's change watch or by NOTIFY."""
    db = database
    with anyio.fail_after(60):
        async with store_at(db, tmp_path) as runtime:
            sleeper = await submit(runtime, "demo_sleep", {"seconds": 1, "steps": 2})
            async with watching(db) as (process, lines):  # no job named: every active one, and new ones
                first = await next_line(lines)
                failing = await submit(runtime, "demo_fail", {"message": "no"})  # while it watches
                while failing.job_id not in await next_line(lines):
                    pass
                async with conveyor_worker(tmp_path, signal.SIGTERM, db=db):
                    rest = await rest_of(lines)
                code = await process.wait()
    assert first.split() == [sleeper.job_id, "demo_sleep", "queued", "position", "1"]
    sleeper_shown = [line.split()[2:4] for line in rest if sleeper.job_id in line]
    assert ["running", "50%"] in sleeper_shown
    assert sleeper_shown[-1] == ["completed", "100%"]
    assert [line.split()[2:4] for line in rest if failing.job_id in line][-1] == [
        "failed",
        "EXECUTION_ERROR:",
    ]
    assert code == 1


async def test_jobs_watch_of_jobs_that_have_ended_shows_each_once_and_exits_0_as_all_completed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "conveyor.db"
    with anyio.fail_after(60):
        async with store_at(db, tmp_path) as runtime:
            jobs = [
                await submit(runtime, "demo_add", {"a": 1, "b": 2}),
                await submit(runtime, "demo_echo", {"text": "hi"}),
            ]
            async with conveyor_worker(tmp_path, signal.SIGTERM, db=db):
                for job in jobs:
                    await runtime.engine.wait(job.job_id, owner=None, timeout_s=30)
        async with watching(db, *(job.job_id for job in jobs)) as (process, lines):
            shown = await rest_of(lines)
            code = await process.wait()
    assert [line.split()[:4] for line in shown] == [
        [jobs[0].job_id, "demo_add", "completed", "100%"],
        [jobs[1].job_id, "demo_echo", "completed", "100%"],
    ]
    assert code == 0


async def test_jobs_watch_of_an_unknown_job_says_job_not_found_on_stderr_and_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "conveyor.db"
    async with store_at(db, tmp_path) as runtime:
        await submit(runtime, "demo_add", {"a": 1, "b": 2})
    run = await anyio.run_process(watch_command(db, "job_nope"), check=False, env=server_env())
    assert run.returncode == 2
    assert run.stdout == b""
    assert run.stderr.decode().startswith("conveyor: error: JOB_NOT_FOUND: ")


async def test_jobs_watch_with_nothing_queued_or_running_says_so_and_exits_0(tmp_path: Path) -> None:
    db = tmp_path / "conveyor.db"
    async with store_at(db, tmp_path):
        pass  # an empty database
    run = await anyio.run_process(watch_command(db), check=False, env=server_env())
    assert run.returncode == 0
    assert run.stdout == b""
    assert b"no queued or running jobs" in run.stderr


def test_a_tools_message_is_shown_as_plain_text_on_one_line_never_as_markup_or_escape_codes() -> None:
    message = "[/oops] [bold]x\x1b[31mred\nnext"  # unbalanced rich markup, an escape, a newline
    job = Job(
        job_id="job_1",
        tool="demo_x",
        arguments={},
        owner="o",
        status=JobStatus.RUNNING,
        queue="default",
        created_at=0,
        started_at=0,
        progress={"percentage": 40.0, "message": message},
    )
    bars, lines = io.StringIO(), io.StringIO()
    with Bars(bars) as shown:
        shown.show(job)
    with Lines(lines) as shown:
        shown.show(job)
    assert lines.getvalue() == "job_1  demo_x  running  40%  [/oops] [bold]x [31mred next\n"
    assert "[/oops] [bold]x [31mred next" in bars.getvalue()
    assert "\x1b" not in bars.getvalue()
