"""What the SQLite and PostgreSQL stores share: each statement's parameters, and every method that
is one named statement. A dialect supplies how a named statement runs (``fetch``, ``fetch_one``,
``execute``; the webhook store's statements run through them too), how a list travels as a
parameter, the operations that are more than one statement in one transaction (insert, list,
claim, a terminal write with its webhook outbox), and what only its database can do (the change
watch).
"""

from __future__ import annotations

import builtins
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import anyio
import anyio.abc

from conveyor.auth import ApiKey
from conveyor.jobs import rows
from conveyor.jobs.models import Job, JobKind, JobStatus, NewJob, WorkerRecord
from conveyor.jobs.rows import Row
from conveyor.jobs.webhook_store import WebhookStore


class SQLJobStore(ABC):
    origin: str  # stamped on every job this store writes, so its change watch can skip its own
    webhooks: WebhookStore  # the webhook tables of the same database
    ordered_commits: bool  # see JobStore
    applied_migrations: builtins.list[int]  # the schema versions this store's open applied
    _q: dict[str, str]  # the dialect's statements by name

    # -- what a dialect supplies ---------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Connect, and bring the schema up to date (``ConfigError`` if the database cannot be used)."""

    @abstractmethod
    async def close(self) -> None: ...

    @property
    @abstractmethod
    def where(self) -> str:
        """The database, as logs and messages name it (never with a password)."""

    @property
    @abstractmethod
    def fault(self) -> str | None:
        """Why the store takes no writes any more (its file deleted or replaced), if it does not."""

    @abstractmethod
    async def fetch(self, query: str, params: dict[str, Any], *, write: bool = True) -> builtins.list[Row]:
        """Run the statement called ``query``; its rows (committed, if it writes)."""

    @abstractmethod
    async def fetch_one(self, query: str, params: dict[str, Any], *, write: bool = True) -> Row | None: ...

    @abstractmethod
    async def execute(self, query: str, params: dict[str, Any]) -> int:
        """Run a writing statement; how many rows it changed."""

    @abstractmethod
    def names(self, values: Sequence[str] | None) -> Any:
        """A list of names as a statement's parameter (``None`` stays ``None``)."""

    @abstractmethod
    async def _terminal(self, query: str, params: dict[str, Any]) -> Job | None:
        """A terminal write and its webhook deliveries (the outbox) in one transaction: a crash
        loses no delivery of a committed end, and a write that did not commit has none."""

    @abstractmethod
    async def _claim(self, params: dict[str, Any], limit: int) -> builtins.list[Job]: ...

    @abstractmethod
    async def insert(self, job: NewJob) -> Job | None:
        """Commit a new queued job; ``None`` if its owner already has a job with its idempotency
        key, or an active one with its dedupe key."""

    @abstractmethod
    async def _page_and_total(
        self, listing: str, counting: str, params: dict[str, Any], *, limit: int, offset: int
    ) -> tuple[builtins.list[Job], int]:
        """A page of ``listing`` and the total of ``counting``, read at one moment."""

    @abstractmethod
    async def watch_changes(
        self,
        on_change: Callable[[builtins.list[Job]], None],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None: ...

    # -- built on those ------------------------------------------------------------------------

    async def _one(self, query: str, params: dict[str, Any], *, write: bool = True) -> Job | None:
        return rows.job_or_none(await self.fetch_one(query, params, write=write))

    async def _all(self, query: str, params: dict[str, Any], *, write: bool = True) -> builtins.list[Job]:
        return [rows.to_job(row) for row in await self.fetch(query, params, write=write)]

    async def _scalar(self, query: str, params: dict[str, Any]) -> Any:
        row = await self.fetch_one(query, params, write=False)
        return None if row is None else row[0]

    def _stamped(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "origin": self.origin}

    def _insert_params(self, job: NewJob) -> dict[str, Any]:
        return self._stamped(
            {
                "job_id": job.job_id,
                "tool": job.tool,
                "arguments": rows.dump(job.arguments),
                "owner": job.owner,
                "queue": job.queue,
                "created_at": job.created_at,
                "idempotency_key": job.idempotency_key,
                "trace_id": job.trace_id,
                "timeout_ms": job.timeout_ms,
                "webhook_url": job.webhook_url,
                "estimated_duration_ms": job.estimated_duration_ms,
                "max_concurrent": job.max_concurrent,
                "kind": job.kind,
                "ttl_ms": job.ttl_ms,
                "dedupe_key": job.dedupe_key,
                "sealed_credentials": job.sealed_credentials,
                "tool_version": job.tool_version,
                "requested_version": job.requested_version,
            }
        )

    async def list(
        self,
        *,
        owner: str | None,
        status: JobStatus | None,
        tool: str | None,
        limit: int,
        offset: int,
        kind: JobKind | None = None,
    ) -> tuple[builtins.list[Job], int]:
        params = {"owner": owner, "status": status and str(status), "tool": tool, "kind": kind}
        # Separate statements for one owner's jobs and every job: "(:owner IS NULL OR owner =
        # :owner)" would keep the planner off the owner index, and most lists are one owner's.
        if owner is None:
            return await self._page_and_total(
                "list_all_jobs", "count_all_jobs", params, limit=limit, offset=offset
            )
        return await self._page_and_total(
            "list_jobs_of_owner", "count_jobs_of_owner", params, limit=limit, offset=offset
        )

    async def get(self, job_id: str) -> Job | None:
        return await self._one("get_job", {"job_id": job_id}, write=False)

    async def get_active_duplicate(self, owner: str, dedupe_key: str) -> Job | None:
        params = {"owner": owner, "dedupe_key": dedupe_key}
        return await self._one("get_active_duplicate", params, write=False)

    async def get_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        params = {"owner": owner, "idempotency_key": key}
        return await self._one("get_job_by_idempotency_key", params, write=False)

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
        """Start up to ``limit`` of the oldest due jobs of ``queues`` whose tool is one of ``tools``."""
        params = {
            "worker": worker,
            "queues": self.names(queues) if queues else None,
            "tools": self.names(tools),
            "now": now,
            "lease_expires_at": lease_expires_at,
        }
        return await self._claim(self._stamped(params), limit)

    async def next_run_after(self, queues: Sequence[str] | None) -> int | None:
        value = await self._scalar("next_run_after", {"queues": self.names(queues) if queues else None})
        return None if value is None else int(value)

    async def extend_leases(self, *, worker: str, job_ids: Sequence[str], lease_expires_at: int) -> None:
        params = {"worker": worker, "job_ids": self.names(job_ids), "lease_expires_at": lease_expires_at}
        await self.execute("extend_leases", params)

    async def save_progress(self, job_id: str, progress: dict[str, Any], *, attempt: int) -> None:
        params = {"job_id": job_id, "progress": rows.dump(progress), "attempt": attempt}
        await self.execute("save_progress", self._stamped(params))

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
        params = {
            "job_id": job.job_id,
            "attempt": job.attempts,
            "status": str(status),
            "now": now,
            "result": None if status is not JobStatus.COMPLETED else rows.dump(result),
            "error": None if error is None else rows.dump(error),
            "step_results": rows.dump(step_results) if step_results else None,
            "execution_time_ms": execution_time_ms,
            "tool_version": tool_version,
        }
        return await self._ended(job, self._stamped(params))

    async def _ended(self, job: Job, params: dict[str, Any]) -> Job | None:
        """The finish's write; answered with the row as the statement returns it."""
        return await self._terminal("finish_job", params)

    async def requeue(self, job_id: str, *, attempt: int, run_after: int) -> Job | None:
        params = {"job_id": job_id, "attempt": attempt, "run_after": run_after}
        return await self._one("requeue_job", self._stamped(params))

    async def hand_back(self, job_id: str, *, attempt: int, now: int) -> Job | None:
        params = {"job_id": job_id, "attempt": attempt, "now": now}
        return await self._one("hand_back_job", self._stamped(params))

    async def request_cancel(self, job_id: str, *, now: int) -> Job | None:
        return await self._one("request_cancel", self._stamped({"job_id": job_id, "now": now}))

    async def cancel_queued(self, job_id: str, *, now: int, error: dict[str, Any]) -> Job | None:
        params = {"job_id": job_id, "now": now, "error": rows.dump(error)}
        return await self._terminal("cancel_queued_job", self._stamped(params))

    async def expired_leases(self, now: int) -> builtins.list[Job]:
        return await self._all("expired_leases", {"now": now}, write=False)

    async def recent_durations(self, tool: str) -> builtins.list[int]:
        found = await self.fetch("recent_durations", {"tool": tool}, write=False)
        return [int(row[0]) for row in found if row[0] is not None]

    async def purge_finished(self, before: int, *, now: int) -> int:
        return await self.execute("purge_finished", {"before": before, "now": now})

    async def queue_depth(self) -> int:
        return int(await self._scalar("queue_depth", {}) or 0)

    async def active_count(self) -> int:
        return int(await self._scalar("active_count", {}) or 0)

    async def count_by_status(self) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        found = await self.fetch("count_jobs_by_status", {}, write=False)
        counts.update({JobStatus(row["status"]): int(row["n"]) for row in found})
        return counts

    # -- workers ---------------------------------------------------------------------------

    async def record_worker(self, worker: WorkerRecord) -> None:
        """Insert the worker's row, or renew it (its heartbeat)."""
        params = {
            "worker_id": worker.worker_id,
            "pid": worker.pid,
            "host": worker.host,
            "queues": None if worker.queues is None else json.dumps(list(worker.queues)),
            "tools": json.dumps(list(worker.tools)),
            "started_at": worker.started_at,
            "now": worker.seen_at,
        }
        await self.execute("upsert_worker", params)

    async def forget_worker(self, worker_id: str) -> None:
        await self.execute("delete_worker", {"worker_id": worker_id})

    async def live_workers(self, since: int) -> builtins.list[WorkerRecord]:
        return [
            rows.to_worker(row) for row in await self.fetch("live_workers", {"since": since}, write=False)
        ]

    async def purge_workers(self, before: int) -> int:
        return await self.execute("purge_workers", {"before": before})

    # -- API keys ------------------------------------------------------------------------------

    async def insert_api_key(self, key: ApiKey, key_hash: str) -> None:
        params = {
            "key_id": key.key_id,
            "key_hash": key_hash,
            "name": key.name,
            "role": key.role,
            "plan": key.plan,
            "created_at": key.created_at,
        }
        await self.execute("insert_api_key", params)

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        row = await self.fetch_one("find_api_key", {"key_hash": key_hash}, write=False)
        return rows.to_key(row) if row is not None else None

    async def list_api_keys(self) -> builtins.list[ApiKey]:
        return [rows.to_key(row) for row in await self.fetch("list_api_keys", {}, write=False)]

    async def revoke_api_key(self, key_id: str, *, now: int) -> bool:
        return await self.execute("revoke_api_key", {"key_id": key_id, "now": now}) > 0

    def key_revocations(self) -> Hashable | None:
        """A mark that changes whenever any process revokes a key, read without a trip to the
        database, so that key look-ups may be cached; ``None``: this store has none (every
        look-up asks the database)."""
        return None

    async def count_active_api_keys(self) -> int:
        return int(await self._scalar("count_active_api_keys", {}) or 0)

    # -- rate limits ---------------------------------------------------------------------------

    async def hit_rate_window(
        self, principal: str, *, window_start: int, limit: int, count: int = 1
    ) -> int | None:
        """Count ``count`` executions in the principal's window starting ``window_start``: how
        many the window holds now, or ``None`` (nothing counted) if they would take it past ``limit``."""
        params = {"principal": principal, "window_start": window_start, "limit": limit, "count": count}
        row = await self.fetch_one("hit_rate_window", params)
        return None if row is None else int(row[0])

    async def peek_rate_window(self, principal: str, *, window_start: int) -> int:
        """How many executions the principal's window starting ``window_start`` holds."""
        value = await self._scalar("peek_rate_window", {"principal": principal, "window_start": window_start})
        return int(value or 0)
