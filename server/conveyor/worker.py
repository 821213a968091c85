"""``conveyor worker``: a process that claims and runs jobs, with no front door.

Run it yourself next to servers started with ``--worker off``, or let a stdio server start the
local worker (``--local``): one per database, which exits by itself once idle.
"""

from __future__ import annotations

import logging
import os

import anyio

from conveyor.local_worker import WorkerLock
from conveyor.runtime import Runtime, Shutdown, freeze_startup_objects, open_runtime, stop_on_signals
from conveyor.settings import Settings

logger = logging.getLogger("conveyor.worker")


async def run_worker(settings: Settings, *, local: bool = False) -> None:
    lock = WorkerLock(settings.db) if local else None
    if lock is not None and not lock.acquire():
        logger.info("a local worker already runs", extra={"action": "worker.exists", "db": settings.db})
        return
    shutdown = Shutdown()
    try:
        async with anyio.create_task_group() as signals:
            signals.start_soon(stop_on_signals, shutdown)  # through the drain: a second Ctrl-C hurries it
            async with open_runtime(settings, shutdown=shutdown) as runtime, anyio.create_task_group() as tg:
                if lock is not None:
                    tg.start_soon(_exit_when_idle, runtime, lock, shutdown)
                freeze_startup_objects()
                logger.info(
                    "worker ready",
                    extra={
                        "action": "worker.ready",
                        "pid": os.getpid(),
                        "db": settings.db,
                        "concurrency": settings.concurrency,
                        "queues": ",".join(settings.queues or ()) or "all",
                        "local": local,
                    },
                )
                await shutdown.requested.wait()
                tg.cancel_scope.cancel()
            signals.cancel_scope.cancel()
    finally:
        if lock is not None:
            lock.release()
    logger.info("worker stopped", extra={"action": "worker.stopped", "pid": os.getpid()})


async def _exit_when_idle(runtime: Runtime, lock: WorkerLock, shutdown: Shutdown) -> None:
    idle_s = runtime.settings.worker_idle_exit_seconds
    idle_since = anyio.current_time()
    while True:
        await anyio.sleep(min(idle_s / 4, 5.0))
        if await _has_work(runtime):
            idle_since = anyio.current_time()
            continue
        if anyio.current_time() - idle_since < idle_s:
            continue
        # Let go of the lock, then look once more: a server that committed a job before this look
        # saw the lock held and started no worker, so that job is still this worker's to run.
        lock.release()
        if await _has_work(runtime) and lock.acquire():
            idle_since = anyio.current_time()
            continue
        logger.info("idle: exiting", extra={"action": "worker.idle_exit", "idle_s": idle_s})
        shutdown.request()
        return


async def _has_work(runtime: Runtime) -> bool:
    store = runtime.engine.store
    return (
        runtime.engine.busy
        or await store.active_count() > 0
        or await runtime.webhooks.store.next_due() is not None
    )
