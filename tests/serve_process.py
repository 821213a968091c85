"""``conveyor serve --http`` and ``conveyor worker`` as real subprocesses, the way a reader starts
them, for tests that drive them from outside (the examples, the MCP Inspector, many processes).

A server listens on a free port (``--port 0``); the admin key is read from the one notice the
server prints to stderr on its first start (or given, for a second server on the same database),
and the port from its "serving HTTP" log line. A worker is ready at its "worker ready" line.
Each is stopped with a signal, as a terminal or a process manager would stop it, and must then
exit 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from conveyor import strict_json

KEY = re.compile(r"^\s+(cvk_[A-Za-z0-9_-]+)\s*$")
LISTENING = re.compile(r"action=http\.listening .*\bport=(\d+)")
WORKER_READY = re.compile(r"action=worker\.ready ")
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Served:
    url: str
    key: str
    stderr: list[str] = field(default_factory=list)
    process: Process | None = None


def server_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
    env["CONVEYOR_ENTRY_POINTS"] = "false"  # only the built-in demo toolkit
    return env


def env_with_testkit(**settings: str) -> dict[str, str]:
    """The tests' own toolkit importable and loaded, plus ``CONVEYOR_*`` settings."""
    env = {
        "PYTHONPATH": str(REPO),
        "CONVEYOR_TOOLKITS": "conveyor_toolkits.demo:toolkit,tests.toolkits:toolkit",
        "CONVEYOR_SQLITE_SYNCHRONOUS": "NORMAL",
        "CONVEYOR_PROGRESS_INTERVAL_SECONDS": "0",
    }
    env.update({f"CONVEYOR_{name.upper()}": value for name, value in settings.items()})
    return env


def stdio_exchange(process: Process) -> Callable[[str], Awaitable[dict[str, Any]]]:
    """``ask(line)``: send one line to a stdio server and read the one-line JSON answer."""
    assert process.stdin is not None
    assert process.stdout is not None
    stdin, replies = process.stdin, BufferedByteReceiveStream(process.stdout)

    async def ask(line: str) -> dict[str, Any]:
        await stdin.send(line.encode() + b"\n")
        answer: dict[str, Any] = strict_json.loads(await replies.receive_until(b"\n", 1 << 20))
        return answer

    return ask


@asynccontextmanager
async def conveyor_http(
    tmp_path: Path,
    stop: signal.Signals,
    *args: str,
    env: dict[str, str] | None = None,
    key: str | None = None,
    db: Path | str | None = None,
) -> AsyncIterator[Served]:
    """``conveyor serve --http`` on ``db`` (default ``tmp_path/conveyor.db``; a path or a URL) with
    ``args``; ``key`` when the database has one already (then no key is printed)."""
    command = [sys.executable, "-m", "conveyor", "serve", "--http", "--port", "0"]
    command += ["--db", str(db or tmp_path / "conveyor.db"), *args]

    async def listening(lines: BufferedByteReceiveStream, seen: list[str]) -> Served:
        return await _wait_until_listening(lines, seen, key)

    async with _running(command, tmp_path, stop, env, listening) as served:
        yield served


@asynccontextmanager
async def conveyor_worker(
    tmp_path: Path,
    stop: signal.Signals,
    *args: str,
    env: dict[str, str] | None = None,
    db: Path | str | None = None,
    exit_code: int = 0,
) -> AsyncIterator[Served]:
    """``conveyor worker`` on ``db`` with ``args``, once it is ready to claim jobs; it must end
    with ``exit_code`` (a test that kills it says with which signal: ``-signal.SIGKILL``)."""
    command = [sys.executable, "-m", "conveyor", "worker", "--db", str(db or tmp_path / "conveyor.db"), *args]

    async def ready(lines: BufferedByteReceiveStream, seen: list[str]) -> Served:
        while not WORKER_READY.search(await _line(lines, seen, "the worker exited before it was ready")):
            pass
        return Served("", "", seen)

    async with _running(command, tmp_path, stop, env, ready, exit_code) as served:
        yield served


@asynccontextmanager
async def _running(
    command: list[str],
    cwd: Path,
    stop: signal.Signals,
    env: dict[str, str] | None,
    until_ready: Callable[[BufferedByteReceiveStream, list[str]], Awaitable[Served]],
    exit_code: int = 0,
) -> AsyncIterator[Served]:
    process = await anyio.open_process(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env={**server_env(), **(env or {})},
        cwd=cwd,
    )
    seen: list[str] = []
    async with process, anyio.create_task_group() as tg:
        assert process.stderr is not None
        lines = BufferedByteReceiveStream(process.stderr)
        try:
            with anyio.fail_after(20):
                served = await until_ready(lines, seen)
            served.process = process
            tg.start_soon(_drain, lines, seen)  # a full pipe would stall the process
            yield served
        finally:
            await _stop(process, stop)
    assert process.returncode == exit_code, "".join(seen)


async def _line(lines: BufferedByteReceiveStream, seen: list[str], exited: str) -> str:
    try:
        line = (await lines.receive_until(b"\n", 1 << 16)).decode()
    except (anyio.EndOfStream, anyio.IncompleteRead):
        raise AssertionError(exited + ":\n" + "\n".join(seen)) from None
    seen.append(line)
    return line


async def _wait_until_listening(lines: BufferedByteReceiveStream, seen: list[str], key: str | None) -> Served:
    while True:
        line = await _line(lines, seen, "the server exited before listening")
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
