"""One lifespan that opens and owns every resource, in order, and closes them in reverse."""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio

from conveyor.auth import ApiKeys
from conveyor.credentials import CredentialVault
from conveyor.errors import ConfigError
from conveyor.events import JobEvents
from conveyor.executor import Executor
from conveyor.jobs.engine import JobEngine
from conveyor.jobs.sql_store import SQLJobStore
from conveyor.jobs.sqlite_store import SQLiteJobStore
from conveyor.limits import OpenStreams, RateLimiter
from conveyor.registry import Registry
from conveyor.settings import Settings, is_postgres_url
from conveyor.toolkit_settings import configure_all
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
    streams: OpenStreams


class Shutdown:
    """How a process is asked to stop: the first request (a signal, the end of input) drains the
    running jobs for the grace period; a second one (Ctrl-C twice) skips what is left of it."""

    def __init__(self) -> None:
        self.requested = anyio.Event()
        self.hurry = anyio.Event()

    def request(self) -> None:
        if self.requested.is_set():
            self.hurry.set()
        self.requested.set()


@asynccontextmanager
async def open_tools(settings: Settings, registry: Registry | None = None) -> AsyncIterator[Registry]:
    """The loaded toolkits, each OpenAPI document's operations (a document that cannot be used
    fails the start), and each upstream server's tools listed (those that answered within the
    connect timeout) and kept up to date for as long as this is open."""
    registry = registry or Registry.load(settings.toolkits, entry_points_enabled=settings.entry_points)
    if not (settings.openapi or settings.upstreams):  # nothing more to import, connect or follow
        yield registry
        return
    # Imported here: a server without them does not pay for the HTTP and MCP client stacks.
    from conveyor.openapi_toolkits import load_toolkit as load_openapi_toolkit
    from conveyor.upstreams import Upstreams

    for api in settings.openapi:
        toolkit = await load_openapi_toolkit(api, max_result_bytes=settings.max_result_bytes)
        registry.add(toolkit, origin=f"openapi {api.name}")
    upstreams = Upstreams(
        settings.upstreams, registry, connect_timeout_s=settings.upstream_connect_timeout_seconds
    )
    failed: Exception | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(upstreams.run)
        try:
            yield registry
        except Exception as exc:  # the caller's own error: raised as it is, not in a task group's group
            failed = exc
        finally:
            tg.cancel_scope.cancel()
    if failed is not None:
        raise failed


_started_early: dict[str, SQLiteJobStore] = {}  # by settings.db: see ``database_started_early``


@asynccontextmanager
async def database_started_early(settings: Settings) -> AsyncIterator[None]:
    """For a SQLite database, start the store's database process now, before the caller imports
    the rest of the server: the process's own start (about 0.1 s) then overlaps those imports,
    and the runtime opened inside this block takes it. If none does, it is closed on exit."""
    if is_postgres_url(settings.db):
        yield
        return
    store = open_store(settings)
    assert isinstance(store, SQLiteJobStore)
    await store.start_early()
    _started_early[settings.db] = store
    try:
        yield
    finally:
        if _started_early.pop(settings.db, None) is store:  # never taken
            await store.close()


def open_store(settings: Settings) -> SQLJobStore:
    """The store ``settings.db`` names: a postgresql:// URL, or else a SQLite file."""
    early = _started_early.pop(settings.db, None)
    if early is not None:
        return early
    if is_postgres_url(settings.db):
        try:
            from conveyor.jobs.postgres_store import PostgresJobStore
        except ImportError:
            raise ConfigError(
                "PostgreSQL needs the postgres extra: pip install 'conveyor-mcp[postgres]'"
            ) from None
        return PostgresJobStore(
            settings.db,
            pool_size=settings.postgres_pool_size,
            write_timeout_s=settings.store_write_timeout_seconds,
        )
    return SQLiteJobStore(
        settings.db,
        synchronous=settings.sqlite_synchronous,
        write_timeout_s=settings.store_write_timeout_seconds,
    )


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    registry: Registry | None = None,
    run_workers: bool = True,
    shutdown: Shutdown | None = None,
    on_submitted: Callable[[], None] | None = None,
) -> AsyncIterator[Runtime]:
    """Open the store, enter toolkit lifespans, start the engine; undo all of it on exit.

    Every runtime follows the changes other processes make to the store. With ``run_workers``
    it is a worker too: it claims and runs jobs and delivers webhooks, and on exit it drains
    (running jobs get ``shutdown_grace_seconds`` to finish, less if ``shutdown`` hurries).
    """
    events = JobEvents()
    store = open_store(settings)
    async with AsyncExitStack() as stack:
        await store.open()
        stack.push_async_callback(store.close)
        # Upstream connections close after the engine's drain: the runs it lets finish need them.
        registry = await stack.enter_async_context(open_tools(settings, registry))
        configs = configure_all(registry.toolkits, settings.toolkit_settings)
        executor = Executor(registry, settings.execution_limits(), configs)
        for toolkit in registry.toolkits.values():
            if toolkit.lifespan is not None:
                executor.bind_toolkit_state(
                    toolkit.name, await stack.enter_async_context(toolkit.lifespan(toolkit))
                )
        webhooks = await Webhooks.open(store.webhooks, settings.webhook_config())
        engine = JobEngine(
            store,
            executor,
            events,
            settings.engine_config(),
            on_submitted=on_submitted,
            on_remote_end=store.webhooks.deliveries_added.set,
            vault=CredentialVault.for_database(
                settings.db,
                settings.credentials_key.get_secret_value() if settings.credentials_key else None,
                is_postgres=is_postgres_url(settings.db),
            ),
        )
        async with anyio.create_task_group() as tg:
            await tg.start(engine.watch)
            if run_workers:
                await tg.start(engine.run)
                await tg.start(webhooks.run)
            logger.debug(
                "runtime open",
                extra={"action": "runtime.ready", "tools": len(registry), "db": settings.db},
            )
            try:
                keys = ApiKeys(store)
                limiter = RateLimiter(settings.plan_limits(), store)
                streams = OpenStreams(settings.plan_limits(), total=settings.max_streams)
                yield Runtime(settings, registry, executor, engine, events, keys, limiter, webhooks, streams)
            finally:
                if run_workers:
                    with anyio.CancelScope(shield=True):
                        hurry = shutdown.hurry if shutdown is not None else None
                        await engine.drain(settings.shutdown_grace_seconds, hurry=hurry)
                tg.cancel_scope.cancel()


def freeze_startup_objects() -> None:
    """For a process that serves from now on (a server, a worker), once it has started: what
    start-up made (modules, models, the registry, the app) lives as long as the process, so the
    garbage collector stops walking it (``gc.freeze``). Its collections then walk only what serving
    made: over HTTP in the 2025-11-25 era, about 100 µs less CPU per call (bench/FINDINGS.md).
    What start-up made and later drops is still freed by reference counting; only a dropped cycle
    of those objects would stay in memory, as the gc module's documentation says of frozen ones."""
    gc.freeze()
    if logger.isEnabledFor(logging.DEBUG):  # the count walks every frozen object: some 10 ms
        logger.debug(
            "start-up objects frozen", extra={"action": "gc.frozen", "objects": gc.get_freeze_count()}
        )


async def stop_on_signals(shutdown: Shutdown) -> None:
    """Turn SIGINT and SIGTERM into stop requests, for as long as the caller's task group lives."""
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for number in signals:
                logger.info(
                    "stop requested", extra={"action": "process.stop", "signal": signal.Signals(number).name}
                )
                shutdown.request()
    except NotImplementedError:  # pragma: no cover - Windows: Ctrl-C reaches Python as KeyboardInterrupt
        await anyio.sleep_forever()
