"""SQLite job store: one connection, WAL, migrations by ``PRAGMA user_version``."""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from conveyor.auth import ApiKey
from conveyor.errors import ConfigError
from conveyor.jobs import group_commit
from conveyor.jobs.models import Job, JobKind, JobStatus, NewJob
from conveyor.jobs.queries import load_migrations, load_queries
from conveyor.jobs.sqlite_webhooks import SQLiteWebhookStore

_JSON_COLUMNS = ("arguments", "progress", "result", "error", "step_results")
_ROW_FIELDS = frozenset(Job.__dataclass_fields__)


class SQLiteJobStore:
    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        self.path = str(path)
        self._synchronous = synchronous
        self._q = load_queries("sqlite")
        self._db: aiosqlite.Connection | None = None
        self._group: group_commit.GroupCommit | None = None
        self.webhooks = SQLiteWebhookStore(self._run, self._q)  # same database, same committer

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # Statements go through one group committer: concurrent callers share transactions.
            db, self._group = await group_commit.connect(self.path)
            self._db = db
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute(f"PRAGMA synchronous = {self._synchronous}")
            await db.execute("PRAGMA busy_timeout = 5000")
            await db.execute("PRAGMA foreign_keys = ON")
            await self._migrate()
        except sqlite3.Error as exc:
            # Closed here, or aiosqlite's thread would keep the process alive after the error.
            await self.close()
            raise ConfigError(f"cannot use {self.path} as Conveyor's database: {exc}") from None

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None
            self._group = None

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

    async def _run(self, operation: group_commit.Operation[group_commit.T]) -> group_commit.T:
        if self._group is None:
            raise RuntimeError("the job store is not open")
        return await self._group.run(operation)

    async def _one(self, query: str, params: dict[str, Any]) -> Job | None:
        sql = self._q[query]
        return await self._run(lambda conn: _job_or_none(conn.execute(sql, params).fetchone()))

    async def _all(self, query: str, params: dict[str, Any]) -> builtins.list[Job]:
        sql = self._q[query]
        return await self._run(lambda conn: [_to_job(row) for row in conn.execute(sql, params)])

    async def _scalar(self, query: str, params: dict[str, Any]) -> Any:
        sql = self._q[query]
        return await self._run(lambda conn: _first_column(conn.execute(sql, params).fetchone()))

    async def _rowcount(self, query: str, params: dict[str, Any]) -> int:
        sql = self._q[query]
        return await self._run(lambda conn: conn.execute(sql, params).rowcount)

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
            "max_concurrent": job.max_concurrent,
            "kind": job.kind,
            "ttl_ms": job.ttl_ms,
        }
        insert_sql, get_sql = self._q["insert_job"], self._q["get_job"]

        def insert_and_read(conn: sqlite3.Connection) -> Job | None:
            # Read back in the same transaction: the caller gets position_in_queue without another trip.
            if conn.execute(insert_sql, params).fetchone() is None:
                return None
            return _job_or_none(conn.execute(get_sql, {"job_id": job.job_id}).fetchone())

        return await self._run(insert_and_read)

    async def get(self, job_id: str) -> Job | None:
        return await self._one("get_job", {"job_id": job_id})

    async def get_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        return await self._one("get_job_by_idempotency_key", {"owner": owner, "idempotency_key": key})

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
        params: dict[str, Any] = {
            "owner": owner,
            "status": status and str(status),
            "tool": tool,
            "kind": kind,
        }
        listing, counting = (
            ("list_all_jobs", "count_all_jobs")
            if owner is None
            else ("list_jobs_of_owner", "count_jobs_of_owner")
        )
        jobs = await self._all(listing, {**params, "limit": limit, "offset": offset})
        total = await self._scalar(counting, params)
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

    async def extend_leases(self, *, worker: str, job_ids: Sequence[str], lease_expires_at: int) -> None:
        params = {
            "worker": worker,
            "job_ids": json.dumps(list(job_ids)),
            "lease_expires_at": lease_expires_at,
        }
        await self._rowcount("extend_leases", params)

    async def save_progress(self, job_id: str, progress: dict[str, Any], *, attempt: int) -> None:
        params = {"job_id": job_id, "progress": json.dumps(progress), "attempt": attempt}
        await self._rowcount("save_progress", params)

    async def finish(
        self,
        job_id: str,
        *,
        attempt: int,
        status: JobStatus,
        now: int,
        result: Any = None,
        error: dict[str, Any] | None = None,
        step_results: builtins.list[dict[str, Any]] | None = None,
        execution_time_ms: int | None = None,
    ) -> Job | None:
        params = {
            "job_id": job_id,
            "attempt": attempt,
            "status": str(status),
            "now": now,
            "result": None if status is not JobStatus.COMPLETED else json.dumps(result),
            "error": None if error is None else json.dumps(error),
            "step_results": json.dumps(step_results) if step_results else None,
            "execution_time_ms": execution_time_ms,
        }
        return await self._terminal("finish_job", params)

    async def requeue(self, job_id: str, *, attempt: int, run_after: int) -> Job | None:
        return await self._one("requeue_job", {"job_id": job_id, "attempt": attempt, "run_after": run_after})

    async def cancel_queued(self, job_id: str, *, now: int, error: dict[str, Any]) -> Job | None:
        return await self._terminal(
            "cancel_queued_job", {"job_id": job_id, "now": now, "error": json.dumps(error)}
        )

    async def _terminal(self, query: str, params: dict[str, Any]) -> Job | None:
        """A terminal write and its webhook deliveries (the outbox) in one transaction: a crash
        loses no delivery of a committed end, and a write that did not commit has none."""
        sql, enqueue = self._q[query], self.webhooks.enqueue

        def end_and_enqueue(conn: sqlite3.Connection) -> tuple[Job | None, int]:
            job = _job_or_none(conn.execute(sql, params).fetchone())
            return job, 0 if job is None else enqueue(conn, job)

        job, deliveries = await self._run(end_and_enqueue)
        if deliveries:
            self.webhooks.deliveries_added.set()
        return job

    async def expired_leases(self, now: int) -> builtins.list[Job]:
        return await self._all("expired_leases", {"now": now})

    async def recent_durations(self, tool: str) -> builtins.list[int]:
        async with self._conn.execute(self._q["recent_durations"], {"tool": tool}) as cursor:
            rows = await cursor.fetchall()
        return [int(row[0]) for row in rows if row[0] is not None]

    async def purge_finished(self, before: int, *, now: int) -> int:
        return await self._rowcount("purge_finished", {"before": before, "now": now})

    async def queue_depth(self) -> int:
        return int(await self._scalar("queue_depth", {}) or 0)

    async def count_by_status(self) -> dict[JobStatus, int]:
        async with self._conn.execute(self._q["count_jobs_by_status"]) as cursor:
            rows = await cursor.fetchall()
        counts = dict.fromkeys(JobStatus, 0)
        counts.update({JobStatus(row["status"]): int(row["n"]) for row in rows})
        return counts

    # -- API keys (the same database holds them) ----------------------------------------------

    async def insert_api_key(self, key: ApiKey, key_hash: str) -> None:
        params = {
            "key_id": key.key_id,
            "key_hash": key_hash,
            "name": key.name,
            "role": key.role,
            "plan": key.plan,
            "created_at": key.created_at,
        }
        await self._conn.execute(self._q["insert_api_key"], params)

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        async with self._conn.execute(self._q["find_api_key"], {"key_hash": key_hash}) as cursor:
            row = await cursor.fetchone()
        return _to_key(row) if row is not None else None

    async def list_api_keys(self) -> builtins.list[ApiKey]:
        async with self._conn.execute(self._q["list_api_keys"]) as cursor:
            rows = await cursor.fetchall()
        return [_to_key(row) for row in rows]

    async def revoke_api_key(self, key_id: str, *, now: int) -> bool:
        cursor = await self._conn.execute(self._q["revoke_api_key"], {"key_id": key_id, "now": now})
        return cursor.rowcount > 0

    async def count_active_api_keys(self) -> int:
        return int(await self._scalar("count_active_api_keys", {}) or 0)


def _to_key(row: aiosqlite.Row) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        name=row["name"],
        role=row["role"],
        plan=row["plan"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def _job_or_none(row: sqlite3.Row | None) -> Job | None:
    return _to_job(row) if row is not None else None


def _first_column(row: sqlite3.Row | None) -> Any:
    return row[0] if row is not None else None


def _to_job(row: aiosqlite.Row) -> Job:
    values = {name: row[index] for index, name in _layout(tuple(row.keys()))}
    for column in _JSON_COLUMNS:
        if values.get(column) is not None:
            values[column] = json.loads(values[column])
    values["status"] = _STATUSES[values["status"]]
    return Job(**values)


_STATUSES = {status.value: status for status in JobStatus}
_LAYOUTS: dict[tuple[str, ...], tuple[tuple[int, str], ...]] = {}


def _layout(columns: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    """Which columns of a row shape are Job fields, worked out once per shape (rows are hot)."""
    layout = _LAYOUTS.get(columns)
    if layout is None:
        layout = _LAYOUTS[columns] = tuple((i, name) for i, name in enumerate(columns) if name in _ROW_FIELDS)
    return layout
