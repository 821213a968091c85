"""The stdio wire as a real subprocess sees it: on pipes (read and written by the event loop) and
on a file (read by a thread), a line over the size limit is answered and the next one served."""

from __future__ import annotations

import os
import subprocess
import sys
import tty
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp_types import INVALID_REQUEST

from conveyor import strict_json
from tests.serve_process import REPO, env_with_testkit, server_env, stdio_exchange

pytestmark = pytest.mark.anyio

LIMIT = 4096
MODERN_META = (
    '"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", '
    '"io.modelcontextprotocol/clientCapabilities": {}}'
)
OVERSIZED = '{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "' + "x" * (3 * LIMIT) + '"}}'
ECHO = (
    '{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "demo_echo", '
    '"arguments": {"text": "still here"}, ' + MODERN_META + "}}"
)


def serve_command(db: Path) -> list[str]:
    return [sys.executable, "-m", "conveyor", "serve", "--db", str(db), "--worker", "inline"]


def wire_env() -> dict[str, str]:
    return {**server_env(), **env_with_testkit(), "CONVEYOR_MAX_REQUEST_BYTES": str(LIMIT)}


def assert_refused_then_served(too_large: dict[str, Any], echoed: dict[str, Any]) -> None:
    assert too_large["id"] is None
    assert too_large["error"]["code"] == INVALID_REQUEST
    assert too_large["error"]["data"]["code"] == "PAYLOAD_TOO_LARGE"
    assert echoed["id"] == 2
    assert echoed["result"]["content"][0]["text"] == "still here"


async def test_on_pipes_a_line_over_the_limit_is_answered_and_the_next_one_served(tmp_path: Path) -> None:
    process = await anyio.open_process(
        serve_command(tmp_path / "c.db"), env=wire_env(), cwd=str(REPO), stderr=subprocess.DEVNULL
    )
    async with process:
        ask = stdio_exchange(process)
        with anyio.fail_after(20):
            too_large = await ask(OVERSIZED)
            echoed = await ask(ECHO)
            await process.stdin.aclose()  # type: ignore[union-attr]
            assert await process.wait() == 0
    assert_refused_then_served(too_large, echoed)


async def test_on_a_terminal_a_line_over_the_limit_is_answered_and_the_next_one_served(
    tmp_path: Path,
) -> None:
    # A terminal is not read by the event loop (its non-blocking mode would be the shell's too):
    # the wire falls back to a reading thread. Raw mode, so the terminal passes long lines whole.
    controller, terminal = os.openpty()
    tty.setraw(terminal)
    try:
        process = await anyio.open_process(
            serve_command(tmp_path / "c.db"),
            env=wire_env(),
            cwd=str(REPO),
            stdin=terminal,
            stderr=subprocess.DEVNULL,
        )
        async with process:
            assert process.stdout is not None
            replies = BufferedByteReceiveStream(process.stdout)
            with anyio.fail_after(20):
                os.write(controller, OVERSIZED.encode() + b"\n")
                too_large = strict_json.loads(await replies.receive_until(b"\n", 1 << 20))
                os.write(controller, ECHO.encode() + b"\n")
                echoed = strict_json.loads(await replies.receive_until(b"\n", 1 << 20))
                process.terminate()
                await process.wait()
    finally:
        os.close(controller)
        os.close(terminal)
    assert_refused_then_served(too_large, echoed)
