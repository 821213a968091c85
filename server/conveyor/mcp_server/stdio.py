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
import anyio.to_thread
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server.stdio import stdio_server

from conveyor import strict_json
from conveyor.local_worker import LocalWorkerLauncher
from conveyor.mcp_server.server import build_server
from conveyor.mcp_server.wire import read_message
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
                wire = cast(Any, StdioWire(max_depth=settings.max_json_depth))
                async with stdio_server(stdin=wire, stdout=wire) as (read_stream, write_stream):
                    await server.run(read_stream, write_stream, server.create_initialization_options())
                session.cancel_scope.cancel()  # the client closed stdin
        signals.cancel_scope.cancel()


async def _cancel_when_requested(shutdown: Shutdown, scope: anyio.CancelScope) -> None:
    await shutdown.requested.wait()
    scope.cancel()


class StdioWire:
    """The stdio wire, read and written by this process's own code instead of the SDK's file wrappers.

    Reading: the SDK reads through anyio's file wrapper, whose blocking read cannot be abandoned,
    so a server waiting for input could not stop on Ctrl-C or SIGTERM. Here a daemon thread reads,
    and never holds the process at exit. Each line is checked as strict JSON first; one that is not
    is answered here with a JSON-RPC error and never reaches the SDK.

    Both ends are taken off fd 0 and fd 1, as the SDK does: fd 0 then reads the null device and
    fd 1 writes to stderr, so a tool's child process can neither eat the input nor garble the output.
    """

    def __init__(self, *, max_depth: int) -> None:
        self._max_depth = max_depth
        self._source, self._sink = _claim_stdio()
        self._writing = anyio.Lock()

    async def __aiter__(self) -> AsyncIterator[str]:
        send, receive = anyio.create_memory_object_stream[bytes](16)
        token = anyio.lowlevel.current_token()
        threading.Thread(target=_read_lines, args=(self._source, send, token), daemon=True).start()
        async with receive:
            async for line in receive:
                if not line.strip():
                    continue
                _, refused = read_message(line, max_depth=self._max_depth)
                if refused is None:
                    yield line.decode("utf-8")
                else:
                    logger.info("refused a message", extra={"action": "stdio.refused", "id": refused["id"]})
                    await self.write(strict_json.dumps(refused) + "\n")
                    await self.flush()

    async def write(self, text: str) -> None:
        """What the SDK's writer calls, a whole line at a time."""
        async with self._writing:
            await anyio.to_thread.run_sync(self._sink.write, text.encode("utf-8"))

    async def flush(self) -> None:
        async with self._writing:
            await anyio.to_thread.run_sync(self._sink.flush)


def _read_lines(
    source: IO[bytes], send: MemoryObjectSendStream[bytes], token: anyio.lowlevel.EventLoopToken
) -> None:
    try:
        for raw in iter(source.readline, b""):
            anyio.from_thread.run(send.send, raw, token=token)
    except Exception:  # the loop ended (the server stopped) or the pipe broke: nothing to read for
        logger.debug("stdin reader ended", exc_info=True, extra={"action": "stdio.reader_ended"})
    finally:
        with contextlib.suppress(Exception):
            anyio.from_thread.run_sync(send.close, token=token)


def _claim_stdio() -> tuple[IO[bytes], IO[bytes]]:
    if sys.platform == "win32":  # pragma: no cover - no fd juggling on Windows
        return sys.stdin.buffer, sys.stdout.buffer
    import fcntl

    wire_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    wire_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout.flush()
    os.dup2(2, 1)
    return os.fdopen(wire_in, "rb", closefd=False), os.fdopen(wire_out, "wb", closefd=False)
