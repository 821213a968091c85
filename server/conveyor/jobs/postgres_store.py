"""PostgreSQL job store on an asyncpg pool: many servers and workers, on many machines, one queue.

Claims take rows with ``FOR UPDATE SKIP LOCKED`` (the ``conveyor_claim`` function), so claimers
never wait on each other; an owner's plan limit is counted under an advisory lock on the owner.
Each change of a job is announced with NOTIFY by a trigger, and every process's change watch
LISTENs (``postgres_changes``). Migrations are applied on open under an advisory lock, so that
processes starting together apply each one once. The URL's ``search_path`` query parameter
(``postgresql://host/db?search_path=conveyor``) puts Conveyor's tables in a schema of their own.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import asyncpg

from conveyor.errors import ConfigError, StoreUnavailable
from conveyor.jobs import rows
from conveyor.jobs.models import Job, NewJob, now_ms
from conveyor.jobs.postgres_changes import ChangeListener
from conveyor.jobs.queries import load_migrations, load_queries
from conveyor.jobs.rows import Row
from conveyor.jobs.sql_store import SQLJobStore
from conveyor.jobs.webhook_store import WebhookStore

logger = logging.getLogger("conveyor.store")

STORE_UNAVAILABLE_RETRY_S = 2
LISTEN_CONNECT_TIMEOUT_S = 5  # a listener reconnecting polls meanwhile: it must not wait long
# The database cannot be reached, or dropped the connection: nothing the caller asked for is
# known to have committed unless it says so, and trying again later may work.
UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # the connection dropped, mid-statement too
    asyncpg.exceptions.OperatorInterventionError,  # an admin shutdown, a server in recovery
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, a full disk
)
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Statement:
    """A named statement compiled from ``:name`` parameters to asyncpg's ``$n``."""

    __slots__ = ("names", "text")

    def __init__(self, sql: str) -> None:
        order: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            return f"${order.setdefault(match.group(1), len(order) + 1)}"

        self.text = _PARAMETER.sub(number, sql)
        self.names = tuple(order)

    def args(self, params: dict[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


class PostgresJobStore(SQLJobStore):
    ordered_commits = False  # a pool of connections: a statement called later may commit first

    def __init__(self, url: str, *, pool_size: int = 10, write_timeout_s: float = 10.0) -> None:
        self.url = url
        self.pool_size = pool_size
        self.write_timeout_s = write_timeout_s
        self.origin = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._q = load_queries("postgres")
        self._statements = {name: Statement(sql) for name, sql in self._q.items()}
        self._pool: asyncpg.Pool | None = None
        self._schema = "public"
        self.webhooks = WebhookStore(self)

    @property
    def fault(self) -> str | None:
        return None  # a database server comes back; an unreachable one is StoreUnavailable per call

    @property
    def where(self) -> str:
        """The database without its password, for logs and messages."""
        return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", self.url)

    async def open(self) -> None:
        try:
            self.applied_migrations = await migrate(self.url)
            self._pool = await asyncpg.create_pool(
                self.url,
                server_settings=_named(self.url),
                min_size=1,
                max_size=self.pool_size,
                command_timeout=self.write_timeout_s * 6,
                # A pool connection left idle this long is closed: a deployment of many processes
                # does not hold the server's connection slots for nothing.
                max_inactive_connection_lifetime=60,
            )
            self._schema = await self._pool.fetchval("SELECT current_schema()")
        except (asyncpg.PostgresError, *UNREACHABLE) as exc:
            await self.close()
            raise ConfigError(f"cannot use {self.where} as Conveyor's database: {exc}") from None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise RuntimeError("the job store is not open")
        try:
            async with self._pool.acquire(timeout=self.write_timeout_s) as conn:
                yield conn
        except UNREACHABLE as exc:
            logger.warning(
                "database unreachable",
                extra={"action": "store.unreachable", "db": self.where, "error": str(exc)},
            )
            raise StoreUnavailable(
                f"The database cannot be reached: {exc}", retry_after=STORE_UNAVAILABLE_RETRY_S
            ) from None

    async def fetch(self, query: str, params: dict[str, Any], *, write: bool = True) -> builtins.list[Row]:
        statement = self._statements[query]
        async with self._connection() as conn:
            found: builtins.list[Row] = await conn.fetch(statement.text, *statement.args(params))
            return found

    async def fetch_one(self, query: str, params: dict[str, Any], *, write: bool = True) -> Row | None:
        statement = self._statements[query]
        async with self._connection() as conn:
            row: Row | None = await conn.fetchrow(statement.text, *statement.args(params))
            return row

    async def execute(self, query: str, params: dict[str, Any]) -> int:
        statement = self._statements[query]
        async with self._connection() as conn:
            status: str = await conn.execute(statement.text, *statement.args(params))
        count = status.rsplit(" ", 1)[-1]  # "UPDATE 3", "INSERT 0 1", "DELETE 0"
        return int(count) if count.isdigit() else 0

    def names(self, values: Sequence[str] | None) -> Any:
        return None if values is None else list(values)

    async def insert(self, job: NewJob) -> Job | None:
        # One statement reads the job back with its position_in_queue.
        return await self._one("insert_job", self._insert_params(job))

    async def _page_and_total(
        self, listing: str, counting: str, params: dict[str, Any], *, limit: int, offset: int
    ) -> tuple[builtins.list[Job], int]:
        page, count = self._statements[listing], self._statements[counting]
        async with self._connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            # One snapshot: the page and the total describe the same moment.
            found = await conn.fetch(page.text, *page.args({**params, "limit": limit, "offset": offset}))
            total = await conn.fetchval(count.text, *count.args(params))
        return [rows.to_job(row) for row in found], int(total or 0)

    async def _claim(self, params: dict[str, Any], limit: int) -> builtins.list[Job]:
        return await self._all("claim_jobs", {**params, "limit": limit})

    async def _terminal(self, query: str, params: dict[str, Any]) -> Job | None:
        # Most jobs have no webhook to deliver: one statement ends them, autocommitted.
        quiet = await self._one(query, {**params, "outbox": False})
        if quiet is not None:
            return quiet
        end, targets, insert = (
            self._statements[name] for name in (query, "webhooks_for_event", "insert_delivery")
        )
        deliveries: builtins.list[dict[str, Any]] = []
        async with self._connection() as conn, conn.transaction():
            row = await conn.fetchrow(end.text, *end.args({**params, "outbox": True}))
            job = rows.job_or_none(row)
            if job is None or not job.status.terminal:
                return job  # the fence refused it: not in this run any more
            registered = []
            if row["owner_has_webhooks"]:
                registered = await conn.fetch(targets.text, *targets.args(WebhookStore.targets_params(job)))
            deliveries = WebhookStore.deliveries(job, registered)
            await conn.executemany(insert.text, [insert.args(delivery) for delivery in deliveries])
        if deliveries:
            self.webhooks.deliveries_added.set()
        return job

    async def watch_changes(
        self,
        on_change: Callable[[builtins.list[Job]], None],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``on_change`` with the jobs other processes changed, until cancelled: LISTEN for
        the trigger's announcements, and poll only while the listening connection is down."""
        listener = ChangeListener(
            connect=lambda: asyncpg.connect(
                self.url, timeout=LISTEN_CONNECT_TIMEOUT_S, server_settings=_named(self.url)
            ),
            channel=f"conveyor.{self._schema}",
            origin=self.origin,
            read_jobs=self._read_jobs,
            read_changes_since=self._read_changes_since,
            read_last_version=self._read_last_version,
        )
        await listener.run(on_change, task_status=task_status)

    async def _read_jobs(self, job_ids: builtins.list[str]) -> builtins.list[Job]:
        return await self._all("get_jobs", {"job_ids": job_ids}, write=False)

    async def _read_last_version(self) -> int:
        return int(await self._scalar("last_version", {}) or 0)

    async def _read_changes_since(self, since: int, limit: int) -> builtins.list[Job]:
        params = {"since": since, "origin": self.origin, "limit": limit}
        return await self._all("jobs_changed_since", params, write=False)


def _named(url: str) -> dict[str, str]:
    """Name our connections after this process in ``pg_stat_activity`` (``conveyor <pid>``),
    unless the URL names them itself."""
    return {} if "application_name=" in url else {"application_name": f"conveyor {os.getpid()}"}


async def migrate(url: str) -> builtins.list[int]:
    """Apply the migrations the database has not had, each in a transaction of its own; the
    versions applied. An advisory lock makes processes that start together apply each once."""
    conn = await asyncpg.connect(url, server_settings=_named(url))
    try:
        schema = await conn.fetchval("SELECT current_schema()")
        missing = schema is None  # the search_path names a schema that does not exist yet: make it
        if missing:
            schema = (await conn.fetchval("SELECT current_setting('search_path')")).split(",")[0].strip()
        await conn.execute("SELECT pg_advisory_lock(hashtext('conveyor.migrate'), hashtext($1))", schema)
        try:
            if missing:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_identifier(schema)}")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
            )
            done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            applied = []
            for version, script in load_migrations("postgres"):
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(script)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                        version,
                        now_ms(),
                    )
                applied.append(version)
                logger.info("migration applied", extra={"action": "store.migrated", "version": version})
            return applied
        finally:
            await conn.execute(
                "SELECT pg_advisory_unlock(hashtext('conveyor.migrate'), hashtext($1))", schema
            )
    finally:
        await conn.close()


def _identifier(name: str) -> str:
    return name if name.startswith('"') else '"' + name.replace('"', '""') + '"'
