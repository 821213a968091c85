"""``conveyor serve --http`` as a real subprocess, the way a reader starts it, for tests that drive it
from outside (the examples, the MCP Inspector).

It listens on a free port (``--port 0``); the admin key is read from the one notice the server
prints to stderr on its first start, and the port from its "serving HTTP" log line. It is stopped
with a signal, as a terminal or a process manager would stop it, and must then exit 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

KEY = re.compile(r"^\s+(cvk_[A-Za-z0-9_-]+)\s*$")
LISTENING = re.compile(r"action=http\.listening .*\bport=(\d+)")


@dataclass
class Served:
    url: str
    key: str
    stderr: list[str] = field(default_factory=list)


def server_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
    env["CONVEYOR_ENTRY_POINTS"] = "false"  # only the built-in demo toolkit
    return env


@asynccontextmanager
async def conveyor_http(tmp_path: Path, stop: signal.Signals) -> AsyncIterator[Served]:
    command = [sys.executable, "-m", "conveyor", "serve", "--http", "--port", "0"]
    command += ["--db", str(tmp_path / "conveyor.db")]
    process = await anyio.open_process(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=server_env(), cwd=tmp_path
    )
    async with process, anyio.create_task_group() as tg:
        assert process.stderr is not None
        lines = BufferedByteReceiveStream(process.stderr)
        try:
            with anyio.fail_after(20):
                served = await _wait_until_listening(lines)
            tg.start_soon(_drain, lines, served.stderr)  # a full pipe would stall the server
            yield served
        finally:
            await _stop(process, stop)
    assert process.returncode == 0, "".join(served.stderr)


async def _wait_until_listening(lines: BufferedByteReceiveStream) -> Served:
    seen: list[str] = []
    key = None
    while True:
        try:
            line = (await lines.receive_until(b"\n", 1 << 16)).decode()
        except (anyio.EndOfStream, anyio.IncompleteRead):
            raise AssertionError("the server exited before listening:\n" + "\n".join(seen)) from None
        seen.append(line)
        if found := KEY.match(line):
            key = found[1]
        if (listening := LISTENING.search(line)) and key is not None:
            return Served(f"http://127.0.0.1:{listening[1]}", key, seen)


async def _drain(lines: BufferedByteReceiveStream, into: list[str]) -> None:
    while True:
        try:
            into.append((await lines.receive_until(b"\n", 1 << 16)).decode())
        except (anyio.EndOfStream, anyio.IncompleteRead):
            return


async def _stop(process: Process, stop: signal.Signals) -> None:
    if process.returncode is None:
        process.send_signal(stop)
    with anyio.move_on_after(20):
        await process.wait()
        return
    process.kill()  # only if it hung: the test then fails on the return code
    await process.wait()
