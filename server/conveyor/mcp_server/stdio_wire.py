"""The stdio wire: MCP messages as lines on this process's own stdin and stdout.

The SDK's ``stdio_server`` reads and writes through anyio's file wrappers: a worker-thread hop
for every line read, and two (write, flush) for every line written, plus a task and a memory
stream at each end. Here the read and write streams the SDK's server loop takes are the wire
itself: when stdin and stdout are pipes or sockets (as every MCP client starts a server), the
event loop reads and writes them without a thread; otherwise (a terminal, a file, Windows) a
daemon thread reads and a worker thread writes.

A daemon thread, not anyio's file wrapper, because that wrapper's blocking read cannot be
abandoned: a server waiting for input could not stop on Ctrl-C or SIGTERM.

Each line is checked as strict JSON (and against the size limit) before the SDK sees it; one
that fails is answered here with a JSON-RPC error and never reaches a handler. Both ends are
taken off fd 0 and fd 1, as the SDK does: fd 0 then reads the null device and fd 1 writes to
stderr, so a tool's child process can neither eat the input nor garble the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator
from types import TracebackType
from typing import IO, Any, Protocol, Self

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from anyio.streams.memory import MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, jsonrpc_message_adapter
from pydantic import ValidationError

from conveyor import strict_json
from conveyor.errors import PayloadTooLarge
from conveyor.mcp_server.wire import read_message

logger = logging.getLogger("conveyor.stdio")
NEWLINE = b"\n"
CLOSING_DRAIN_S = 2.0


class LineSource(Protocol):
    async def readline(self) -> bytes:
        """The next line with its newline (the last may lack one); b"" at the end of input.
        Raises ``PayloadTooLarge`` for a line over the limit, having skipped the rest of it."""
        ...


class LineSink(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def aclose(self) -> None: ...


class StdioWire:
    """The read stream and the write stream the SDK's server loop takes, on the stdio lines."""

    def __init__(self, source: LineSource, sink: LineSink, *, max_depth: int) -> None:
        self._source = source
        self._sink = sink
        self._max_depth = max_depth

    # -- read side ----------------------------------------------------------------------------

    async def receive(self) -> SessionMessage | Exception:
        while True:
            try:
                line = await self._source.readline()
            except PayloadTooLarge as exc:
                await self._refuse(_too_large(exc))
                continue
            if not line:
                raise anyio.EndOfStream
            if not line.strip():
                continue
            message, refused = read_message(line, max_depth=self._max_depth)
            if refused is not None:
                await self._refuse(refused)
                continue
            try:
                return SessionMessage(jsonrpc_message_adapter.validate_python(message, by_name=False))
            except ValidationError as exc:
                return exc  # as the SDK's reader does: the server loop answers it

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def _refuse(self, answer: dict[str, Any]) -> None:
        logger.info("refused a message", extra={"action": "stdio.refused", "id": answer["id"]})
        await self._sink.write(strict_json.dumps(answer).encode() + NEWLINE)

    # -- write side ---------------------------------------------------------------------------

    async def send(self, item: SessionMessage, /) -> None:
        line = item.message.model_dump_json(by_alias=True, exclude_unset=True)
        await self._sink.write(line.encode() + NEWLINE)

    async def aclose(self) -> None:
        """Each end is closed by the loop when it is done with it: nothing to do until the
        transport ends (``stdio_wire``'s exit)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


@contextlib.asynccontextmanager
async def stdio_wire(*, max_depth: int, max_line_bytes: int) -> AsyncIterator[StdioWire]:
    """The wire on this process's stdin and stdout, taken off fd 0 and fd 1 while it is open."""
    wire_in, wire_out = _claim_stdio()
    source: LineSource
    sink: LineSink
    if _pollable(wire_in) and _pollable(wire_out):
        source = await PipeSource.open(wire_in, max_line_bytes)
        sink = await PipeSink.open(wire_out)
    else:
        source = ThreadSource(wire_in, max_line_bytes)
        sink = ThreadSink(wire_out)
    try:
        yield StdioWire(source, sink, max_depth=max_depth)
    finally:
        with anyio.CancelScope(shield=True):
            await sink.aclose()


def _pollable(file: IO[bytes]) -> bool:
    """A pipe or a socket, which the event loop can wait on (a terminal or a file it cannot,
    or not safely: a terminal's non-blocking mode would be shared with the shell)."""
    if sys.platform == "win32":  # pragma: no cover - the Proactor loop takes no pipe fds
        return False
    mode = os.fstat(file.fileno()).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _too_large(exc: PayloadTooLarge) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": INVALID_REQUEST, "message": exc.message, "data": exc.to_payload()},
    }


def _line_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"A message is longer than {limit} bytes",
        suggested_fix="Send smaller messages, or raise max_request_bytes.",
    )


# -- on the event loop: pipes and sockets ---------------------------------------------------------


class PipeSource:
    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        self._reader = reader
        self._limit = limit

    @classmethod
    async def open(cls, file: IO[bytes], limit: int) -> PipeSource:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=limit + 1, loop=loop)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), file)
        return cls(reader, limit)

    async def readline(self) -> bytes:
        try:
            return await self._reader.readuntil(NEWLINE)
        except asyncio.IncompleteReadError as exc:
            return exc.partial  # the last line, without its newline; b"" at the end
        except asyncio.LimitOverrunError:
            await self._skip_line()
            raise _line_too_large(self._limit) from None

    async def _skip_line(self) -> None:
        while True:
            try:
                await self._reader.readuntil(NEWLINE)
                return
            except asyncio.LimitOverrunError as exc:
                await self._reader.readexactly(exc.consumed)
            except asyncio.IncompleteReadError:
                return


class PipeSink:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    @classmethod
    async def open(cls, file: IO[bytes]) -> PipeSink:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.streams.FlowControlMixin(loop=loop), file
        )
        return cls(asyncio.StreamWriter(transport, protocol, None, loop))

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise anyio.ClosedResourceError
        self._writer.write(data)  # one call per line: lines never interleave
        try:
            await self._writer.drain()  # waits only while the client is slow to read
        except (ConnectionError, OSError) as exc:
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        with anyio.move_on_after(CLOSING_DRAIN_S), contextlib.suppress(ConnectionError, OSError):
            await self._writer.drain()  # what is still buffered, unless the client stopped reading
        self._writer.close()


# -- in threads: terminals, files, Windows --------------------------------------------------------


class ThreadSource:
    def __init__(self, file: IO[bytes], limit: int) -> None:
        self._limit = limit
        self._send, self._receive = anyio.create_memory_object_stream[bytes](16)
        token = anyio.lowlevel.current_token()
        thread = threading.Thread(target=_read_lines, args=(file, limit, self._send, token), daemon=True)
        thread.start()

    async def readline(self) -> bytes:
        try:
            line = await self._receive.receive()
        except anyio.EndOfStream:
            return b""
        if _cut_short(line, self._limit):
            raise _line_too_large(self._limit)
        return line


def _read_lines(
    source: IO[bytes], limit: int, send: MemoryObjectSendStream[bytes], token: anyio.lowlevel.EventLoopToken
) -> None:
    try:
        while raw := source.readline(limit + 1):
            if _cut_short(raw, limit):
                while (rest := source.readline(limit + 1)) and not rest.endswith(NEWLINE):
                    pass  # the rest of an oversized line
            anyio.from_thread.run(send.send, raw, token=token)
    except Exception:  # the loop ended (the server stopped) or the pipe broke: nothing to read for
        logger.debug("stdin reader ended", exc_info=True, extra={"action": "stdio.reader_ended"})
    finally:
        with contextlib.suppress(Exception):
            anyio.from_thread.run_sync(send.close, token=token)


def _cut_short(line: bytes, limit: int) -> bool:
    """Whether ``readline(limit + 1)`` stopped inside a line longer than the limit."""
    return len(line) > limit and not line.endswith(NEWLINE)


class ThreadSink:
    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._writing = anyio.Lock()

    async def write(self, data: bytes) -> None:
        async with self._writing:
            try:
                await anyio.to_thread.run_sync(self._write_line, data)
            except OSError as exc:
                raise anyio.BrokenResourceError from exc

    def _write_line(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    async def aclose(self) -> None:
        return None


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
