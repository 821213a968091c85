"""``conveyor jobs watch``: follow jobs live, whichever process runs them, until they end.

Changes arrive through the runtime's job events, which carry other processes' writes too (the
store's change watch: SQLite's ``data_version``, PostgreSQL's LISTEN/NOTIFY), so nothing polls the
jobs in a loop; a slow re-read of the unfinished ones is only a safety net for a change a full
event buffer dropped. On a terminal the jobs show as rich progress bars; otherwise as plain
lines, one per change, for logs and scripts.

Watched are the jobs named, or, with none named, every queued or running job and each job
submitted while watching. The watch ends when every watched job has ended: exit code 0 if all
completed, 1 if any failed, was canceled or timed out.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import IO, Any, Protocol

import anyio
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TaskProgressColumn, TextColumn
from rich.text import Text

from conveyor.events import Subscription
from conveyor.jobs.engine import MAX_PAGE, JobEngine
from conveyor.jobs.models import Job, JobStatus, now_ms

RESYNC_S = 5.0  # the safety net's pace: how often unfinished jobs are read again if nothing arrives
ACTIVE = (JobStatus.RUNNING, JobStatus.QUEUED)
MIN_ROWS = 5  # bars shown even on a tiny terminal
STATUS_STYLE = {
    JobStatus.QUEUED: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELED: "magenta",
    JobStatus.TIMEOUT: "red",
}


class Display(Protocol):
    """Where the watch shows each job's latest state."""

    def show(self, job: Job) -> None: ...

    def __enter__(self) -> Display: ...

    def __exit__(self, *exc: object) -> None: ...


async def watch_jobs(engine: JobEngine, job_ids: Sequence[str], display: Display) -> int:
    """Show the jobs until all have ended; 0 if every one completed, else 1.

    Raises ``JobNotFound`` for a named job that does not exist, before showing anything."""
    # Subscribed before the first read: no change falls between that read and the events.
    with engine.events.subscribe() as changes:
        watch_started = now_ms()
        jobs = await _named(engine, job_ids) if job_ids else await _active(engine)
        if not jobs:
            print("conveyor: no queued or running jobs to watch", file=sys.stderr)
            return 0
        with display:
            for job in jobs.values():
                display.show(job)
            await _follow(engine, changes, jobs, display, new_since=None if job_ids else watch_started)
    return 0 if all(job.status is JobStatus.COMPLETED for job in jobs.values()) else 1


async def _follow(
    engine: JobEngine, changes: Subscription, jobs: dict[str, Job], display: Display, *, new_since: int | None
) -> None:
    """Show each change of the jobs (and, given ``new_since``, of new ones) until all have ended."""
    unfinished = {job_id for job_id, job in jobs.items() if not job.status.terminal}
    while unfinished:
        for job in await _next_changes(engine, changes, jobs, unfinished):
            known = jobs.get(job.job_id)
            if known is None and (new_since is None or not _new(job, new_since)):
                continue
            if known is not None and (known.status.terminal or job.version < known.version):
                continue  # an older state arriving late, or news of a job that has ended
            jobs[job.job_id] = job
            if job.status.terminal:
                unfinished.discard(job.job_id)
            else:
                unfinished.add(job.job_id)
            display.show(job)


def _new(job: Job, watch_started: int) -> bool:
    """A job to follow, first seen while watching: active, or submitted since the watch began."""
    return job.status in ACTIVE or job.created_at >= watch_started


async def _named(engine: JobEngine, job_ids: Sequence[str]) -> dict[str, Job]:
    return {job_id: await engine.get(job_id, owner=None) for job_id in dict.fromkeys(job_ids)}


async def _active(engine: JobEngine) -> dict[str, Job]:
    """Every running and queued job, oldest first."""
    found: list[Job] = []
    for status in ACTIVE:
        page: list[Job] = []
        offset = 0
        while offset == 0 or len(page) == MAX_PAGE:
            page, _ = await engine.list(owner=None, status=status, limit=MAX_PAGE, offset=offset)
            found += reversed(page)
            offset += MAX_PAGE
    return {job.job_id: job for job in sorted(found, key=lambda job: job.created_at)}


async def _next_changes(
    engine: JobEngine, changes: Subscription, jobs: dict[str, Job], unfinished: set[str]
) -> list[Job]:
    """The next change; if none comes for a while, the unfinished jobs read again."""
    with anyio.move_on_after(RESYNC_S):
        return [await changes.next()]
    return [job for job in await _reread(engine, unfinished) if job != jobs.get(job.job_id)]


async def _reread(engine: JobEngine, job_ids: Iterable[str]) -> list[Job]:
    found = [await engine.store.get(job_id) for job_id in job_ids]
    return [job for job in found if job is not None]


# -- how a job looks -----------------------------------------------------------------------------


def percentage(job: Job) -> float | None:
    if job.status is JobStatus.COMPLETED:
        return 100.0
    value = (job.progress or {}).get("percentage")
    return float(value) if isinstance(value, int | float) else None


def detail(job: Job) -> str:
    """What a person wants to read beside the bar: the error, the queue position, the message."""
    if job.error:
        text = f"{job.error.get('code')}: {job.error.get('message', '')}"
    elif job.status is JobStatus.QUEUED:
        text = job.status_message or (
            f"position {job.position_in_queue}" if job.position_in_queue is not None else ""
        )
    else:
        message = (job.progress or {}).get("message")
        text = message if isinstance(message, str) else ""
    # A tool's text on one line, and no escape sequence of its own reaches the terminal.
    return "".join(char if char.isprintable() else " " for char in text)


def elapsed_seconds(job: Job) -> float | None:
    """How long the job has run (or ran); None while it has not started."""
    if job.started_at is None:
        return None
    if job.execution_time_ms is not None and job.status.terminal:
        return job.execution_time_ms / 1000
    end = job.completed_at if job.completed_at is not None else int(time.time() * 1000)
    return max(0, end - job.started_at) / 1000


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


# -- on a terminal: progress bars ----------------------------------------------------------------


class _ElapsedColumn(ProgressColumn):
    """The job's own run time (not the watch's), ticking while it runs."""

    def render(self, task: Task) -> Text:
        job: Job = task.fields["job"]
        return Text(_clock(elapsed_seconds(job)), style="progress.elapsed")


class _StatusColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        job: Job = task.fields["job"]
        return Text(str(job.status), style=STATUS_STYLE[job.status])


class Bars:
    """One live progress bar per job: tool, job id, bar, percentage, status, elapsed, message.

    With more jobs than the terminal has lines, the ones that changed last are shown."""

    def __init__(self, file: IO[str] | None = None) -> None:
        console = Console(file=file)
        self._progress = Progress(
            # markup=False: a tool's message is shown as it is, never read as rich markup.
            TextColumn("{task.fields[tool]}", style="bold", markup=False),
            TextColumn("{task.fields[job_id]}", style="dim", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            _StatusColumn(),
            _ElapsedColumn(),
            TextColumn("{task.fields[detail]}", markup=False),
            console=console,
            refresh_per_second=8,
        )
        self._rows = max(MIN_ROWS, console.height - 1)
        self._shown: OrderedDict[str, TaskID] = OrderedDict()  # visible bars, least recently changed first
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Bars:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def show(self, job: Job) -> None:
        fields: dict[str, Any] = {"job": job, "tool": job.tool, "job_id": job.job_id, "detail": detail(job)}
        task = self._tasks.get(job.job_id)
        if task is None:
            task = self._tasks[job.job_id] = self._progress.add_task("", total=100, **fields)
        # No percentage yet (queued, or a tool that reports none): an empty bar, the status beside it.
        self._progress.update(task, completed=percentage(job) or 0, visible=True, **fields)
        self._shown[job.job_id] = task
        self._shown.move_to_end(job.job_id)
        while len(self._shown) > self._rows:
            self._progress.update(self._shown.popitem(last=False)[1], visible=False)


# -- elsewhere: one plain line per change --------------------------------------------------------


class Lines:
    """A line per change of what a job shows (a repeat of the same line is left out)."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self._last: dict[str, str] = {}

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.flush()

    def show(self, job: Job) -> None:
        value = percentage(job)
        parts = [job.job_id, job.tool, str(job.status), "" if value is None else f"{value:.0f}%", detail(job)]
        line = "  ".join(part for part in parts if part)
        if self._last.get(job.job_id) != line:
            self._last[job.job_id] = line
            print(line, file=self._file, flush=True)
