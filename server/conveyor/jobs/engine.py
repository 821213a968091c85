"""The job engine: submit, run with workers in one task group, cancel, wait, recover, drain.

Event-driven: a submit wakes a worker, a state change wakes waiters. Changes other processes
make to the shared store arrive through the store's change watch and take the same paths (a
job queued elsewhere wakes a worker here; a cancel asked elsewhere stops the run here). The
only timer is the sweeper, a safety net that recovers expired leases and purges old jobs.
"""

from __future__ import annotations

import builtins
import hashlib
import heapq
import json
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from conveyor.auth import Principal
from conveyor.credentials import CredentialVault
from conveyor.errors import (
    CannotCancelRunning,
    ConveyorError,
    ErrorCode,
    ExecutionTimeout,
    IdempotencyConflict,
    Interrupted,
    InvalidArguments,
    JobNotFound,
    StoreUnavailable,
    WorkerLost,
)
from conveyor.events import JobEvents
from conveyor.executor import Executor, Outcome, RunStopped
from conveyor.jobs.models import Job, JobKind, JobStatus, NewJob, WorkerRecord, new_job_id, now_ms
from conveyor.jobs.store import JobStore
from conveyor.outbound import check_url
from conveyor.progress import Progress
from conveyor.random_hex import random_hex
from conveyor.secret_arguments import restore as restore_secrets
from conveyor.secret_arguments import split as split_secrets
from conveyor.toolkit import RetryPolicy, Tool

logger = logging.getLogger("conveyor.jobs")

T = TypeVar("T")

MAX_PAGE = 100
CLAIM_RETRY_S = 0.1  # after a failed claim (say, a database locked by another process)
WRITE_RETRY_MAX_S = 1.0  # the longest pause between attempts at a run's write to a busy store
WORKERS_CACHE_S = 1.0  # how long this process trusts its last look at the live workers
FORGET_WORKERS_AFTER_LEASES = 10  # a worker row unrenewed this many leases is a dead process's
# A timeout is not retried: the caller chose the limit, and another attempt would only hit it again.
RETRYABLE_CODES = frozenset(
    {ErrorCode.EXECUTION_ERROR, ErrorCode.WORKER_LOST, ErrorCode.UPSTREAM_UNAVAILABLE}
)
LOST_JOB_RETRY = RetryPolicy()  # for idempotent tools without a retry policy whose worker vanished


@dataclass(frozen=True, slots=True)
class EngineConfig:
    concurrency: int = 8
    queues: tuple[str, ...] | None = None  # None: every queue
    lease_ms: int = 30_000
    sweep_interval_s: float = 5.0
    retention_s: float = 7 * 24 * 3600
    progress_interval_s: float = 0.25
    cancel_wait_s: float = 5.0  # how long a cancel waits for the run to end before answering
    explain_wait_after_ms: int = 5000  # a queued job this old that no live worker can run says so
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
    lease_expires_at: int  # epoch ms, as of the last heartbeat that landed
    # What the tool's ctx checks: only a tool that takes a ToolContext has one to check.
    cancel: threading.Event | None
    cancel_requested: bool = False
    done: bool = False  # its outcome is written (or it was handed back)

    def request_cancel(self) -> None:
        """Stop the run: an async tool at once; a sync tool, which no scope can interrupt, when it
        returns or calls ``ctx.check_cancelled()`` (until then the job shows the cancel pending)."""
        self.cancel_requested = True
        if self.cancel is not None:
            self.cancel.set()
        if self.tool.is_async:
            self.scope.cancel()


class JobEngine:
    def __init__(
        self,
        store: JobStore,
        executor: Executor,
        events: JobEvents,
        config: EngineConfig,
        *,
        on_submitted: Callable[[], None] | None = None,
        on_remote_end: Callable[[], None] | None = None,
        vault: CredentialVault | None = None,
    ) -> None:
        self.store = store
        self.vault = vault or CredentialVault()  # none given: a job cannot carry credentials
        self.executor = executor
        self.events = events
        self.config = config
        self._on_submitted = on_submitted  # a job was committed (the local worker may need starting)
        self._on_remote_end = on_remote_end  # another process ended a job (its webhooks may be due)
        self._tools_seen: tuple[int, tuple[str, ...]] = (-1, ())  # (registry version, its tool names)
        # One idle worker is woken per job that becomes claimable: no thundering herd.
        self._idle: deque[_Idle] = deque()
        self._missed_wakes = 0  # wakes that found every worker busy: that many idle turns re-claim
        self._retries_due: list[int] = []  # heap of run_after times of delayed retries (epoch ms)
        self._retry_scheduled = anyio.Event()
        self._running: dict[str, _Running] = {}
        self._claimed: deque[Job] = deque()  # claimed for workers woken to run them, not yet started
        self._cancels_pending: set[str] = set()  # asked here of jobs this process claimed but has not started
        self._estimates: dict[str, int | None] = {}
        self._draining = False
        self._hard_stop = False  # the drain's grace is over: pending writes may give up
        self._drained = anyio.Event()  # set when draining and nothing runs any more
        self._record: WorkerRecord | None = None  # this process as a worker, once it runs
        self._workers_seen: tuple[float, builtins.list[WorkerRecord]] = (-WORKERS_CACHE_S, [])

    @property
    def _tools(self) -> tuple[str, ...]:
        """What this worker can run: the registry's tools now (an upstream's come and go)."""
        registry = self.executor.registry
        version, names = self._tools_seen
        if version != registry.version:
            # Each tool by name, and each of its versions as tool@version: jobs that named a
            # version are claimed only by a worker that has it (``claim_name``).
            names = tuple(tool.wire_name for tool in registry) + tuple(
                f"{tool.wire_name}@{number}" for tool in registry for number in tool.versions
            )
            self._tools_seen = (registry.version, names)
        return names

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
        dedupe: bool = False,
        credentials: Mapping[str, str] | None = None,
        caller: Principal | None = None,
        version: str | None = None,
    ) -> Job:
        """Validate (``caller`` may run the tool: see ``Executor.validate``), commit, wake a
        worker; the job is durable once this returns.

        A submit that repeats an earlier one answers that job (``reused``): one with the same
        idempotency key, or, with ``dedupe`` and no key, an identical job of the owner that is
        still queued or running (a client that timed out and asked again starts nothing twice).
        ``credentials``, and the arguments the tool marks secret, are kept sealed until the job
        ends, for its run alone. ``version``: the tool's version to run (default: the newest).
        """
        tool, _ = self.executor.validate(tool_name, arguments, caller=caller, version=version)
        timeout_ms = self.executor.timeout_ms_for(tool, timeout_ms)
        if webhook_url is not None:
            check_url(webhook_url, argument="webhook_url", allow_private=self.config.allow_private_urls)
        arguments, secrets_given = split_secrets(arguments or {}, tool.secret_arguments)
        # A repeat with other credentials or secrets may be meant to run with those: never
        # answered by another (whose secrets are sealed, so nobody could tell them apart).
        dedupe_key = (
            _dedupe_key(tool.wire_name, arguments)
            if dedupe and idempotency_key is None and not credentials and not secrets_given
            else None
        )
        job_id = new_job_id()
        sealed = (
            self.vault.seal(job_id, credentials or {}, secrets_given)
            if credentials or secrets_given
            else None
        )
        new_job = NewJob(
            job_id=job_id,
            tool=tool.wire_name,
            arguments=arguments,
            owner=owner,
            queue=tool.queue,
            idempotency_key=idempotency_key,
            trace_id=trace_id or random_hex(16),
            timeout_ms=timeout_ms,
            webhook_url=webhook_url,
            estimated_duration_ms=await self.estimate(tool.wire_name),
            max_concurrent=max_concurrent,
            kind=kind,
            ttl_ms=ttl_ms,
            dedupe_key=dedupe_key,
            sealed_credentials=sealed,
            tool_version=tool.version,
            requested_version=version,
        )
        # Woken before the insert is queued, a worker's claim queues after it: with a store that
        # commits in order (SQLite's group commit) the claim rides in the same transaction.
        # Any other store could run the claim first and find nothing: its worker wakes after.
        if self.store.ordered_commits:
            self._wake_workers()
        job = await self.store.insert(new_job)
        if job is None:  # it repeats an earlier submit (the insert says so, at no extra cost)
            earlier = await self._earlier_submit(new_job)
            if earlier is not None:
                return earlier
            job = await self.store.insert(new_job)  # the duplicate ended meanwhile: insert after all
            if job is None:
                raise IdempotencyConflict("This idempotency_key was used by a concurrent submit; retry")
        # DEBUG: at thousands of jobs a second, a line per step costs a tenth of the engine's time;
        # the finish line (INFO) carries what an operator needs.
        logger.debug(
            "job submitted", extra={"action": "job.submitted", "job_id": job.job_id, "tool": job.tool}
        )
        if not self.store.ordered_commits:
            self._wake_workers()
        self._publish(job)  # a new job is news too, as other processes' submits are (their watch)
        if self._on_submitted is not None:
            self._on_submitted()
        if job.position_in_queue is None:  # a store that does not read it back with the insert
            return await self.get(job.job_id, owner=None)
        return job

    async def _earlier_submit(self, job: NewJob) -> Job | None:
        """The job an earlier submit made that this one repeats, if any (see ``submit``)."""
        if job.idempotency_key is not None:
            existing = await self.store.get_by_idempotency_key(job.owner, job.idempotency_key)
            if existing is not None and (
                (existing.tool, existing.arguments) != (job.tool, job.arguments)
                or existing.tool_version not in (None, job.tool_version)  # None: a job from before versions
            ):
                raise IdempotencyConflict(
                    "This idempotency_key was already used with a different tool, version or arguments",
                    job_id=existing.job_id,
                )
        elif job.dedupe_key is not None:
            existing = await self.store.get_active_duplicate(job.owner, job.dedupe_key)
        else:
            return None
        if existing is None:
            return None
        return replace(await self.get(existing.job_id, owner=None), reused=True)  # a fresh position

    async def get(self, job_id: str, *, owner: str | None) -> Job:
        """The job, if ``owner`` may see it (``None`` sees every job)."""
        job = await self.store.get(job_id) if isinstance(job_id, str) else None
        if job is None or (owner is not None and job.owner != owner):
            raise JobNotFound(f"Job {job_id} does not exist", job_id=job_id)
        return (await self._explained([job]))[0]

    async def wait(self, job_id: str, *, owner: str | None, timeout_s: float) -> Job:
        """The job once it is terminal, or as it is when ``timeout_s`` runs out."""
        with self.events.subscribe(job_id) as updates:
            job = await self.get(job_id, owner=owner)  # after subscribing: no change falls in between
            with anyio.move_on_after(max(0.0, timeout_s)):
                while not job.status.terminal:
                    job = await updates.next()
        if job.status is JobStatus.QUEUED:
            return await self.get(job_id, owner=owner)  # a fresh position_in_queue
        return job  # a terminal job was published as its final row

    async def cancel(self, job_id: str, *, owner: str | None) -> Job:
        """Cancel a queued job at once, or stop a running one wherever it runs.

        A running job's cancel is written to the store, where the process running it sees it
        (at once when that is this one); the answer waits up to ``cancel_wait_s`` for the run to
        end. A sync tool ends only when it returns or checks ``ctx.check_cancelled()``: until
        then the job is answered running, with ``cancel_requested_at``.
        """
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
        with self.events.subscribe(job_id) as updates:
            requested = await self.store.request_cancel(job_id, now=now_ms())
            if requested is not None:
                job = requested
                self._publish(requested)
            self._cancel_here(job_id)
            try:
                with anyio.move_on_after(self.config.cancel_wait_s):
                    while not job.status.terminal:
                        job = await updates.next()
            finally:
                self._cancels_pending.discard(job_id)
        return job if job.status.terminal else await self.get(job_id, owner=owner)

    def _cancel_here(self, job_id: str) -> None:
        running = self._running.get(job_id)
        if running is not None:
            running.request_cancel()
        else:  # claimed here a moment ago, maybe: _execute looks at this set once it starts
            self._cancels_pending.add(job_id)

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
            raise InvalidArguments(
                f"limit must be between 1 and {MAX_PAGE}",
                argument="limit",
                suggested_fix=f"Ask for a page of 1 to {MAX_PAGE} jobs; offset pages on.",
            )
        if offset < 0:
            raise InvalidArguments(
                "offset must not be negative", argument="offset", suggested_fix="Start at offset 0."
            )
        jobs, total = await self.store.list(
            owner=owner, status=status, tool=tool, limit=limit, offset=offset, kind=kind
        )
        return await self._explained(jobs), total

    async def _explained(self, jobs: builtins.list[Job]) -> builtins.list[Job]:
        """Queued jobs that have waited a while, and that no live worker can run, say so."""
        oldest = now_ms() - self.config.explain_wait_after_ms
        if not any(job.status is JobStatus.QUEUED and job.created_at <= oldest for job in jobs):
            return jobs
        workers = await self.live_workers()
        return [
            replace(job, status_message=_no_worker_message(job))
            if job.status is JobStatus.QUEUED
            and job.created_at <= oldest
            and not any(worker.can_run(job) for worker in workers)
            else job
            for job in jobs
        ]

    async def live_workers(self) -> builtins.list[WorkerRecord]:
        """The processes that run jobs, as their heartbeats say (looked up at most once a second)."""
        looked, workers = self._workers_seen
        if time.monotonic() - looked >= WORKERS_CACHE_S:
            workers = await self.store.live_workers(since=now_ms() - self.config.lease_ms)
            self._workers_seen = (time.monotonic(), workers)
        return workers

    # -- changes other processes made ------------------------------------------------------

    async def watch(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow other processes' changes to the store until cancelled (every process does)."""
        await self.store.watch_changes(self._on_remote_changes, task_status=task_status)

    def _on_remote_changes(self, jobs: builtins.list[Job]) -> None:
        ended = False
        for job in jobs:
            self.events.publish(job, remote=True)
            if job.status is JobStatus.QUEUED:
                self._wake_workers()  # submitted, retried or handed back elsewhere
            elif job.status is JobStatus.RUNNING:
                if job.cancel_requested_at is not None and job.lease_owner == self.config.worker_id:
                    self._cancel_here(job.job_id)
            else:
                ended = True
        if ended and self._on_remote_end is not None:
            self._on_remote_end()

    # -- running ---------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Workers, heartbeat and sweeper; returns only when cancelled by the owning lifespan."""
        now = now_ms()
        self._record = WorkerRecord(
            worker_id=self.config.worker_id,
            pid=os.getpid(),
            host=socket.gethostname(),
            queues=self.config.queues,
            tools=self._tools,
            started_at=now,
            seen_at=now,
        )
        await self.store.record_worker(self._record)
        try:
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
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.store.forget_worker(self.config.worker_id)
                except Exception:  # its row ages out: nobody counts on a worker unseen for a lease
                    logger.warning(
                        "worker row not removed", exc_info=True, extra={"action": "worker.forget_failed"}
                    )

    async def drain(self, grace_s: float, *, hurry: anyio.Event | None = None) -> None:
        """Stop claiming; let the running jobs end for up to ``grace_s`` (less if ``hurry`` is set),
        then interrupt the rest, each handed back by its ``_execute``, and return when none runs."""
        self._draining = True
        while self._idle:  # idle workers wake, see the drain, and end
            self._idle.popleft().woken.set()
        if self._running:
            logger.info(
                "draining",
                extra={"action": "worker.draining", "running": len(self._running), "grace_s": grace_s},
            )
        with anyio.move_on_after(grace_s):
            async with anyio.create_task_group() as tg:

                async def hurried() -> None:
                    if hurry is not None:
                        await hurry.wait()
                    else:
                        await anyio.sleep_forever()
                    tg.cancel_scope.cancel()

                tg.start_soon(hurried)
                await self._until_nothing_runs()
                tg.cancel_scope.cancel()
        self._hard_stop = True
        for running in self._running.values():
            running.scope.cancel()  # past the grace period: what still runs is interrupted
        await self._until_nothing_runs()

    async def _until_nothing_runs(self) -> None:
        """Until no job runs here, and every job claimed here that never started is handed back."""
        if self._running or self._claimed:
            await self._drained.wait()

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def busy(self) -> bool:
        """Runs are going on in this process (or jobs claimed here are about to start)."""
        return bool(self._running or self._claimed)

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
        (jobs nobody announced: a per-owner limit that lifted, a change watch that missed a beat)."""
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
            job: Job | None
            if self._claimed:  # claimed for this worker by another's claim (or, draining, handed back)
                job = self._claimed.popleft()
            elif self._draining:
                return
            else:
                try:
                    job = await self._claim()
                except Exception:  # a locked or full database must not take the server down
                    logger.warning("claim failed", exc_info=True, extra={"action": "worker.claim_failed"})
                    await anyio.sleep(CLAIM_RETRY_S * random.uniform(0.5, 1.5))
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
        """Claim a job for this worker, and one for each worker that waits idle: one trip to the
        store for all of them (the others' wait in ``_claimed``, each idle worker woken for one)."""
        if self._draining:
            return None
        now = now_ms()
        # Shielded: a claim that commits must reach _execute, whose cleanup hands the job
        # back on shutdown; cancelled half-way, the job would sit in `running` until its lease ends.
        with anyio.CancelScope(shield=True):
            jobs = await self.store.claim_next(
                worker=self.config.worker_id,
                queues=self.config.queues,
                tools=self._tools,
                now=now,
                lease_expires_at=now + self.config.lease_ms,
                limit=1 + len(self._idle),
            )
        if not jobs:
            return None
        for job in jobs[1:]:
            self._claimed.append(job)
            self._wake_workers()
        return jobs[0]

    async def _execute(self, job: Job) -> None:
        # Claimed only for a tool (and a version it named) this process has.
        tool = self.executor.registry.get(
            job.tool, job.tool_version, newest_if_missing=job.requested_version is None
        )
        lease = job.lease_expires_at or now_ms() + self.config.lease_ms
        cancel = threading.Event() if tool.context_parameter else None
        running = _Running(tool=tool, scope=anyio.CancelScope(), lease_expires_at=lease, cancel=cancel)
        self._running[job.job_id] = running
        if job.job_id in self._cancels_pending:
            self._cancels_pending.discard(job.job_id)
            running.request_cancel()
        self._publish(job)
        logger.debug("job started", extra={"action": "job.started", "job_id": job.job_id, "tool": job.tool})
        started = not self._draining  # claimed as the drain began: handed back without running
        try:
            if started:
                await self._run_to_outcome(job, running)
        finally:
            try:
                if not running.done:
                    # Shutdown cancels the worker mid-job: hand the job back, or end it INTERRUPTED.
                    with anyio.CancelScope(shield=True):
                        await self._hand_back(job, running, started=started)
            finally:  # even if the store failed: a job left here would hold its lease forever
                del self._running[job.job_id]
                running.done = True
                if self._draining and not self._running and not self._claimed:
                    self._drained.set()

    async def _run_to_outcome(self, job: Job, running: _Running) -> None:
        async def on_progress(progress: Progress) -> None:
            await self._save_progress(job, running, progress)

        outcome: Outcome | None = None  # None: the run was stopped (a cancel, or the process stopping)
        try:
            arguments, credentials = self._unsealed(job)
            outcome = await self.executor.run(
                job.tool,
                arguments,
                version=running.tool.version,
                timeout_ms=job.timeout_ms,
                progress=on_progress,
                progress_interval=self.config.progress_interval_s,
                job_id=job.job_id,
                trace_id=job.trace_id,
                cancel=running.cancel,
                # The engine cancels a non-cancellable run only to stop the process.
                shield_uncancellable=False,
                credentials=credentials,
                scope=running.scope,
            )
        except RunStopped:
            pass
        except ConveyorError as exc:
            if running.cancel_requested:  # the tool failed as the cancel landed: canceled it is
                await self._finish(job, running, JobStatus.CANCELED, error=_canceled_error())
            else:
                status = JobStatus.TIMEOUT if isinstance(exc, ExecutionTimeout) else JobStatus.FAILED
                await self._fail_or_retry(job, running, exc, status)
            running.done = True
            return
        if running.cancel_requested:
            await self._finish(job, running, JobStatus.CANCELED, error=_canceled_error())
        elif outcome is None:
            return  # the process is stopping: _execute hands the job back
        else:
            await self._finish(
                job,
                running,
                JobStatus.COMPLETED,
                result=outcome.result,
                step_results=outcome.step_results,
                execution_time_ms=outcome.execution_time_ms,
            )
            self._learn_duration(job.tool, outcome.execution_time_ms)
        running.done = True

    async def _save_progress(self, job: Job, running: _Running, progress: Progress) -> None:
        shape = progress.to_dict()
        await self._landed(
            job, running, lambda: self.store.save_progress(job.job_id, shape, attempt=job.attempts)
        )
        self._publish(_with_progress(job, shape))

    async def _fail_or_retry(
        self, job: Job, running: _Running, exc: ConveyorError, status: JobStatus
    ) -> None:
        policy = _retry_policy(running.tool, job.attempts, exc)
        if policy is not None:
            run_after = now_ms() + policy.delay_ms(job.attempts)
            requeued = await self._landed(
                job,
                running,
                lambda: self.store.requeue(job.job_id, attempt=job.attempts, run_after=run_after),
            )
            if requeued is not None:
                logger.info(
                    "job retried", extra={"action": "job.retry", "job_id": job.job_id, "code": exc.code}
                )
                self._publish(requeued)
                heapq.heappush(self._retries_due, run_after)
                self._retry_scheduled.set()  # the poller wakes a worker when it falls due
                return
            # Not requeued: a cancel was asked for meanwhile (it wins), or the run is lost (the
            # fenced finish below then changes nothing).
            await self._finish(job, running, JobStatus.CANCELED, error=_canceled_error())
            return
        error = exc.to_payload()
        if isinstance(exc, ExecutionTimeout):  # the job ran as long as it was let: it needs longer
            error["suggested_fix"] = "Submit it again with a larger timeout_ms."
        await self._finish(job, running, status, error=error)

    async def _hand_back(self, job: Job, running: _Running, *, started: bool = True) -> None:
        """The process is stopping mid-run. An idempotent tool's job is queued again, its attempt
        uncounted; any other had started its tool, so it ends INTERRUPTED rather than run twice."""
        if running.cancel_requested:
            await self._finish(job, running, JobStatus.CANCELED, error=_canceled_error())
            return
        if started and not running.tool.annotations.idempotent:
            await self._finish(job, running, JobStatus.FAILED, error=Interrupted().to_payload())
            return
        handed = await self._landed(
            job, running, lambda: self.store.hand_back(job.job_id, attempt=job.attempts, now=now_ms())
        )
        if handed is not None:
            logger.info("job handed back", extra={"action": "job.handed_back", "job_id": job.job_id})
            self._publish(handed)
        else:  # a cancel was asked for meanwhile, or the run is lost (then this changes nothing)
            await self._finish(job, running, JobStatus.CANCELED, error=_canceled_error())

    async def _finish(self, job: Job, running: _Running | None, status: JobStatus, **fields: Any) -> None:
        if status is not JobStatus.COMPLETED:
            fields.setdefault("execution_time_ms", _elapsed(job))
        if running is not None and running.tool.version != job.tool_version:
            fields["tool_version"] = running.tool.version  # the version that ran says so

        def write() -> Awaitable[Job | None]:
            return self.store.finish(job, status=status, now=now_ms(), **fields)

        finished = await (write() if running is None else self._landed(job, running, write))
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

    async def _landed(self, job: Job, running: _Running, write: Callable[[], Awaitable[T]]) -> T | None:
        """A write of this run, retried through a busy or full store until it lands, for as long as
        the process runs: a run that completed is recorded completed once the store takes writes
        again. (``None`` from the write: the fence refused it, the job is not in this run any more.)
        Only a stop past its grace period gives up, once the run's lease is over: the job is then
        any live process's to recover."""
        pause = 0.05
        while True:
            try:
                return await write()
            except Exception as exc:
                gone = self.store.fault is not None  # the file went away: no write of ours is read again
                if gone or (self._hard_stop and now_ms() >= running.lease_expires_at):
                    logger.error(
                        "run write given up at stop",
                        exc_info=exc,
                        extra={"action": "job.write_lost", "job_id": job.job_id},
                    )
                    return None
                level = logging.INFO if isinstance(exc, StoreUnavailable) else logging.WARNING
                logger.log(
                    level, "run write retried", extra={"action": "job.write_retry", "job_id": job.job_id}
                )
            await anyio.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, WRITE_RETRY_MAX_S)

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.config.lease_ms / 3000)
            if self._record is not None:
                try:
                    self._record = replace(self._record, seen_at=now_ms(), tools=self._tools)
                    await self.store.record_worker(self._record)
                except Exception:
                    logger.warning(
                        "worker heartbeat failed", exc_info=True, extra={"action": "worker.seen_failed"}
                    )
            held = [*self._running, *(job.job_id for job in self._claimed)]
            if not held:
                continue
            renewed_until = now_ms() + self.config.lease_ms
            try:
                await self.store.extend_leases(
                    worker=self.config.worker_id, job_ids=held, lease_expires_at=renewed_until
                )
            except Exception:  # try again next beat; a lease lasts three of them
                logger.warning("heartbeat failed", exc_info=True, extra={"action": "worker.heartbeat_failed"})
                continue
            for running in self._running.values():
                running.lease_expires_at = renewed_until

    async def _sweeper(self) -> None:
        while True:
            await anyio.sleep(self.config.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:
                logger.exception("sweep failed", extra={"action": "jobs.sweep_failed"})

    async def sweep(self) -> None:
        """Recover jobs whose worker vanished (expired lease) and purge old finished jobs."""
        now = now_ms()
        for job in await self.store.expired_leases(now):
            if job.job_id in self._running or any(held.job_id == job.job_id for held in self._claimed):
                continue  # ours and still running (the loop was busy past a heartbeat): not lost
            tool = self._tool_or_none(job.tool)
            if tool is None and (job.lease_expires_at or 0) > now - self.config.lease_ms:
                continue  # a process that has the tool will recover it by its retry policy
            logger.warning("job lease expired", extra={"action": "job.lost", "job_id": job.job_id})
            if tool is None:
                await self._finish(job, None, JobStatus.FAILED, error=WorkerLost().to_payload())
            else:
                await self._recover_lost(job, tool)
        await self.store.purge_workers(now - FORGET_WORKERS_AFTER_LEASES * self.config.lease_ms)
        purged = await self.store.purge_finished(now - int(self.config.retention_s * 1000), now=now)
        if purged:
            logger.info("purged finished jobs", extra={"action": "jobs.purged", "count": purged})

    async def _recover_lost(self, job: Job, tool: Tool) -> None:
        """A job whose worker died: retried by the tool's policy if idempotent, else WORKER_LOST."""
        exc = WorkerLost()
        policy = _retry_policy(tool, job.attempts, exc)
        if policy is not None:
            run_after = now_ms() + policy.delay_ms(job.attempts)
            requeued = await self.store.requeue(job.job_id, attempt=job.attempts, run_after=run_after)
            if requeued is not None:
                self._publish(requeued)
                heapq.heappush(self._retries_due, run_after)
                self._retry_scheduled.set()
                return
        await self._finish(job, None, JobStatus.FAILED, error=exc.to_payload())

    # -- helpers ---------------------------------------------------------------------------

    def _unsealed(self, job: Job) -> tuple[dict[str, Any], dict[str, str] | None]:
        """The job's arguments, its secret ones put back, and its credentials: for its run."""
        if job.sealed_credentials is None:
            return job.arguments, None
        credentials, secrets_given = self.vault.unseal(job.job_id, job.sealed_credentials)
        return restore_secrets(job.arguments, secrets_given), credentials or None

    def _publish(self, job: Job) -> None:
        self.events.publish(job)

    def _tool_or_none(self, name: str) -> Tool | None:
        return self.executor.registry.get(name) if name in self.executor.registry else None

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


def _dedupe_key(tool: str, arguments: dict[str, Any]) -> str:
    """Same tool and same arguments, whatever the order of their keys: the same key."""
    text = json.dumps([tool, arguments], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


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


def _no_worker_message(job: Job) -> str:
    return (
        f"Waiting: no running worker can run {job.tool} (queue {job.queue!r}). It runs once one does: "
        "start `conveyor worker` with this tool's toolkit, or see `conveyor worker status`."
    )


def _canceled_error() -> dict[str, Any]:
    return {"code": str(ErrorCode.CANCELED), "message": "Job canceled", "retryable": False}
