"""SQLite job store: one connection, WAL, migrations by ``PRAGMA user_version``."""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from conveyor.jobs.models import Job, JobStatus, NewJob
from conveyor.jobs.queries import load_migrations, load_queries

_JSON_COLUMNS = ("arguments", "progress", "result", "error", "step_results")
_ROW_FIELDS = frozenset(Job.__dataclass_fields__)


class SQLiteJobStore:
    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        self.path = str(path)
        self._synchronous = synchronous
        self._q = load_queries("sqlite")
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.path, isolation_level=None)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute(f"PRAGMA synchronous = {self._synchronous}")
        await db.execute("PRAGMA busy_timeout = 5000")
        await db.execute("PRAGMA foreign_keys = ON")
        self._db = db
        await self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _migrate(self) -> None:
        db = self._conn
        async with db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = row[0] if row else 0
        for version, script in load_migrations("sqlite"):
            if version <= current:
                continue
            # executescript commits by itself; the version bump rides in the same script.
            await db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the job store is not open")
        return self._db

    async def _one(self, query: str, params: dict[str, Any]) -> Job | None:
        async with self._conn.execute(self._q[query], params) as cursor:
            row = await cursor.fetchone()
        return _to_job(row) if row is not None else None

    async def _all(self, query: str, params: dict[str, Any]) -> builtins.list[Job]:
        async with self._conn.execute(self._q[query], params) as cursor:
            rows = await cursor.fetchall()
        return [_to_job(row) for row in rows]

    async def _scalar(self, query: str, params: dict[str, Any]) -> Any:
        async with self._conn.execute(self._q[query], params) as cursor:
            row = await cursor.fetchone()
        return row[0] if row is not None else None

    async def insert(self, job: NewJob) -> Job | None:
        params = {
            "job_id": job.job_id,
            "tool": job.tool,
            "arguments": json.dumps(job.arguments),
            "owner": job.owner,
            "queue": job.queue,
            "created_at": job.created_at,
            "idempotency_key": job.idempotency_key,
            "trace_id": job.trace_id,
            "timeout_ms": job.timeout_ms,
            "webhook_url": job.webhook_url,
            "estimated_duration_ms": job.estimated_duration_ms,
        }
        return await self._one("insert_job", params)

    async def get(self, job_id: str) -> Job | None:
        return await self._one("get_job", {"job_id": job_id})

    async def get_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        return await self._one("get_job_by_idempotency_key", {"owner": owner, "idempotency_key": key})

    async def list(
        self, *, owner: str | None, status: JobStatus | None, tool: str | None, limit: int, offset: int
    ) -> tuple[builtins.list[Job], int]:
        params: dict[str, Any] = {"owner": owner, "status": status and str(status), "tool": tool}
        jobs = await self._all("list_jobs", {**params, "limit": limit, "offset": offset})
        total = await self._scalar("count_jobs", params)
        return jobs, int(total or 0)

    async def claim_next(
        self, *, worker: str, queues: Sequence[str] | None, now: int, lease_expires_at: int
    ) -> Job | None:
        params = {
            "worker": worker,
            "queues": json.dumps(list(queues)) if queues else None,
            "now": now,
            "lease_expires_at": lease_expires_at,
        }
        return await self._one("claim_next_job", params)

    async def next_run_after(self, queues: Sequence[str] | None) -> int | None:
        value = await self._scalar("next_run_after", {"queues": json.dumps(list(queues)) if queues else None})
        return None if value is None else int(value)

    async def extend_leases(self, *, worker: str, lease_expires_at: int) -> None:
        await self._conn.execute(
            self._q["extend_leases"], {"worker": worker, "lease_expires_at": lease_expires_at}
        )

    async def save_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        await self._conn.execute(
            self._q["save_progress"], {"job_id": job_id, "progress": json.dumps(progress)}
        )

    async def finish(
        self,
        job_id: str,
        *,
        status: JobStatus,
        now: int,
        result: Any = None,
        error: dict[str, Any] | None = None,
        step_results: builtins.list[dict[str, Any]] | None = None,
        execution_time_ms: int | None = None,
    ) -> Job | None:
        params = {
            "job_id": job_id,
            "status": str(status),
            "now": now,
            "result": None if status is not JobStatus.COMPLETED else json.dumps(result),
            "error": None if error is None else json.dumps(error),
            "step_results": json.dumps(step_results) if step_results else None,
            "execution_time_ms": execution_time_ms,
        }
        return await self._one("finish_job", params)

    async def requeue(self, job_id: str, *, run_after: int) -> Job | None:
        return await self._one("requeue_job", {"job_id": job_id, "run_after": run_after})

    async def cancel_queued(self, job_id: str, *, now: int, error: dict[str, Any]) -> Job | None:
        return await self._one(
            "cancel_queued_job", {"job_id": job_id, "now": now, "error": json.dumps(error)}
        )

    async def expired_leases(self, now: int) -> builtins.list[Job]:
        return await self._all("expired_leases", {"now": now})

    async def recent_durations(self, tool: str) -> builtins.list[int]:
        async with self._conn.execute(self._q["recent_durations"], {"tool": tool}) as cursor:
            rows = await cursor.fetchall()
        return [int(row[0]) for row in rows if row[0] is not None]

    async def purge_finished(self, before: int) -> int:
        cursor = await self._conn.execute(self._q["purge_finished"], {"before": before})
        return cursor.rowcount


def _to_job(row: aiosqlite.Row) -> Job:
    values = {key: value for key, value in dict(row).items() if key in _ROW_FIELDS}
    for column in _JSON_COLUMNS:
        if values.get(column) is not None:
            values[column] = json.loads(values[column])
    values["status"] = JobStatus(values["status"])
    return Job(**values)
