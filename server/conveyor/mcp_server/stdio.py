"""MCP over stdio: one runtime, one connection, until the client closes stdin or a signal stops it.

With ``worker = "auto"`` (the default) jobs run in the database's local worker, not here: a
stdio client may end this process after any call, and the jobs must outlive it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator
from typing import IO, Any, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server.stdio import stdio_server

from conveyor.local_worker import LocalWorkerLauncher
from conveyor.mcp_server.server import build_server
from conveyor.runtime import Shutdown, open_runtime, stop_on_signals
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
                async with stdio_server(stdin=cast(Any, StdinLines())) as (read_stream, write_stream):
                    await server.run(read_stream, write_stream, server.create_initialization_options())
                session.cancel_scope.cancel()  # the client closed stdin
        signals.cancel_scope.cancel()


async def _cancel_when_requested(shutdown: Shutdown, scope: anyio.CancelScope) -> None:
    await shutdown.requested.wait()
    scope.cancel()


class StdinLines:
    """stdin's lines, read by a daemon thread of this object's.

    The SDK reads stdin through anyio's file wrapper, whose blocking read cannot be abandoned:
    a server waiting for input could not stop on Ctrl-C or SIGTERM. This reader can; the
    thread, a daemon, never holds the process at exit. As the SDK does, it takes the wire from
    fd 0 and points fd 0 at the null device, so a tool's child process cannot eat the input.
    """

    def __init__(self) -> None:
        self._source = _claim_stdin()

    async def __aiter__(self) -> AsyncIterator[str]:
        send, receive = anyio.create_memory_object_stream[str](16)
        token = anyio.lowlevel.current_token()
        threading.Thread(target=_read_lines, args=(self._source, send, token), daemon=True).start()
        async with receive:
            async for line in receive:
                yield line


def _read_lines(
    source: IO[bytes], send: MemoryObjectSendStream[str], token: anyio.lowlevel.EventLoopToken
) -> None:
    try:
        for raw in iter(source.readline, b""):
            anyio.from_thread.run(send.send, raw.decode("utf-8", errors="replace"), token=token)
    except Exception:  # the loop ended (the server stopped) or the pipe broke: nothing to read for
        logger.debug("stdin reader ended", exc_info=True, extra={"action": "stdio.reader_ended"})
    finally:
        with contextlib.suppress(Exception):
            anyio.from_thread.run_sync(send.close, token=token)


def _claim_stdin() -> IO[bytes]:
    if sys.platform == "win32":  # pragma: no cover - no fd juggling on Windows
        return sys.stdin.buffer
    import fcntl

    wire = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return os.fdopen(wire, "rb", closefd=False)
