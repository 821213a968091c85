"""One lifespan that opens and owns every resource, in order, and closes them in reverse."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio

from conveyor.auth import ApiKeys
from conveyor.errors import ConfigError
from conveyor.events import JobEvents
from conveyor.executor import Executor
from conveyor.jobs.engine import JobEngine
from conveyor.jobs.sqlite_store import SQLiteJobStore
from conveyor.limits import RateLimiter
from conveyor.registry import Registry
from conveyor.settings import Settings
from conveyor.webhooks import Webhooks

logger = logging.getLogger("conveyor.runtime")


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    registry: Registry
    executor: Executor
    engine: JobEngine
    events: JobEvents
    keys: ApiKeys
    limiter: RateLimiter
    webhooks: Webhooks


def open_store(settings: Settings) -> SQLiteJobStore:
    if settings.db.startswith(("postgres://", "postgresql://")):
        raise ConfigError("PostgreSQL support is not available yet; use a SQLite file path for --db")
    return SQLiteJobStore(settings.db, synchronous=settings.sqlite_synchronous)


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, registry: Registry | None = None, run_workers: bool = True
) -> AsyncIterator[Runtime]:
    """Open the store, enter toolkit lifespans, start the engine; undo all of it on exit."""
    registry = registry or Registry.load(settings.toolkits, entry_points_enabled=settings.entry_points)
    executor = Executor(registry, settings.execution_limits())
    events = JobEvents()
    store = open_store(settings)
    async with AsyncExitStack() as stack:
        await store.open()
        stack.push_async_callback(store.close)
        for toolkit in registry.toolkits.values():
            if toolkit.lifespan is not None:
                executor.bind_toolkit_state(
                    toolkit.name, await stack.enter_async_context(toolkit.lifespan(toolkit))
                )
        engine = JobEngine(store, executor, events, settings.engine_config())
        webhooks = await Webhooks.open(store.webhooks, settings.webhook_config())
        async with anyio.create_task_group() as tg:
            if run_workers:
                await tg.start(engine.run)
                await tg.start(webhooks.run)
            logger.info(
                "conveyor ready",
                extra={"action": "runtime.ready", "tools": len(registry), "db": settings.db},
            )
            try:
                keys = ApiKeys(store)
                limiter = RateLimiter(settings.plan_limits())
                yield Runtime(settings, registry, executor, engine, events, keys, limiter, webhooks)
            finally:
                tg.cancel_scope.cancel()
