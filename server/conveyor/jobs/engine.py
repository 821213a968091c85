"""The job engine: submit, run with workers in one task group, cancel, wait, recover.

Event-driven: a submit wakes a worker, a state change wakes waiters. The only timer is
the sweeper, a safety net that recovers expired leases and purges old jobs.
"""

from __future__ import annotations

import builtins
import heapq
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from conveyor.errors import (
    CannotCancelRunning,
    ConveyorError,
    ErrorCode,
    ExecutionTimeout,
    IdempotencyConflict,
    InvalidArguments,
    JobNotFound,
    WorkerLost,
)
from conveyor.events import JobEvents
from conveyor.executor import Executor
from conveyor.jobs.models import Job, JobKind, JobStatus, NewJob, now_ms
from conveyor.jobs.store import JobStore
from conveyor.outbound import check_url
from conveyor.progress import Progress
from conveyor.toolkit import RetryPolicy, Tool

logger = logging.getLogger("conveyor.jobs")

MAX_PAGE = 100
CLAIM_RETRY_S = 1.0  # after a failed claim (say, a database locked by another process)
# A timeout is not retried: the caller chose the limit, and another attempt would only hit it again.
RETRYABLE_CODES = frozenset({ErrorCode.EXECUTION_ERROR, ErrorCode.WORKER_LOST})
LOST_JOB_RETRY = RetryPolicy()  # for idempotent tools without a retry policy whose worker vanished


@dataclass(frozen=True, slots=True)
class EngineConfig:
    concurrency: int = 8
    queues: tuple[str, ...] | None = None  # None: every queue
    lease_ms: int = 30_000
    sweep_interval_s: float = 5.0
    retention_s: float = 7 * 24 * 3600
    progress_interval_s: float = 0.25
    recheck_interval_s: float = 2.0  # waiters re-read the store, for jobs run by another process
    allow_private_urls: bool = False  # may a webhook_url name a loopback or private IP address
    worker_id: str = field(default_factory=lambda: f"worker_{secrets.token_hex(6)}")


@dataclass(slots=True, eq=False)
class _Idle:
    """A worker waiting for work; ``probe`` says it was woken to look for unannounced work."""

    woken: anyio.Event = field(default_factory=anyio.Event)
    probe: bool = False


@dataclass(slots=True)
class _Running:
    tool: Tool
    scope: anyio.CancelScope
    cancel_requested: bool = False
    done: anyio.Event = field(default_factory=anyio.Event)


class JobEngine:
    def __init__(self, store: JobStore, executor: Executor, events: JobEvents, config: EngineConfig) -> None:
        self.store = store
        self.executor = executor
        self.events = events
        self.config = config
        # One idle worker is woken per job that becomes claimable: no thundering herd.
        self._idle: deque[_Idle] = deque()
        self._missed_wakes = 0  # wakes that found every worker busy: that many idle turns re-claim
        self._retries_due: list[int] = []  # heap of run_after times of delayed retries (epoch ms)
        self._retry_scheduled = anyio.Event()
        self._running: dict[str, _Running] = {}
        self._estimates: dict[str, int | None] = {}

    # -- the front doors' API ------------------------------------------------------------

    async def submit(
        self,
        tool_name: str,
        arguments: Any,
        *,
        owner: str,
        idempotency_key: str | None = None,
        timeout_ms: int | None = None,
        webhook_url: str | None = None,
        trace_id: str | None = None,
        max_concurrent: int | None = None,
        kind: JobKind = "job",
        ttl_ms: int | None = None,
    ) -> Job:
        """Validate, commit, wake a worker; the job is durable once this returns."""
        tool, _ = self.executor.validate(tool_name, arguments)
        timeout_ms = self.executor.timeout_ms_for(tool, timeout_ms)
        if webhook_url is not None:
            check_url(webhook_url, argument="webhook_url", allow_private=self.config.allow_private_urls)
        arguments = arguments or {}
        if idempotency_key is not None:
            earlier = await self._resubmitted(owner, idempotency_key, tool.wire_name, arguments)
            if earlier is not None:
                return earlier
        new_job = NewJob(
            tool=tool.wire_name,
            arguments=arguments,
            owner=owner,
            queue=tool.queue,
            idempotency_key=idempotency_key,
            trace_id=trace_id or secrets.token_hex(16),
            timeout_ms=timeout_ms,
            webhook_url=webhook_url,
            estimated_duration_ms=await self.estimate(tool.wire_name),
            max_concurrent=max_concurrent,
            kind=kind,
            ttl_ms=ttl_ms,
        )
        # Woken before the insert is queued, a worker's claim queues after it: with a store that
        # commits in order (SQLite's group commit) the claim rides in the same transaction.
        self._wake_workers()
        job = await self.store.insert(new_job)
        if job is None:  # a concurrent submit with the same idempotency key committed first
            assert idempotency_key is not None
            earlier = await self._resubmitted(owner, idempotency_key, tool.wire_name, arguments)
            if earlier is None:  # ... and its job was purged meanwhile
                raise IdempotencyConflict("This idempotency_key was used by a concurrent submit; retry")
            return earlier
        # DEBUG: at thousands of jobs a second, a line per step costs a tenth of the engine's time;
        # the finish line (INFO) carries what an operator needs.
        logger.debug(
            "job submitted", extra={"action": "job.submitted", "job_id": job.job_id, "tool": job.tool}
        )
        if job.position_in_queue is None:  # a store that does not read it back with the insert
            return await self.get(job.job_id, owner=None)
        return job

    async def get(self, job_id: str, *, owner: str | None) -> Job:
        """The job, if ``owner`` may see it (``None`` sees every job)."""
        job = await self.store.get(job_id) if isinstance(job_id, str) else None
        if job is None or (owner is not None and job.owner != owner):
            raise JobNotFound(f"Job {job_id} does not exist", job_id=job_id)
        return job

    async def wait(self, job_id: str, *, owner: str | None, timeout_s: float) -> Job:
        """The job once it is terminal, or as it is when ``timeout_s`` runs out."""
        with self.events.subscribe(job_id) as updates:
            job = await self.get(job_id, owner=owner)
            deadline = anyio.current_time() + max(0.0, timeout_s)
            while not job.status.terminal:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    break
                with anyio.move_on_after(min(remaining, self.config.recheck_interval_s)):
                    job = await updates.next()
                    continue
                job = await self.get(job_id, owner=owner)
        if job.status is JobStatus.QUEUED:
            return await self.get(job_id, owner=owner)  # a fresh position_in_queue
        return job  # a terminal job was published as its final row

    async def cancel(self, job_id: str, *, owner: str | None) -> Job:
        job = await self.get(job_id, owner=owner)
        if job.status.terminal:
            return job
        if job.status is JobStatus.QUEUED:
            canceled = await self.store.cancel_queued(job_id, now=now_ms(), error=_canceled_error())
            if canceled is not None:
                self._publish(canceled)
                return canceled
            job = await self.get(job_id, owner=owner)  # a worker claimed it meanwhile
            if job.status.terminal:
                return job
        tool = self._tool_or_none(job.tool)
        if tool is None or not tool.cancellable:
            raise CannotCancelRunning(job_id=job_id)
        running = await self._running_here(job_id)
        if running is None:  # run by another process sharing this database
            raise CannotCancelRunning("The job is running in another Conveyor process", job_id=job_id)
        running.cancel_requested = True
        running.scope.cancel()
        await running.done.wait()
        return await self.get(job_id, owner=owner)

    async def list(
        self,
        *,
        owner: str | None,
        status: JobStatus | None = None,
        tool: str | None = None,
        limit: int = 20,
        offset: int = 0,
        kind: JobKind | None = None,
    ) -> tuple[builtins.list[Job], int]:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidArguments(f"limit must be between 1 and {MAX_PAGE}", argument="limit")
        if offset < 0:
            raise InvalidArguments("offset must not be negative", argument="offset")
        return await self.store.list(
            owner=owner, status=status, tool=tool, limit=limit, offset=offset, kind=kind
        )

    async def _running_here(self, job_id: str) -> _Running | None:
        # A worker registers its job a moment after the claim commits; give it that moment.
        for _ in range(100):
            if job_id in self._running:
                return self._running[job_id]
            await anyio.sleep(0.01)
        return None

    # -- running ---------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Workers, heartbeat and sweeper; returns only when cancelled by the owning lifespan."""
        async with anyio.create_task_group() as tg:
            await self.sweep()
            due = await self.store.next_run_after(self.config.queues)
            if due is not None and due > now_ms():  # a retry delayed before a restart
                heapq.heappush(self._retries_due, due)
            for _ in range(self.config.concurrency):
                tg.start_soon(self._worker)
            tg.start_soon(self._heartbeat)
            tg.start_soon(self._sweeper)
            tg.start_soon(self._poller)
            task_status.started()

    def _wake_workers(self, *, probe: bool = False) -> None:
        """Wake one idle worker; with every worker busy, the next one to go idle claims again."""
        if self._idle:
            idle = self._idle.popleft()
            idle.probe = probe
            idle.woken.set()
        elif not probe and self._missed_wakes < self.config.concurrency:
            self._missed_wakes += 1

    async def _until_woken(self) -> bool:
        """Wait idle until a wake; True if it was a probe (no job announced, look anyway)."""
        if self._missed_wakes:
            self._missed_wakes -= 1
            return False
        idle = _Idle()
        self._idle.append(idle)
        await idle.woken.wait()
        return idle.probe

    async def _poller(self) -> None:
        """Wakes a worker when a delayed retry falls due, and each sweep interval as a safety net
        (jobs nobody announced: another process's, or a per-owner limit that lifted)."""
        while True:
            scheduled = self._retry_scheduled = anyio.Event()
            wait_s = self.config.sweep_interval_s
            if self._retries_due:
                # A few ms late, so the claim's clock is surely past run_after.
                wait_s = min(wait_s, max(0.0, (self._retries_due[0] - now_ms() + 5) / 1000))
            with anyio.move_on_after(wait_s):
                await scheduled.wait()
                continue
            now = now_ms()
            while self._retries_due and self._retries_due[0] <= now:
                heapq.heappop(self._retries_due)
            self._wake_workers(probe=True)

    async def _worker(self) -> None:
        probe = False
        while True:
            # The claim below is shielded and may not block: without this a shutdown would wait
            # for the whole backlog to run. Yielding only when cancelled keeps a busy worker's
            # next claim right behind its finish (a yield let the backlog, and each submit's
            # position_in_queue count, grow: about -20% jobs/s).
            await anyio.lowlevel.checkpoint_if_cancelled()
            try:
                job = await self._claim()
            except Exception:  # a locked or full database must not take the server down
                logger.exception("claim failed", extra={"action": "worker.claim_failed"})
                await anyio.sleep(CLAIM_RETRY_S)
                continue
            if job is None:
                probe = await self._until_woken()
                continue
            if probe:  # found work nobody announced: there may be more, so pass the look on
                self._wake_workers(probe=True)
                probe = False
            try:
                await self._execute(job)
            except Exception:  # a store failure must not take the other workers down with it
                logger.exception("worker failed", extra={"action": "worker.failed", "job_id": job.job_id})

    async def _claim(self) -> Job | None:
        now = now_ms()
        # Shielded: a claim that commits must reach _execute, whose cleanup hands the job
        # back on shutdown; cancelled half-way, the job would sit in `running` until its lease ends.
        with anyio.CancelScope(shield=True):
            job = await self.store.claim_next(
                worker=self.config.worker_id,
                queues=self.config.queues,
                now=now,
                lease_expires_at=now + self.config.lease_ms,
            )
        return job

    async def _execute(self, job: Job) -> None:
        tool = self._tool_or_none(job.tool)
        if tool is None:
            await self._finish(job, JobStatus.FAILED, error=_tool_gone(job.tool))
            return
        running = _Running(tool=tool, scope=anyio.CancelScope())
        self._running[job.job_id] = running
        self._publish(job)
        logger.debug("job started", extra={"action": "job.started", "job_id": job.job_id, "tool": job.tool})
        try:
            await self._run_to_outcome(job, running)
        finally:
            # Shutdown cancels the worker mid-job: hand the job back per its retry policy.
            with anyio.CancelScope(shield=True):
                try:
                    if not running.done.is_set():
                        await self._release_interrupted(job, tool)
                finally:  # even if the store failed: a job left here would hold its lease forever
                    del self._running[job.job_id]
                    running.done.set()

    async def _run_to_outcome(self, job: Job, running: _Running) -> None:
        async def on_progress(progress: Progress) -> None:
            await self._save_progress(job, progress)

        try:
            with running.scope:
                outcome = await self.executor.run(
                    job.tool,
                    job.arguments,
                    timeout_ms=job.timeout_ms,
                    progress=on_progress,
                    progress_interval=self.config.progress_interval_s,
                    job_id=job.job_id,
                    trace_id=job.trace_id,
                )
        except ConveyorError as exc:
            if running.cancel_requested:  # the tool failed as the cancel landed: canceled it is
                await self._finish(job, JobStatus.CANCELED, error=_canceled_error())
            else:
                status = JobStatus.TIMEOUT if isinstance(exc, ExecutionTimeout) else JobStatus.FAILED
                await self._fail_or_retry(job, running.tool, exc, status)
            running.done.set()
            return
        if running.scope.cancelled_caught or running.cancel_requested:
            await self._finish(job, JobStatus.CANCELED, error=_canceled_error())
        else:
            await self._finish(
                job,
                JobStatus.COMPLETED,
                result=outcome.result,
                step_results=outcome.step_results,
                execution_time_ms=outcome.execution_time_ms,
            )
            self._learn_duration(job.tool, outcome.execution_time_ms)
        running.done.set()

    async def _save_progress(self, job: Job, progress: Progress) -> None:
        shape = progress.to_dict()
        await self.store.save_progress(job.job_id, shape, attempt=job.attempts)
        self._publish(_with_progress(job, shape))

    async def _fail_or_retry(self, job: Job, tool: Tool, exc: ConveyorError, status: JobStatus) -> None:
        policy = _retry_policy(tool, job.attempts, exc)
        if policy is not None:
            run_after = now_ms() + policy.delay_ms(job.attempts)
            requeued = await self.store.requeue(job.job_id, attempt=job.attempts, run_after=run_after)
            if requeued is not None:
                logger.info(
                    "job retried", extra={"action": "job.retry", "job_id": job.job_id, "code": exc.code}
                )
                self._publish(requeued)
                heapq.heappush(self._retries_due, run_after)
                self._retry_scheduled.set()  # the poller wakes a worker when it falls due
                return
        await self._finish(job, status, error=exc.to_payload())

    async def _release_interrupted(self, job: Job, tool: Tool) -> None:
        await self._fail_or_retry(job, tool, WorkerLost(), JobStatus.FAILED)

    async def _finish(self, job: Job, status: JobStatus, **fields: Any) -> None:
        if status is not JobStatus.COMPLETED:
            fields.setdefault("execution_time_ms", _elapsed(job))
        finished = await self.store.finish(
            job.job_id, attempt=job.attempts, status=status, now=now_ms(), **fields
        )
        if finished is not None:
            logger.info(
                "job finished",
                extra={
                    "action": "job.finished",
                    "job_id": job.job_id,
                    "tool": job.tool,
                    "status": str(status),
                },
            )
            self._publish(finished)
            if job.max_concurrent is not None:  # the owner's next job may be under its limit now
                self._wake_workers(probe=True)

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.config.lease_ms / 3000)
            if not self._running:
                continue
            try:
                await self.store.extend_leases(
                    worker=self.config.worker_id,
                    job_ids=list(self._running),
                    lease_expires_at=now_ms() + self.config.lease_ms,
                )
            except Exception:  # try again next beat; a lease lasts three of them
                logger.exception("heartbeat failed", extra={"action": "worker.heartbeat_failed"})

    async def _sweeper(self) -> None:
        while True:
            await anyio.sleep(self.config.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:
                logger.exception("sweep failed", extra={"action": "jobs.sweep_failed"})

    async def sweep(self) -> None:
        """Recover jobs whose worker vanished (expired lease) and purge old finished jobs."""
        for job in await self.store.expired_leases(now_ms()):
            if job.job_id in self._running:
                continue  # ours and still running (the loop was busy past a heartbeat): not lost
            tool = self._tool_or_none(job.tool)
            logger.warning("job lease expired", extra={"action": "job.lost", "job_id": job.job_id})
            if tool is None:
                await self._finish(job, JobStatus.FAILED, error=_tool_gone(job.tool))
            else:
                await self._release_interrupted(job, tool)
        now = now_ms()
        purged = await self.store.purge_finished(now - int(self.config.retention_s * 1000), now=now)
        if purged:
            logger.info("purged finished jobs", extra={"action": "jobs.purged", "count": purged})

    # -- helpers ---------------------------------------------------------------------------

    def _publish(self, job: Job) -> None:
        self.events.publish(job)

    def _tool_or_none(self, name: str) -> Tool | None:
        return self.executor.registry.get(name) if name in self.executor.registry else None

    async def _resubmitted(self, owner: str, key: str, tool: str, arguments: dict[str, Any]) -> Job | None:
        """The job an earlier submit with this key made, if it was the same request."""
        existing = await self.store.get_by_idempotency_key(owner, key)
        if existing is None:
            return None
        if existing.tool != tool or existing.arguments != arguments:
            raise IdempotencyConflict(
                "This idempotency_key was already used with a different tool or arguments",
                job_id=existing.job_id,
            )
        return await self.get(existing.job_id, owner=None)  # with a fresh position_in_queue

    async def estimate(self, tool: str) -> int | None:
        """How long a run of this tool usually takes (ms), from its history; None without one."""
        if tool not in self._estimates:
            durations = await self.store.recent_durations(tool)
            self._estimates[tool] = int(sum(durations) / len(durations)) if durations else None
        return self._estimates[tool]

    def _learn_duration(self, tool: str, duration_ms: int) -> None:
        previous = self._estimates.get(tool)
        # Exponential moving average: recent runs count more, one outlier does not dominate.
        self._estimates[tool] = duration_ms if previous is None else int(0.8 * previous + 0.2 * duration_ms)


def _retry_policy(tool: Tool, attempts: int, exc: ConveyorError) -> RetryPolicy | None:
    """How to retry this failure, or ``None`` to fail the job now."""
    if not tool.annotations.idempotent or exc.code not in RETRYABLE_CODES:
        return None
    # A lost job of an idempotent tool is retried even without a policy of its own (DESIGN §2).
    policy = tool.retry or (LOST_JOB_RETRY if exc.code is ErrorCode.WORKER_LOST else None)
    return policy if policy is not None and attempts < policy.max_attempts else None


def _elapsed(job: Job) -> int | None:
    return None if job.started_at is None else max(0, now_ms() - job.started_at)


def _with_progress(job: Job, progress: dict[str, Any]) -> Job:
    return replace(job, progress=progress)


def _canceled_error() -> dict[str, Any]:
    return {"code": str(ErrorCode.CANCELED), "message": "Job canceled", "retryable": False}


def _tool_gone(tool: str) -> dict[str, Any]:
    return {
        "code": str(ErrorCode.TOOL_NOT_FOUND),
        "message": f"Tool {tool!r} is no longer loaded",
        "retryable": False,
    }
