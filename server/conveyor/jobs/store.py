"""The job store protocol: everything the engine asks of a database, and nothing more.

Many processes may share one store. A write that cannot get through (the database is busy)
raises ``StoreUnavailable`` after the store's own retries, having committed nothing; every
write of a job's run is fenced by its attempt number.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import anyio
import anyio.abc

from conveyor.jobs.models import Job, JobKind, JobStatus, NewJob, WorkerRecord


class JobStore(Protocol):
    origin: str  # this store's stamp on the jobs it writes
    # Statements run in the order they were called (SQLite's group commit): a claim called after
    # an insert sees the job it inserted.
    ordered_commits: bool

    @property
    def fault(self) -> str | None:
        """Why the store takes no writes any more (its file deleted or replaced), if it does not."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def insert(self, job: NewJob) -> Job | None:
        """Commit a new queued job; ``None`` if its owner already has a job with its idempotency
        key, or an active one with its dedupe key."""
        ...

    async def get(self, job_id: str) -> Job | None: ...

    async def get_by_idempotency_key(self, owner: str, key: str) -> Job | None: ...

    async def get_active_duplicate(self, owner: str, dedupe_key: str) -> Job | None:
        """The owner's queued or running job submitted with this dedupe key, if any."""
        ...

    async def list(
        self,
        *,
        owner: str | None,
        status: JobStatus | None,
        tool: str | None,
        limit: int,
        offset: int,
        kind: JobKind | None = None,
    ) -> tuple[builtins.list[Job], int]: ...

    async def claim_next(
        self,
        *,
        worker: str,
        queues: Sequence[str] | None,
        tools: Sequence[str],
        now: int,
        lease_expires_at: int,
        limit: int = 1,
    ) -> builtins.list[Job]:
        """Start up to ``limit`` of the oldest due jobs of ``queues`` whose tools are among
        ``tools``, never more of an owner's jobs than its plan's limit allows; no job twice at once."""
        ...

    async def next_run_after(self, queues: Sequence[str] | None) -> int | None: ...

    async def extend_leases(self, *, worker: str, job_ids: Sequence[str], lease_expires_at: int) -> None: ...

    async def save_progress(self, job_id: str, progress: dict[str, Any], *, attempt: int) -> None: ...

    async def finish(
        self,
        job: Job,
        *,
        status: JobStatus,
        now: int,
        result: Any = None,
        error: dict[str, Any] | None = None,
        step_results: builtins.list[dict[str, Any]] | None = None,
        execution_time_ms: int | None = None,
        tool_version: str | None = None,
    ) -> Job | None:
        """End ``job``'s run (the job as its run holds it: running, of the attempt it claimed);
        ``None`` if the job is not in that run any more. The answer is the job as stored.
        ``tool_version``: the version that ran, if not the job's (it named none, and the worker
        no longer has the one that was newest when it was submitted).

        Every write of a run is fenced by its attempt number, so a worker that lost its lease
        (and so its job) cannot change the job's next run. The job's webhook deliveries (one for
        its webhook_url, one per matching registration of its owner) are written in the same
        transaction: the outbox.
        """
        ...

    async def requeue(self, job_id: str, *, attempt: int, run_after: int) -> Job | None: ...

    async def hand_back(self, job_id: str, *, attempt: int, now: int) -> Job | None:
        """Queue a running job again at once without counting its attempt (a clean shutdown)."""
        ...

    async def request_cancel(self, job_id: str, *, now: int) -> Job | None:
        """Mark a running job for cancellation; whichever process runs it sees the change."""
        ...

    async def cancel_queued(self, job_id: str, *, now: int, error: dict[str, Any]) -> Job | None:
        """Cancel a job that is still queued, with its webhook deliveries, as ``finish`` does."""
        ...

    async def expired_leases(self, now: int) -> builtins.list[Job]: ...

    async def record_worker(self, worker: WorkerRecord) -> None:
        """Insert a worker's row, or renew it: its heartbeat."""
        ...

    async def forget_worker(self, worker_id: str) -> None: ...

    async def live_workers(self, since: int) -> builtins.list[WorkerRecord]:
        """Workers whose heartbeat was recorded at ``since`` or later."""
        ...

    async def purge_workers(self, before: int) -> int: ...

    async def watch_changes(
        self,
        on_change: Callable[[builtins.list[Job]], None],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Until cancelled, tell ``on_change`` of the jobs other processes changed (SQLite: a
        ``PRAGMA data_version`` watch; PostgreSQL: LISTEN/NOTIFY), oldest change first."""
        ...

    async def recent_durations(self, tool: str) -> builtins.list[int]: ...

    async def purge_finished(self, before: int, *, now: int) -> int:
        """Delete finished jobs that ended before ``before``, and finished tasks past their ttl."""
        ...

    async def count_by_status(self) -> dict[JobStatus, int]: ...

    async def active_count(self) -> int:
        """Queued and running jobs; cheap (indexes)."""
        ...

    async def queue_depth(self) -> int:
        """Queued jobs; cheap (an index), unlike count_by_status."""
        ...
