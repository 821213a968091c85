"""MCP over stdio: one runtime, one connection, until the client closes stdin or a signal stops it.

With ``worker = "auto"`` (the default) jobs run in the database's local worker, not here: a
stdio client may end this process after any call, and the jobs must outlive it.
"""

from __future__ import annotations

import logging

import anyio

from conveyor.local_worker import LocalWorkerLauncher
from conveyor.mcp_server.server import build_server
from conveyor.mcp_server.stdio_wire import stdio_wire
from conveyor.runtime import Shutdown, freeze_startup_objects, open_runtime, stop_on_signals
from conveyor.settings import Settings

logger = logging.getLogger("conveyor.stdio")


async def serve_stdio(settings: Settings) -> None:
    launcher = (
        LocalWorkerLauncher(settings) if settings.worker == "auto" and settings.db != ":memory:" else None
    )
    inline = settings.worker == "inline" or (settings.worker == "auto" and launcher is None)
    shutdown = Shutdown()
    async with anyio.create_task_group() as signals:
        signals.start_soon(stop_on_signals, shutdown)  # through the drain: a second Ctrl-C hurries it
        async with open_runtime(
            settings,
            run_workers=inline,
            shutdown=shutdown,
            on_submitted=launcher.ensure if launcher is not None else None,
        ) as runtime:
            if launcher is not None:
                launcher.ensure()
            server = build_server(runtime)
            freeze_startup_objects()
            logger.info(
                "serving MCP over stdio",
                extra={
                    "action": "stdio.serving",
                    "db": settings.db,
                    "worker": "inline" if inline else settings.worker,
                },
            )
            async with anyio.create_task_group() as session:
                session.start_soon(_cancel_when_requested, shutdown, session.cancel_scope)
                limits = {"max_depth": settings.max_json_depth, "max_line_bytes": settings.max_request_bytes}
                async with stdio_wire(**limits) as wire:
                    await server.run(wire, wire, server.create_initialization_options())
                session.cancel_scope.cancel()  # the client closed stdin
        signals.cancel_scope.cancel()


async def _cancel_when_requested(shutdown: Shutdown, scope: anyio.CancelScope) -> None:
    await shutdown.requested.wait()
    scope.cancel()
